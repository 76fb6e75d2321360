"""Porting legacy configs (mtf / T5 gin, tensor2tensor hparams, GPT-Neo and mtf BERT JSON)
and TF1 checkpoints to namedmesh: one reader per source format, each producing a
``PortedConfig`` whose ``model`` is a ``namedmesh.transformer.ModelSpec``."""
import json
import os

from namedmesh.porting.checkpoint import (find_moe_layers, load_layer_from_checkpoint,
                                          pair_model_checkpoint, read_moe_variables,
                                          save_layer_to_checkpoint, write_checkpoint)
from namedmesh.porting.gin_reader import read_gin
from namedmesh.porting.hparams_reader import load_hparams, read_hparams
from namedmesh.porting.json_reader import read_gpt_neo, read_json_config, read_mtf_bert
from namedmesh.porting.ported import (Ignored, PortedConfig, PortedLayer, ReadValue,
                                      Source)


def read_config(path: str, **options) -> PortedConfig:
    """A gin file (``.gin``), or a JSON file (``.json``): GPT-Neo and mtf BERT configs are
    recognised from their keys, anything else is tensor2tensor hparams.  ``options`` go to
    the reader (``read_gin``'s ``search_paths``, ``read_hparams``'s ``model`` ...)."""
    from namedmesh.core.checks import check_path
    from namedmesh.errors import ConfigError
    path = check_path(path, "read_config")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".gin":
        return read_gin(path, **options)
    if ext == ".json":
        from namedmesh.porting.json_reader import detect_json_flavor
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, ValueError):   # UnicodeDecodeError is a ValueError
            values = None   # the reader reports it with file and line
        if isinstance(values, dict) and detect_json_flavor(values):
            return read_json_config(path, **options)
        return read_hparams(path, **options)
    raise ConfigError("config %r: expected a .gin file or a .json file (tensor2tensor hparams, "
                      "GPT-Neo or mtf BERT)" % path)


__all__ = ["read_config", "read_gin", "read_hparams", "load_hparams", "read_json_config",
           "read_gpt_neo", "read_mtf_bert", "PortedConfig", "PortedLayer", "Ignored", "ReadValue",
           "Source", "find_moe_layers", "read_moe_variables", "load_layer_from_checkpoint",
           "save_layer_to_checkpoint", "write_checkpoint", "pair_model_checkpoint"]
