"""Whole transformer models in mtf's terms: the typed ``ModelSpec`` a legacy config ports
to, and the models built from it (mtf's ``transformer.py`` / ``transformer_layers.py``
with mtf's variable names and numerics).

    model = nm.transformer.build_model(spec, vocab_size=32)       # a TransformerModel
    out = model(mesh, {"targets": ids}, mode="train", seed=step)  # logits, loss, aux losses
    tokens = model.decode(mesh, prompts)                          # greedy decoding
    model.save_checkpoint("out/model.ckpt-100")                   # a checkpoint mtf reads
"""
from namedmesh.transformer.spec import (LAYER_CONFIGS, MOE_KINDS, DenseReluDenseConfig,
                                        EncDecAttentionConfig, LayerSpec, LayerStackSpec,
                                        LocalSelfAttentionConfig, ModelSpec,
                                        SelfAttentionConfig, SublayerSpec, UnitransformerSpec)
from namedmesh.transformer.attention_layers import (EncDecAttention, SelfAttention, attention,
                                                    relative_position_bucket)
from namedmesh.transformer.bitransformer import Bitransformer
from namedmesh.transformer.build import build_model
from namedmesh.transformer.context import Context
from namedmesh.transformer.feed_forward import DenseReluDense
from namedmesh.transformer.layer_stack import LayerStack
from namedmesh.transformer.model import ModelOutput, TransformerModel
from namedmesh.transformer.moe_layers import MoEStackLayer
from namedmesh.transformer.unitransformer import Unitransformer, autoregressive_inputs

__all__ = ["ModelSpec", "UnitransformerSpec", "LayerStackSpec", "LayerSpec", "SublayerSpec",
           "SelfAttentionConfig", "EncDecAttentionConfig", "LocalSelfAttentionConfig",
           "DenseReluDenseConfig", "LAYER_CONFIGS", "MOE_KINDS",
           "build_model", "TransformerModel", "ModelOutput", "Unitransformer", "Bitransformer",
           "LayerStack", "SelfAttention", "EncDecAttention", "DenseReluDense", "MoEStackLayer",
           "Context", "attention", "relative_position_bucket", "autoregressive_inputs"]
