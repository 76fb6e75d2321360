"""MoE weights in TF1 checkpoints of whole legacy models: find the layers, pair them with the
config's layers, read them, write them back.

Checkpoints name variables by the scopes the model code opened, next to optimizer
slots (``.../kernel_slot_vc``) and everything else of the model:

* mtf's transformer: ``decoder/block_003/layer_002/MoE1D/top_2_gating/kernel``,
  ``.../wi/kernel``, ``.../wo/kernel``; MoE2D ``outer_gating``, ``inner_gating``;
* tensor2tensor's ``models/research/moe.py`` (t2t's ``mtf_transformer``):
  ``transformer/decoder/moe_7/dense/kernel`` (gating), ``x0/kernel``, ``x1/kernel``
  for v1, and ``transformer/decoder/hmoe_7/dense/kernel``, ``dense_2/kernel``,
  ``expert0/kernel``, ``expert1/kernel`` for v2 (the names t2t's code gives them);
* GPT-Neo: ``gpt2/h2/top_2_gating/kernel`` ...; mtf BERT: ``bert/encoder/block_0/moe/...``.

Each naming maps onto mtf's names (``layer.mtf_variables()``).  A config with a model
knows each MoE layer's scope, so pairing is by name, in the model's order; a
checkpoint read alone lists its MoE layers in model order too (encoder before
decoder, ``block_2`` before ``block_10``, ``h2`` before ``h10``), never alphabetically.
"""

import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import check_path
from namedmesh.errors import ConfigError, FileError, WrongTypeError
from namedmesh.layers.variables import checked_array

# source naming -> {name in the checkpoint: mtf's name}
NAMINGS = {
    "mtf": {},
    "t2t_v1": {"dense/kernel": "top_2_gating/kernel", "x0/kernel": "wi/kernel",
               "x1/kernel": "wo/kernel"},
    "t2t_v2": {"dense/kernel": "outer_gating/kernel", "dense_2/kernel": "inner_gating/kernel",
               "expert0/kernel": "wi/kernel", "expert1/kernel": "wo/kernel"},
}
# a layer's signature in a checkpoint: (naming, kind, the variable that marks it)
_MARKERS = [("mtf", "MoE2D", "outer_gating/kernel"), ("mtf", "MoE1D", "top_2_gating/kernel"),
            ("mtf", "MoE1D", "switch_gating/kernel"), ("t2t_v2", "MoE2D", "expert0/kernel"),
            ("t2t_v1", "MoE1D", "x0/kernel")]
_MTF_VARIABLE = re.compile(
    r"^(top_2_gating|switch_gating|outer_gating|inner_gating|wi|wi_\d+|wo)/kernel$")
IMPLEMENTATION_NAMING = {
    "tensor2tensor.models.research.moe.transformer_moe_layer_v1": "t2t_v1",
    "tensor2tensor.models.research.moe.transformer_moe_layer_v2": "t2t_v2",
}


@dataclass
class CheckpointLayer:
    """An MoE layer found in a checkpoint: its scope, naming and ``{mtf_name: shape}``."""

    scope: str
    kind: str
    shapes: Dict[str, List[int]] = field(default_factory=dict)
    naming: str = "mtf"
    names: Dict[str, str] = field(default_factory=dict)   # mtf name -> name in the checkpoint

    def full_name(self, mtf_name: str) -> str:
        return self.scope + self.names.get(mtf_name, mtf_name)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _variables(prefix: str) -> Dict[str, List[int]]:
    """``{name: shape}`` from the checkpoint's index; a missing, empty, truncated or corrupt
    index is a FileError naming the checkpoint."""
    prefix = check_path(prefix, "checkpoint")
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError, IndexError) as e:
        hint = ""
        if os.path.isfile(prefix + ".index"):
            hint = " (its index file %s is truncated or corrupt)" % (prefix + ".index")
        raise FileError("checkpoint %r cannot be read: %s%s" % (prefix, _first_line(e),
                                                                hint)) from None


def read_tensors(prefix: str, names: Dict[str, str]) -> Dict[str, np.ndarray]:
    """``{key: array}`` of the checkpoint variables ``names = {key: name in the checkpoint}``;
    a missing, truncated or corrupt data part is a FileError naming the variable."""
    prefix = check_path(prefix, "checkpoint")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError, IndexError) as e:
        raise FileError("checkpoint %r cannot be read: %s" % (prefix, _first_line(e))) from None
    out = {}
    for key, name in names.items():
        try:
            out[key] = reader.get_tensor(name)
        except (tf.errors.OpError, ValueError, IndexError) as e:
            raise FileError("checkpoint %r: variable %r cannot be read from its data file(s) "
                            "%s*: %s; the data part is missing, truncated or corrupt"
                            % (prefix, name, prefix + ".data-", _first_line(e))) from None
    return out


def normalize_scope(scope: str) -> str:
    if scope is not None and not isinstance(scope, str):
        raise WrongTypeError("checkpoint scope must be a string such as 'decoder/block_000/"
                             "layer_002/MoE1D/', got %r" % (scope,))
    scope = scope or ""
    return scope if not scope or scope.endswith("/") else scope + "/"


def model_order_key(scope: str):
    """Sort key of a scope in the order a model runs its layers: encoder before decoder,
    numbers compared as numbers (``block_2`` before ``block_10``, ``h2`` before ``h10``)."""
    stack_rank = {"encoder": 0, "decoder": 1}
    key = []
    for part in scope.strip("/").split("/"):
        key.append((stack_rank.get(part, 2),
                    [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part) if t]))
    return key


def _layer_at(variables: Dict[str, List[int]], scope: str, naming: str,
              kind: str) -> CheckpointLayer:
    mapping = NAMINGS[naming]
    layer = CheckpointLayer(scope, kind, naming=naming)
    for name, shape in variables.items():
        if not name.startswith(scope):
            continue
        rest = name[len(scope):]
        mtf_name = mapping.get(rest) if mapping else (rest if _MTF_VARIABLE.match(rest) else None)
        if mtf_name is not None:
            layer.shapes[mtf_name] = shape
            layer.names[mtf_name] = rest
    return layer


def find_moe_layers(prefix: str) -> List[CheckpointLayer]:
    """The MoE layers of a checkpoint (mtf, t2t research/moe.py, GPT-Neo or BERT naming),
    in model order."""
    variables = _variables(prefix)
    layers: Dict[str, CheckpointLayer] = {}
    for naming, kind, marker in _MARKERS:
        for name in variables:
            if name.endswith(marker) and (name == marker or name.endswith("/" + marker)):
                scope = name[:len(name) - len(marker)]
                if scope not in layers:
                    layers[scope] = _layer_at(variables, scope, naming, kind)
    return [layers[s] for s in sorted(layers, key=model_order_key)]


def read_moe_variables(prefix: str, scope: str = "") -> Dict[str, np.ndarray]:
    """``{mtf_name: array}`` of the MoE layer under ``scope`` (``""``: the root), whatever the
    naming of the code that wrote it."""
    scope = normalize_scope(scope)
    found = {layer.scope: layer for layer in find_moe_layers(prefix)}
    if scope not in found:
        raise ConfigError("checkpoint %r has no MoE layer under scope %r (MoE scopes: %s)"
                          % (prefix, scope, [s or "<root>" for s in found] or "none"))
    layer = found[scope]
    return read_tensors(prefix, {name: layer.full_name(name) for name in layer.shapes})


def load_layer_from_checkpoint(layer, prefix: str, scope: str = ""):
    """Load ``layer``'s weights from the checkpoint; errors name the checkpoint variable."""
    scope = normalize_scope(scope)
    arrays = read_moe_variables(prefix, scope)
    try:
        layer.load_mtf_variables(arrays)
    except ConfigError as e:
        raise ConfigError("checkpoint %r, scope %r: %s" % (prefix, scope or "<root>", e)) from None
    return layer


@dataclass
class Pairing:
    """Each config MoE layer's checkpoint scope (in model order) and what did not match."""

    scopes: List[str]
    missing: List[str] = field(default_factory=list)     # "name (expected shape)"
    misshaped: List[str] = field(default_factory=list)   # "name has shape ..., expected ..."
    extra: List[str] = field(default_factory=list)       # MoE variables no config layer has

    @property
    def ok(self) -> bool:
        return not (self.missing or self.misshaped or self.extra)

    def problems(self) -> List[str]:
        return (["missing %s" % m for m in self.missing] + self.misshaped +
                ["extra %s" % e for e in self.extra])


def _expected_shapes(layer, d_model: Optional[int]) -> Dict[str, Tuple[int, ...]]:
    from namedmesh.core.dims import Dimension
    built = layer.build()
    size = d_model if d_model is not None else 1
    shapes = built.variable_shapes(Dimension("d_model", size))
    return {name: tuple(shape.sizes) for name, shape in shapes.items()}


def _d_model_of(layer) -> Optional[int]:
    if layer.input_shape:
        last = layer.input_shape.split(";")[-1]
        return int(last.split(":")[1])
    return None


def pair_model_checkpoint(config, prefix: str) -> Pairing:
    """Pair the config's MoE layers with the checkpoint's by the scopes the source model gives
    them, in the model's order; name every missing, mis-shaped or extra variable."""
    variables = _variables(prefix)
    found = find_moe_layers(prefix)
    pairing = Pairing([])
    claimed = set()
    for layer in config.layers:
        naming = IMPLEMENTATION_NAMING.get(layer.implementation, "mtf")
        scope = layer.variable_scope
        pairing.scopes.append(scope)
        mapping = {v: k for k, v in NAMINGS[naming].items()}   # mtf name -> checkpoint name
        d_model = _d_model_of(layer)
        if d_model is None:   # read it off the checkpoint's gating kernel, as load does
            gate = scope + mapping.get("top_2_gating/kernel", "top_2_gating/kernel")
            for candidate in (gate, scope + mapping.get("outer_gating/kernel",
                                                        "outer_gating/kernel"),
                              scope + "switch_gating/kernel"):
                if candidate in variables:
                    d_model = variables[candidate][0]
                    break
        for mtf_name, shape in _expected_shapes(layer, d_model).items():
            name = scope + mapping.get(mtf_name, mtf_name)
            claimed.add(name)
            if name not in variables:
                pairing.missing.append("%s %s (%s of %s)" % (name, list(shape), mtf_name,
                                                             layer.label))
            elif tuple(variables[name]) != shape and d_model is not None:
                pairing.misshaped.append("%s has shape %s, expected %s (%s)"
                                         % (name, list(variables[name]), list(shape),
                                            layer.label))
    for f in found:
        for mtf_name in f.shapes:
            name = f.full_name(mtf_name)
            if name not in claimed:
                pairing.extra.append("%s %s (an MoE variable no layer of the config has)"
                                     % (name, list(variables[name])))
    return pairing


def check_writable_prefix(prefix: str, what: str = "checkpoint") -> str:
    """``prefix`` if files ``prefix.*`` can be written: its directory exists, is a directory,
    and takes a new file (tried for real: permission bits do not bind root, a read-only
    filesystem or a path under a regular file still refuse)."""
    prefix = check_path(prefix, what)
    directory = os.path.dirname(os.path.abspath(prefix))
    if not os.path.exists(directory):
        parent = directory
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise FileError("cannot write %s %r: %r is a file, not a directory"
                            % (what, prefix, parent))
        raise FileError("cannot write %s %r: directory %r does not exist" % (what, prefix,
                                                                            directory))
    if not os.path.isdir(directory):
        raise FileError("cannot write %s %r: %r is not a directory" % (what, prefix, directory))
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise FileError("cannot write %s %r: directory %r does not take new files (%s)"
                        % (what, prefix, directory, e.strerror or e)) from None
    return prefix


def write_checkpoint(prefix: str, tensors: Dict[str, object]) -> str:
    """Write ``{name: value}`` as a TF name-based checkpoint (readable by mtf/TF1 savers)."""
    if not isinstance(tensors, dict) or not tensors:
        raise ConfigError("write_checkpoint: expected a non-empty {name: value} dict, got %.80r"
                          % (tensors,))
    prefix = check_writable_prefix(prefix)
    names = sorted(tensors, key=str)
    values = []
    for n in names:
        if not isinstance(n, str) or not n:
            raise WrongTypeError("write_checkpoint: variable names must be non-empty strings, "
                                 "got %r" % (n,))
        value = tensors[n]
        if not isinstance(value, (tf.Tensor, tf.Variable)):
            value = checked_array(n, value, "write_checkpoint")
        values.append(tf.convert_to_tensor(value))
    try:
        tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                          tensors=values)
    except tf.errors.OpError as e:
        raise FileError("cannot write checkpoint %r: %s" % (prefix, _first_line(e))) from None
    return prefix


def save_layer_to_checkpoint(layer, prefix: str, scope: str = "") -> str:
    """Write the layer's weights under mtf's names (``scope`` + ``wi/kernel`` ...)."""
    variables = layer.mtf_variables()
    if not variables:
        raise ConfigError("%s has no variables yet: call it once or layer.build(input_shape) "
                          "before saving it" % getattr(layer, "layer_name", type(layer).__name__))
    scope = normalize_scope(scope)
    return write_checkpoint(prefix, {scope + name: var for name, var in variables.items()})
