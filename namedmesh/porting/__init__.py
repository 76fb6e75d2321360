"""Porting legacy mtf MoE configs (gin files, hparams) and TF1 checkpoints to namedmesh."""
import os

from namedmesh.porting.checkpoint import (find_moe_layers, load_layer_from_checkpoint,
                                          read_moe_variables, save_layer_to_checkpoint,
                                          write_checkpoint)
from namedmesh.porting.gin_reader import read_gin
from namedmesh.porting.hparams_reader import read_hparams
from namedmesh.porting.ported import Ignored, PortedConfig, PortedLayer, Source


def read_config(path: str) -> PortedConfig:
    """A gin file (``.gin``) or an hparams JSON file (``.json``)."""
    from namedmesh.errors import ConfigError
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gin":
        return read_gin(path)
    if ext == ".json":
        return read_hparams(path)
    raise ConfigError("config %r: expected a .gin file or a .json hparams file" % path)


__all__ = ["read_config", "read_gin", "read_hparams", "PortedConfig", "PortedLayer", "Ignored",
           "Source", "find_moe_layers", "read_moe_variables", "load_layer_from_checkpoint",
           "save_layer_to_checkpoint", "write_checkpoint"]
