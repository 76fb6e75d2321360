"""Typed configuration of the MoE layers, with mtf's names at the edge.

``MoE1DConfig`` and ``MoE2DConfig`` hold mtf's gin-class keyword names and
defaults (``mesh_tensorflow.transformer.moe.MoE1D`` / ``MoE2D``).  Legacy
``hparams`` (``moe_*`` names, as ``transformer_moe_layer_v1`` / ``_v2`` read
them) convert once, in ``from_hparams``; nothing deeper reads an untyped bag.
"""

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Union

from namedmesh.core.checks import check_number
from namedmesh.errors import ConfigError

SECOND_POLICIES = ("all", "none", "threshold", "random")
SWITCH_POLICIES = ("argmax", "input_jitter", "input_dropout", "sample")
GATINGS_V1 = ("top_2", "switch")
MTF_ONLY_GATINGS = ("top_n", "ntlb", "switch_max", "expert_selection")
# how tokens move into expert slots (namedmesh's option, not mtf's; see moe/dispatch.py):
# "einsum" = mtf's one-hot einsums, "index" = gathers, "auto" = einsum on TPU, else index
DISPATCHERS = ("auto", "einsum", "index")
NONFINITE_POLICIES = ("mask", "mtf")   # see namedmesh/moe/nonfinite.py
ACTIVATIONS = ("relu", "gelu", "sigmoid", "tanh", "swish", "silu", "softplus", "square",
               "linear", None)


def _check_choice(key, value, choices, what):
    if value not in choices:
        raise ConfigError("%s: unknown %s %r; expected one of %s"
                          % (key, what, value, ", ".join(repr(c) for c in choices)))


def _check_number(key, value, minimum=None, integer=False, allow_none=False, above=False,
                  below=None):
    """A finite number (an int when ``integer``): ``>= minimum`` (``> minimum`` when
    ``above``) and ``< below``.  NaN and infinity are errors, whatever the bounds."""
    if value is None and allow_none:
        return
    check_number(value, key, minimum=minimum, above=above, maximum=below,
                 below=below is not None, integer=integer)


@dataclass
class _Common:
    loss_coef: float = 1e-2
    hidden_size: int = 4096
    group_size: int = 1024
    capacity_factor_train: float = 1.25
    capacity_factor_eval: float = 2.0
    use_second_place_loss: bool = False
    second_policy_train: str = "random"
    second_policy_eval: str = "random"
    second_threshold_train: float = 0.2
    second_threshold_eval: float = 0.2
    min_expert_capacity: int = 4
    dispatch: str = "auto"
    nonfinite_tokens: str = "mask"

    def _validate_common(self):
        _check_number("loss_coef", self.loss_coef, 0)
        _check_number("hidden_size", self.hidden_size, 1, integer=True)
        _check_number("group_size", self.group_size, 1, integer=True)
        _check_number("capacity_factor_train", self.capacity_factor_train, 0, above=True)
        _check_number("capacity_factor_eval", self.capacity_factor_eval, 0, above=True)
        _check_number("min_expert_capacity", self.min_expert_capacity, 1, integer=True)
        _check_number("second_threshold_train", self.second_threshold_train, 0)
        _check_number("second_threshold_eval", self.second_threshold_eval, 0)
        if self.use_second_place_loss not in (True, False) or isinstance(
                self.use_second_place_loss, (str, float)):
            raise ConfigError("use_second_place_loss: expected a boolean, got %r"
                              % (self.use_second_place_loss,))
        _check_choice("second_policy_train", self.second_policy_train, SECOND_POLICIES,
                      "second-place policy")
        _check_choice("second_policy_eval", self.second_policy_eval, SECOND_POLICIES,
                      "second-place policy")
        _check_choice("dispatch", self.dispatch, DISPATCHERS, "dispatcher")
        _check_choice("nonfinite_tokens", self.nonfinite_tokens, NONFINITE_POLICIES,
                      "policy for tokens with NaN or infinity")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_kwargs(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class MoE1DConfig(_Common):
    """mtf's ``MoE1D`` gin keywords and defaults (``transformer_moe_layer_v1``)."""

    num_experts: int = 16
    dropout_rate: float = 0.0
    activation: Union[str, List[str], None] = "relu"
    moe_gating: str = "top_2"
    switch_policy_train: str = "input_jitter"
    switch_policy_eval: str = "input_jitter"
    switch_dropout: float = 0.1
    switch_temperature: float = 1.0
    switch_jitter: float = 1e-2
    ntlb_top_k: int = 4
    output_dim: Optional[int] = None
    use_experts_attention: bool = False
    z_loss: Optional[float] = None
    word_embed_mode: Optional[str] = None
    use_second_place_expert_prob: Optional[float] = None
    use_second_place_expert_prob_temp: Optional[float] = None
    top_n_num_experts_per_token: int = 3

    def __post_init__(self):
        self._validate_common()
        _check_number("num_experts", self.num_experts, 1, integer=True)
        _check_number("dropout_rate", self.dropout_rate, 0, below=1)
        _check_number("ntlb_top_k", self.ntlb_top_k, 1, integer=True)
        _check_number("top_n_num_experts_per_token", self.top_n_num_experts_per_token, 1,
                      integer=True)
        if self.moe_gating in MTF_ONLY_GATINGS:
            raise ConfigError("moe_gating: %r is an mtf gating namedmesh does not implement; "
                              "supported: %s" % (self.moe_gating, ", ".join(GATINGS_V1)))
        _check_choice("moe_gating", self.moe_gating, GATINGS_V1, "gating")
        _check_choice("switch_policy_train", self.switch_policy_train, SWITCH_POLICIES,
                      "switch policy")
        _check_choice("switch_policy_eval", self.switch_policy_eval, SWITCH_POLICIES,
                      "switch policy")
        for a in (self.activation if isinstance(self.activation, list) else [self.activation]):
            _check_choice("activation", a, ACTIVATIONS, "activation")
        _check_number("switch_dropout", self.switch_dropout, 0, below=1)
        _check_number("switch_temperature", self.switch_temperature, 0, above=True)
        _check_number("switch_jitter", self.switch_jitter, 0, below=1)
        _check_number("output_dim", self.output_dim, 1, integer=True, allow_none=True)
        _check_number("z_loss", self.z_loss, 0, allow_none=True)
        for key in ("use_experts_attention", "word_embed_mode", "use_second_place_expert_prob"):
            if getattr(self, key) not in (None, False):
                raise ConfigError("%s=%r: this mtf option is not supported by namedmesh"
                                  % (key, getattr(self, key)))

    @classmethod
    def from_hparams(cls, hparams) -> "MoE1DConfig":
        return cls(**_hparams_to_kwargs(hparams, HPARAMS_V1, "MoE1D"))


@dataclass
class MoE2DConfig(_Common):
    """mtf's ``MoE2D`` gin keywords and defaults (``transformer_moe_layer_v2``), plus
    ``min_expert_capacity`` (default 4), which mtf's own MoE2D forgets (it crashes),
    and ``z_loss`` for the router (mtf's v2 reads it from hparams)."""

    expert_x: int = 8
    expert_y: int = 8
    capacity_factor_second_level: float = 1.0
    z_loss: Optional[float] = None

    def __post_init__(self):
        self._validate_common()
        _check_number("expert_x", self.expert_x, 1, integer=True)
        _check_number("expert_y", self.expert_y, 1, integer=True)
        _check_number("capacity_factor_second_level", self.capacity_factor_second_level, 0,
                      above=True)
        _check_number("z_loss", self.z_loss, 0, allow_none=True)

    @classmethod
    def from_hparams(cls, hparams) -> "MoE2DConfig":
        kwargs = _hparams_to_kwargs(hparams, HPARAMS_V2, "MoE2D")
        experts = kwargs.pop("num_experts", None)
        if experts is not None:
            if not (isinstance(experts, (list, tuple)) and len(experts) == 2):
                raise ConfigError("moe_num_experts: a 2-level MoE needs two expert counts "
                                  "[expert_x, expert_y], got %r" % (experts,))
            kwargs["expert_x"], kwargs["expert_y"] = experts
        gating = kwargs.pop("moe_gating", "top_2")
        if gating != "top_2":
            raise ConfigError("moe_gating: transformer_moe_layer_v2 supports only 'top_2', got %r"
                              % (gating,))
        return cls(**kwargs)


# mtf hparam name -> config field (None: accepted and unused by this layer)
HPARAMS_V1 = {
    "moe_gating": "moe_gating", "moe_num_experts": "num_experts", "moe_loss_coef": "loss_coef",
    "moe_hidden_size": "hidden_size", "moe_group_size": "group_size",
    "moe_min_expert_capacity": "min_expert_capacity",
    "moe_capacity_factor_train": "capacity_factor_train",
    "moe_capacity_factor_eval": "capacity_factor_eval",
    "moe_capacity_factor_second_level": None,
    "moe_use_second_place_loss": "use_second_place_loss",
    "moe_second_policy_train": "second_policy_train",
    "moe_second_policy_eval": "second_policy_eval",
    "moe_second_threshold_train": "second_threshold_train",
    "moe_second_threshold_eval": "second_threshold_eval",
    "moe_dropout_rate": "dropout_rate",
    "moe_switch_policy_train": "switch_policy_train",
    "moe_switch_policy_eval": "switch_policy_eval",
    "moe_switch_dropout": "switch_dropout", "moe_switch_temperature": "switch_temperature",
    "moe_switch_jitter": "switch_jitter", "moe_output_dim": "output_dim",
    "moe_ntlb_top_k": "ntlb_top_k", "moe_use_experts_attention": "use_experts_attention",
    "moe_z_loss": "z_loss", "moe_word_embed_mode": "word_embed_mode",
    "moe_use_second_place_expert_prob": "use_second_place_expert_prob",
    "moe_use_second_place_expert_prob_temp": "use_second_place_expert_prob_temp",
    "moe_top_n_num_experts_per_token": "top_n_num_experts_per_token",
}
HPARAMS_V2 = dict({k: None for k in HPARAMS_V1}, **{
    "moe_gating": "moe_gating", "moe_num_experts": "num_experts", "moe_loss_coef": "loss_coef",
    "moe_hidden_size": "hidden_size", "moe_group_size": "group_size",
    "moe_min_expert_capacity": "min_expert_capacity",
    "moe_capacity_factor_train": "capacity_factor_train",
    "moe_capacity_factor_eval": "capacity_factor_eval",
    "moe_capacity_factor_second_level": "capacity_factor_second_level",
    "moe_use_second_place_loss": "use_second_place_loss",
    "moe_second_policy_train": "second_policy_train",
    "moe_second_policy_eval": "second_policy_eval",
    "moe_second_threshold_train": "second_threshold_train",
    "moe_second_threshold_eval": "second_threshold_eval",
    "moe_z_loss": "z_loss",
})


def _hparams_to_kwargs(hparams, table, layer) -> Dict[str, Any]:
    """Config kwargs from an hparams dict or attribute object (``moe_*`` names).

    Names without the ``moe_`` prefix are other layers' hparams and are ignored;
    an unknown ``moe_*`` name is an error naming it.
    """
    if isinstance(hparams, dict):
        items = dict(hparams)
    elif hasattr(hparams, "values") and callable(hparams.values):  # tf HParams
        items = dict(hparams.values())
    elif hasattr(hparams, "__dict__") and not isinstance(hparams, (str, bytes, type)):
        items = {k: v for k, v in vars(hparams).items() if not k.startswith("_")}
    else:
        raise ConfigError("%s.from_hparams: expected a dict of moe_* hparams or an hparams "
                          "object, got %.80r (%s)" % (layer, hparams, type(hparams).__name__))
    kwargs = {}
    for key, value in items.items():
        if not key.startswith("moe_"):
            continue
        if key not in table:
            known = ", ".join(sorted(table))
            raise ConfigError("%s hparams: unknown key %r (known moe_* keys: %s)"
                              % (layer, key, known))
        target = table[key]
        if target is not None:
            kwargs[target] = value
    if kwargs.get("use_second_place_loss") in (0, 1) and not isinstance(
            kwargs["use_second_place_loss"], (str, float)):
        kwargs["use_second_place_loss"] = bool(kwargs["use_second_place_loss"])
    if layer == "MoE1D" and "num_experts" in kwargs and isinstance(kwargs["num_experts"], list):
        raise ConfigError("moe_num_experts: a 1-level MoE needs one expert count, got %r "
                          "(two counts configure MoE2D)" % (kwargs["num_experts"],))
    return kwargs


def config_kwargs_names(config_cls) -> List[str]:
    return [f.name for f in fields(config_cls)]


__all__ = ["MoE1DConfig", "MoE2DConfig", "HPARAMS_V1", "HPARAMS_V2"]
