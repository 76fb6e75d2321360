"""Read hparams-style MoE configs: a dict or a JSON file with mtf's ``moe_*`` names.

This is where legacy 2-level configs live: mtf never made ``MoE2D``
gin-configurable, so tensor2tensor's mtf_transformer2-style models set it up
from Python hparams, e.g. ``moe_num_experts = [8, 8]`` with mesh ``"b0:4;b1:8"``
and layout ``"outer_batch:b0;inner_batch:b1,expert_x:b1,expert_y:b0"``.
Keys other than ``moe_*``, ``mesh_shape`` and ``layout`` are listed as ignored.
"""

import json
from typing import Union

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.moe.config import MoE1DConfig, MoE2DConfig
from namedmesh.porting.ported import Ignored, PortedConfig, PortedLayer, Source

_MESH_KEYS = {"mesh_shape": "mesh_shape", "layout": "layout", "layout_rules": "layout"}


def _line_of(text: str, key: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if '"%s"' % key in line:
            return i
    return 0


def read_hparams(source: Union[str, dict]) -> PortedConfig:
    """Port hparams given as a dict or the path of a JSON file."""
    text = ""
    if isinstance(source, dict):
        path, hparams = "<hparams>", dict(source)
    else:
        path = source
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            raise ConfigError("hparams file %r: %s" % (path, e.strerror)) from None
        try:
            hparams = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("%s:%d: not valid JSON: %s" % (path, e.lineno, e.msg)) from None
        if not isinstance(hparams, dict):
            raise ConfigError("%s: expected a JSON object of hparams, got %s"
                              % (path, type(hparams).__name__))

    def where(key):
        return Source(path, _line_of(text, key), key)

    ported = PortedConfig(path=path, layers=[])
    moe = {}
    for key, value in hparams.items():
        if key.startswith("moe_"):
            moe[key] = value
        elif key in _MESH_KEYS:
            if not isinstance(value, str):
                raise ConfigError("%s: expected a string such as 'b0:4;b1:8', got %r"
                                  % (where(key), value))
            setattr(ported, _MESH_KEYS[key], value)
            ported.sources[_MESH_KEYS[key]] = where(key)
        else:
            ported.ignored.append(Ignored(where(key), "%s = %r" % (key, value)))
    if not moe:
        raise ConfigError("%s: no moe_* hparams found" % path)
    kind = "MoE2D" if isinstance(moe.get("moe_num_experts"), (list, tuple)) else "MoE1D"
    config_cls = MoE2DConfig if kind == "MoE2D" else MoE1DConfig
    for key in moe:  # validate key by key, so that an error names its key and line
        try:
            config_cls.from_hparams({key: moe[key]})
        except NamedMeshError as e:
            raise ConfigError("%s: %s" % (where(key), e)) from None
    try:
        config = config_cls.from_hparams(moe)
    except NamedMeshError as e:
        raise ConfigError("%s: %s" % (path, e)) from None
    defaults = config_cls().to_kwargs()
    kwargs = {k: v for k, v in config.to_kwargs().items() if v != defaults[k]}
    ported.layers.append(PortedLayer(kind, kwargs, "", {k: where("moe_" + k) for k in kwargs}))
    ported.check_mesh_and_layout()
    return ported
