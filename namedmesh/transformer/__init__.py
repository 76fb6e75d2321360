"""Whole transformer models in mtf's terms: the typed ``ModelSpec`` a legacy config ports to."""
from namedmesh.transformer.spec import (LAYER_CONFIGS, MOE_KINDS, DenseReluDenseConfig,
                                        EncDecAttentionConfig, LayerSpec, LayerStackSpec,
                                        LocalSelfAttentionConfig, ModelSpec,
                                        SelfAttentionConfig, SublayerSpec, UnitransformerSpec)

__all__ = ["ModelSpec", "UnitransformerSpec", "LayerStackSpec", "LayerSpec", "SublayerSpec",
           "SelfAttentionConfig", "EncDecAttentionConfig", "LocalSelfAttentionConfig",
           "DenseReluDenseConfig", "LAYER_CONFIGS", "MOE_KINDS"]
