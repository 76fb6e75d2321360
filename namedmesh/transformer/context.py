"""What the layers of a stack need at call time: mtf's ``transformer.Context``.

A ``Context`` is made by a ``Unitransformer`` for one call and handed to every
sublayer and layer of its stack.  The dims by name:

    batch_dims       the batch dims of the ids, e.g. [batch] or [outer_batch, batch]
    length_dim       ``length`` (absent from x in "incremental" mode: one position)
    position         [batch..., length] or [length] (int32); [batch...] when incremental
    sequence_id      [batch..., length] (0 = padding), the int 1, or None
    read_priority /  position a sees position b iff read_priority[a] >= write_priority[b]
    write_priority
    encoder_output   [batch..., memory_length, d_model] (a Bitransformer's decoder)

Modes are mtf's: ``"train"``, ``"eval"``, ``"predict"`` (``tf.estimator.ModeKeys``),
and the two decoding modes ``"first_part"`` (the whole prefix at once; layers
record the states of later steps) and ``"incremental"`` (one position; layers
read and update those states).
"""

import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import tensorflow as tf

from namedmesh.core.dims import Dimension
from namedmesh.core.elementwise import cast, not_equal
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ConfigError

TRAIN, EVAL, PREDICT = "train", "eval", "infer"
FIRST_PART, INCREMENTAL = "first_part", "incremental"
MODES = (TRAIN, EVAL, PREDICT, FIRST_PART, INCREMENTAL)
MODE_ALIASES = {"predict": PREDICT, "infer": PREDICT}


def check_mode(mode: str) -> str:
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ConfigError("mode %r: expected one of 'train', 'eval', 'predict', 'first_part', "
                          "'incremental'" % (mode,))
    return mode


@dataclass(eq=False)
class Context:
    """One call of a Unitransformer: its inputs' dims, masks, mode, and what the layers
    record (losses, layer outputs, decoding states, MoE routing statistics)."""

    model: Any                               # the Unitransformer being called
    mesh: Any
    batch_dims: List[Dimension]
    length_dim: Dimension
    store: Any                               # the model's VariableStore
    mode: str = TRAIN
    position: Optional[Tensor] = None
    position_is_default: bool = False
    sequence_id: Union[None, int, Tensor] = None
    read_priority: Optional[Tensor] = None
    write_priority: Optional[Tensor] = None
    encoder_output: Optional[Tensor] = None
    encoder_sequence_id: Union[None, int, Tensor] = None
    losses: Optional[List[Tensor]] = None
    layer_outputs: List[Tensor] = field(default_factory=list)
    states: Optional[List[Tensor]] = None
    new_states: Optional[List[Tensor]] = None
    constant_states: Optional[list] = None
    shared_params: Dict[str, Tensor] = field(default_factory=dict)
    initial_position: Optional[Tensor] = None
    seed: Optional[tf.Tensor] = None         # int64 scalar: this step's draws in training
    moe_losses: Dict[str, Tensor] = field(default_factory=dict)   # variable scope -> aux loss
    moe_stats: Dict[str, Any] = field(default_factory=dict)       # variable scope -> MoEStats
    loss_parts: Optional[Dict[str, Tensor]] = None  # set to {} to get cross_entropy / z_loss
    next_constant_state: int = 0
    layer_index: int = 0
    cache: Dict[Any, Tensor] = field(default_factory=dict)
    input_embeddings: Optional[Tensor] = None
    current_layer: Any = None
    current_layer_input: Optional[Tensor] = None

    def __post_init__(self):
        self.mode = check_mode(self.mode)

    @property
    def train(self) -> bool:
        return self.mode == TRAIN

    @property
    def activation_dtype(self):
        return tf.float32

    @property
    def nonpadding(self):
        """1.0 on tokens and 0.0 on padding ``[batch..., length]``, the int 1, or None."""
        if self.sequence_id is None:
            return None
        if isinstance(self.sequence_id, int):
            return self.sequence_id
        return cast(not_equal(self.sequence_id, 0), self.activation_dtype)

    # -- decoding states ------------------------------------------------------------------
    def get_states(self, n: int) -> List[Tensor]:
        """The next ``n`` recurrent states ("incremental" mode)."""
        return list(self.states[len(self.new_states):len(self.new_states) + n])

    def record_new_states(self, new_states: List[Tensor]):
        self.new_states.extend(new_states)

    def record_constant_state(self, state):
        self.constant_states.append(state)

    def get_constant_state(self):
        state = self.constant_states[self.next_constant_state]
        self.next_constant_state += 1
        return state

    # -- random draws ---------------------------------------------------------------------
    def seed_for(self, what: str):
        """A stateless seed pair ``[step seed, hash(what)]`` for one draw, or None when the
        call has no seed (the placement executor then draws from TF's global state)."""
        if self.seed is None:
            return None
        tag = zlib.crc32(("%s/%d" % (what, self.layer_index)).encode()) & 0x7FFFFFFF
        return tf.stack([tf.cast(self.seed, tf.int64), tf.constant(tag, tf.int64)])


__all__ = ["Context", "TRAIN", "EVAL", "PREDICT", "FIRST_PART", "INCREMENTAL", "check_mode"]
