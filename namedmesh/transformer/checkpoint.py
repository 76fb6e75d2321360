"""A whole model in TF1 checkpoints: load every variable of an mtf checkpoint by name; save
a checkpoint mtf reads.

mtf's training saves ``tf.train.Saver(tf.global_variables())``: every model variable by
its mtf name (``transformer/block_000/layer_001/MoE1D/wi/kernel``, axes in mtf's
dim order), ``global_step``, and the optimizer's slots (Adafactor's
``<var>_slot_v`` / ``_slot_vr`` / ``_slot_vc`` / ``_slot_m``, Adam's ``<var>/adam_m``
...).  Loading takes the model variables and leaves the training state; a model
variable the checkpoint lacks, a checkpoint variable the model does not have, or a
shape that differs is an error naming each.  Saving writes the model variables (and
``global_step`` when given) with ``SaveV2`` under the same names, plus the
``checkpoint`` state file beside them: what mtf's ``Saver.restore`` reads (its
optimizer slots are not written: mtf can evaluate, decode or start training from it,
not resume its optimizer's state).
"""

import os
import re
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from namedmesh.errors import ConfigError

TRAINING_STATE = re.compile(r"(^global_step$|_slot_(v|vr|vc|m)$|_momentum_v$|/adam_[mv]$|"
                            r"^beta[12]_power)")


def is_training_state(name: str) -> bool:
    """An optimizer slot or the step counter (not a model variable)."""
    return bool(TRAINING_STATE.search(name))


def checkpoint_variables(prefix: str) -> Dict[str, List[int]]:
    """``{name: shape}`` of a checkpoint; an unreadable one is a ConfigError naming it."""
    try:
        return dict(tf.train.list_variables(prefix))
    except (tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.InvalidArgumentError,
            ValueError) as e:
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError("checkpoint %r cannot be read: %s" % (prefix, text)) from None


def read_model_arrays(prefix: str) -> Dict[str, np.ndarray]:
    """``{name: array}`` of the model variables of a checkpoint (training state left out)."""
    names = [n for n in checkpoint_variables(prefix) if not is_training_state(n)]
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in names}


def _listing(items, limit=8) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (" (and %d more)" % (len(items) - limit) if len(items) > limit else "")


def check_against(model, stored: Dict[str, List[int]], prefix: str):
    """Every model variable is in the checkpoint with its shape, and nothing else is."""
    expected = model.variable_shapes()
    stored = {n: tuple(s) for n, s in stored.items() if not is_training_state(n)}
    missing = ["%s %s" % (n, list(s)) for n, s in expected.items() if n not in stored]
    extra = ["%s %s" % (n, list(s)) for n, s in stored.items() if n not in expected]
    misshaped = ["%s is %s in the checkpoint, the model's is %s" % (n, list(stored[n]), list(s))
                 for n, s in expected.items() if n in stored and stored[n] != s]
    problems = []
    if missing:
        problems.append("missing %s" % _listing(missing))
    if misshaped:
        problems.append(_listing(misshaped))
    if extra:
        problems.append("variables the model does not have: %s" % _listing(extra))
    if problems:
        raise ConfigError("checkpoint %r does not match the model (%d variables): %s"
                          % (prefix, len(expected), "; ".join(problems)))


def resolve_checkpoint_prefix(prefix: str) -> str:
    """``prefix`` itself, or for a directory the newest checkpoint its state file names."""
    if os.path.isdir(prefix):
        latest = tf.train.latest_checkpoint(prefix)
        if latest is None:
            raise ConfigError("directory %r holds no checkpoint (no 'checkpoint' state file)"
                              % prefix)
        return latest
    return prefix


def load_checkpoint(model, prefix: str, mesh=None, batch_dims=None):
    """Build ``model`` with the checkpoint's values (see the module); returns the model."""
    prefix = resolve_checkpoint_prefix(prefix)
    stored = checkpoint_variables(prefix)
    arrays = read_model_arrays(prefix)
    if not model._built:
        try:
            model.load_variables(arrays)
        except (ConfigError, ValueError) as e:
            raise ConfigError("checkpoint %r: %s" % (prefix, " ".join(str(e).split()))) from None
        try:
            model.build(mesh, batch_dims)
        except (ConfigError, ValueError) as e:
            raise ConfigError("checkpoint %r: %s" % (prefix, " ".join(str(e).split()))) from None
        check_against(model, stored, prefix)
    else:
        check_against(model, stored, prefix)
        model.load_variables(arrays)
    return model


def save_checkpoint(model, prefix: str, global_step: Optional[int] = None) -> str:
    """Write the model's variables (and ``global_step``) under mtf's names; returns prefix."""
    from namedmesh.porting.checkpoint import write_checkpoint
    if not model._built:
        raise ConfigError("save_checkpoint: the model has no variables yet; build it (or run "
                          "it once) first")
    tensors = {name: var.read_value() for name, var in model.variables().items()}
    if global_step is not None:
        tensors["global_step"] = tf.constant(int(global_step), tf.int64)
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    write_checkpoint(prefix, tensors)
    name = os.path.basename(prefix)   # the state file TF1 savers write, relative paths
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "%s"\nall_model_checkpoint_paths: "%s"\n' % (name, name))
    return prefix


__all__ = ["load_checkpoint", "save_checkpoint", "read_model_arrays", "checkpoint_variables",
           "is_training_state", "check_against"]
