"""mtf's ``Bitransformer``: an encoder and a decoder Unitransformer (sequence to sequence).

    inputs   int32 [batch..., length]  (encoder ids; its own length)
    targets  int32 [batch..., length]  (decoder targets; the decoder reads them shifted right)
    logits   [batch..., length, vocab] (the decoder's)

With ``shared_embedding`` (mtf's default) both read one ``shared/embedding``
``[vocab, d_model]`` (and one ``shared/positional_embedding`` when both have a
positional embedding of the same max_length).  As mtf does, the sequence ids are made
up from the padding when not given (``minimum(ids, 1)``), the encoder output's
``length`` is renamed ``memory_length``, and the loss is the decoder's loss plus the
aux losses of both stacks.
"""

from namedmesh.core.elementwise import minimum
from namedmesh.errors import ConfigError
from namedmesh.layers.embedding import embedding_weights
from namedmesh.layers.masks import rename_length_to_memory_length
from namedmesh.transformer.context import TRAIN, check_mode
from namedmesh.transformer.unitransformer import VocabEmbedding, autoregressive_inputs


class Bitransformer:
    def __init__(self, encoder, decoder, shared_embedding: bool = True):
        if encoder.store is not decoder.store:
            raise ConfigError("a Bitransformer's encoder and decoder must share one variable "
                              "store")
        self.encoder = encoder
        self.decoder = decoder
        self.shared_embedding = shared_embedding
        self.store = encoder.store

    @property
    def output_vocab_dim(self):
        return self.decoder.output_vocab_dim

    @property
    def z_loss(self):
        return self.decoder.z_loss

    def shared_params(self, mesh):
        """``{"embedding": VocabEmbedding, "positional_embedding": Tensor}`` under ``shared/``."""
        params = {}
        if not self.shared_embedding:
            return params
        enc, dec = self.encoder, self.decoder
        if not (enc.model_dim == dec.model_dim and enc.input_vocab_dim == dec.input_vocab_dim):
            raise ConfigError("shared_embedding requires encoder and decoder to have identical "
                              "d_model and vocabulary sizes (encoder %s %s, decoder %s %s)"
                              % (enc.model_dim, enc.input_vocab_dim, dec.model_dim,
                                 dec.input_vocab_dim))
        with self.store.scope("shared"):
            params["embedding"] = VocabEmbedding(mesh, enc.input_vocab_dim, enc.model_dim,
                                                 self.store, "embedding", enc.ensemble_dims)
            if (enc.positional_embedding and dec.positional_embedding
                    and enc.max_length_dim == dec.max_length_dim):
                if enc.sinusoid_positional_embedding and dec.sinusoid_positional_embedding:
                    from namedmesh.transformer.unitransformer import (
                        sinusoid_positional_embedding_weights)
                    table = sinusoid_positional_embedding_weights(mesh, enc.max_length_dim,
                                                                  enc.model_dim)
                else:
                    table = embedding_weights(mesh, enc.max_length_dim, enc.model_dim,
                                              name="positional_embedding", store=self.store)
                params["positional_embedding"] = table
        return params

    def call_simple(self, inputs, targets, compute_loss: bool, mode: str = TRAIN,
                    encoder_sequence_id=None, decoder_sequence_id=None, encoder_position=None,
                    decoder_position=None, seed=None, loss_parts: bool = False,
                    return_context: bool = False):
        """``(logits, loss)`` (``return_context``: plus ``(encoder context, decoder
        context)``); the loss adds the encoder's aux losses to the decoder's loss."""
        mode = check_mode(mode)
        if encoder_sequence_id is None:
            encoder_sequence_id = minimum(inputs, 1)
        if decoder_sequence_id is None:
            decoder_sequence_id = minimum(targets, 1)
        shared = self.shared_params(inputs.mesh)
        encoder_output, encoder_loss, encoder_context = self.encoder.call_simple(
            inputs, None, compute_loss, mode=mode, sequence_id=encoder_sequence_id,
            position=encoder_position, shared_params=shared, seed=seed, return_context=True)
        encoder_output = rename_length_to_memory_length(encoder_output)
        encoder_sequence_id = rename_length_to_memory_length(encoder_sequence_id)
        logits, loss, decoder_context = self.decoder.call_simple(
            autoregressive_inputs(targets, sequence_id=decoder_sequence_id), targets,
            compute_loss, mode=mode, sequence_id=decoder_sequence_id,
            position=decoder_position, encoder_output=encoder_output,
            encoder_sequence_id=encoder_sequence_id, shared_params=shared,
            seed=None if seed is None else seed + 7919, loss_parts=loss_parts,
            return_context=True)
        if loss is not None and encoder_loss is not None:
            loss = loss + encoder_loss
        if return_context:
            return logits, loss, (encoder_context, decoder_context)
        return logits, loss

    def decode(self, inputs, **kwargs):
        """Greedy or sampled decoding of the encoder ``inputs``; see
        ``namedmesh.transformer.decoding.decode``."""
        from namedmesh.transformer.decoding import decode
        return decode(self, inputs, **kwargs)


__all__ = ["Bitransformer"]
