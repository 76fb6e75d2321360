"""From a typed ``ModelSpec`` (what ``namedmesh.porting`` reads off a legacy config) to a
running ``TransformerModel``, as mtf's ``utils.build_model`` builds it.

    spec = nm.porting.read_gin([...]).model          # or config.build_model(...)
    model = nm.transformer.build_model(spec, vocab_size=32000)

The vocab sizes come from the run's vocabulary in mtf (``utils.run.vocabulary``), so a
config rarely holds them: give ``vocab_size`` (or ``input_vocab_size`` and
``output_vocab_size`` for an encoder-decoder with two vocabularies).  mtf builds a
Bitransformer's encoder without a softmax and not autoregressive, and its decoder
autoregressive, whatever the config says (``make_bitransformer``); so does this.
"""

from typing import Optional

from namedmesh.errors import ConfigError
from namedmesh.layers.variables import VariableStore
from namedmesh.transformer.attention_layers import EncDecAttention, SelfAttention
from namedmesh.transformer.bitransformer import Bitransformer
from namedmesh.transformer.feed_forward import DenseReluDense
from namedmesh.transformer.layer_stack import LayerStack
from namedmesh.transformer.model import TransformerModel
from namedmesh.transformer.moe_layers import MoEStackLayer
from namedmesh.transformer.spec import ModelSpec, UnitransformerSpec
from namedmesh.transformer.unitransformer import Unitransformer

LAYER_CLASSES = {"SelfAttention": SelfAttention, "EncDecAttention": EncDecAttention,
                 "DenseReluDense": DenseReluDense}
BUILT_KINDS = sorted(list(LAYER_CLASSES) + ["MoE1D", "MoE2D"])


def build_layer(unit_name: str, layer_spec):
    """The stack layer of one ``LayerSpec``; a kind namedmesh does not build is an error
    naming the layer."""
    kind = layer_spec.kind
    where = "%s/%s" % (unit_name, layer_spec.scope)
    if layer_spec.config is None:
        raise ConfigError("layer %s is a %s, which namedmesh.transformer does not build (it "
                          "builds %s)" % (where, kind, ", ".join(BUILT_KINDS)))
    if kind in ("MoE1D", "MoE2D"):
        return MoEStackLayer(layer_spec.scope, kind, layer_spec.config)
    cls = LAYER_CLASSES.get(kind)
    if cls is None:
        raise ConfigError("layer %s is a %s, which namedmesh.transformer does not build (it "
                          "builds %s)" % (where, kind, ", ".join(BUILT_KINDS)))
    return cls(layer_spec.scope, layer_spec.config)


def build_layer_stack(unit: UnitransformerSpec) -> LayerStack:
    st = unit.layer_stack
    if not st.layers:
        raise ConfigError("%s: the layer stack has no layers" % unit.name)
    layers = [build_layer(unit.name, spec) for spec in st.layers]
    if st.legacy:
        return LayerStack(layers, dropout_rate=st.dropout_rate, norm_epsilon=st.norm_epsilon,
                          recompute_grads=st.recompute_grads)
    return LayerStack(layers, sublayers_initial=st.sublayers_initial or None,
                      sublayers_per_layer=st.sublayers_per_layer or None,
                      sublayers_final=st.sublayers_final or None,
                      recompute_grads=st.recompute_grads)


def build_unitransformer(unit: UnitransformerSpec, store, input_vocab_size: Optional[int],
                         output_vocab_size: Optional[int], autoregressive: bool,
                         name: Optional[str] = None) -> Unitransformer:
    return Unitransformer(
        build_layer_stack(unit), d_model=unit.d_model, input_vocab_size=input_vocab_size,
        output_vocab_size=output_vocab_size, autoregressive=autoregressive,
        max_length=unit.max_length,
        shared_embedding_and_softmax_weights=unit.shared_embedding_and_softmax_weights,
        label_smoothing=unit.label_smoothing, z_loss=unit.z_loss, name=name or unit.name,
        vocab_divisor=unit.vocab_divisor, ensemble=unit.ensemble,
        positional_embedding=unit.positional_embedding,
        sinusoid_positional_embedding=unit.sinusoid_positional_embedding,
        input_full_attention=unit.input_full_attention,
        loss_on_targets_only=unit.loss_on_targets_only,
        loss_denominator=unit.loss_denominator, token_dropout_rate=unit.token_dropout_rate,
        store=store)


def _vocab(given, from_spec, what, unit_name):
    size = given if given is not None else from_spec
    if size is None:
        raise ConfigError("%s of %s is not in the config (mtf takes it from the run's "
                          "vocabulary): pass vocab_size=<n> (namedmesh run --vocab-size N)"
                          % (what, unit_name))
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError("%s: expected a positive integer, got %r" % (what, size))
    return size


def build_model(spec: ModelSpec, vocab_size: Optional[int] = None,
                input_vocab_size: Optional[int] = None, output_vocab_size: Optional[int] = None,
                seed: int = 0, variable_factory=None) -> TransformerModel:
    """The ``TransformerModel`` a ``ModelSpec`` describes (variables created on first use or
    by ``model.build``; ``seed`` draws their initial values; ``variable_factory``, if given,
    makes each variable, see ``TransformerModel.use_variable_factory``)."""
    model = _build_model(spec, vocab_size, input_vocab_size, output_vocab_size, seed)
    if variable_factory is not None:
        model.use_variable_factory(variable_factory)
    return model


def _build_model(spec, vocab_size, input_vocab_size, output_vocab_size, seed):
    if not isinstance(spec, ModelSpec):
        raise ConfigError("build_model expects a namedmesh.transformer.ModelSpec, got %r"
                          % (spec,))
    input_vocab_size = input_vocab_size if input_vocab_size is not None else vocab_size
    output_vocab_size = output_vocab_size if output_vocab_size is not None else vocab_size
    store = VariableStore(seed=seed)
    dec = spec.decoder
    if spec.kind == "Unitransformer":
        in_size = _vocab(input_vocab_size, dec.input_vocab_size, "input_vocab_size", dec.name)
        out_size = output_vocab_size if output_vocab_size is not None else (
            dec.output_vocab_size if dec.output_vocab_size is not None else
            (in_size if dec.autoregressive or spec.model_type in ("lm", "delimited_lm")
             else None))
        lm = build_unitransformer(dec, store, in_size, out_size,
                                  dec.autoregressive or spec.model_type in ("lm", "delimited_lm"))
        return TransformerModel(lm, spec=spec, seed=seed)
    enc = spec.encoder
    in_size = _vocab(input_vocab_size, enc.input_vocab_size, "input_vocab_size", enc.name)
    out_size = _vocab(output_vocab_size, dec.output_vocab_size or dec.input_vocab_size,
                      "output_vocab_size", dec.name)
    encoder = build_unitransformer(enc, store, in_size, None, False)
    decoder = build_unitransformer(dec, store, out_size, out_size, True)
    return TransformerModel(Bitransformer(encoder, decoder, shared_embedding=spec.shared_embedding),
                            spec=spec, seed=seed)


__all__ = ["build_model", "build_layer", "build_layer_stack", "build_unitransformer",
           "BUILT_KINDS"]
