"""Read mtf / T5 gin configs as mtf's ``main.py`` runs them, into a whole-model spec.

A command line of ``mesh_tensorflow.transformer.main`` (or T5's
``t5_mesh_transformer``) is a list of ``--gin_file`` s read in order, then the
``--gin_param`` strings, with ``--gin_location_prefix`` search paths.  (mtf's
``main.py`` reads its packaged ``defaults.gin`` before them: pass that file
first to port what mtf ran; without it the report says which required value
is missing.)  ``gin_config`` gives gin's semantics; this module does what
mtf's code does with the bindings:

* ``utils.run``: ``model_type``, ``mesh_shape`` (a string, a list of pairs, or
  ``@utils.tpu_mesh_shape()`` evaluated only when it is the final value, as mtf
  computes it from ``tpu_topology`` and ``model_parallelism``), ``layout_rules``,
  ``mesh_devices`` (``None`` means one device per processor), ``batch_size``
  (sequences, or ``("tokens_per_batch", n)`` ... converted as mtf's
  ``compute_batch_size``) and ``sequence_length``;
* ``build_model``: a ``bitransformer`` is ``make_bitransformer``, which builds
  the encoder in gin scope ``encoder`` and the decoder in scope ``decoder``;
  ``lm``, ``delimited_lm`` and ``aligned`` are one ``Unitransformer``;
* ``make_layer_stack``: ``num_layers`` blocks of ``layers`` (references, or
  ``[@Layer, "name", {kwargs}]``), named ``block_000/layer_001``; each layer is
  a gin call in the stack's scope (a scoped reference ``@encoder/MoE1D`` uses
  its own), and ``EncDecAttention`` / ``LocalSelfAttention`` take
  ``SelfAttention`` 's bindings for what they do not pass it themselves;
* ``LayerStack``: the sublayer functions (called at run time, outside any gin
  scope) and mtf's legacy mode (``dropout_rate`` and ``norm_epsilon`` set).

A config that is not a whole model (a fragment listing MoE layers, or MoE
bindings alone) ports its MoE layers and says what is missing.
"""

import functools
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Union

from namedmesh.core.checks import check_path
from namedmesh.errors import ConfigError, NamedMeshError, WrongTypeError
from namedmesh.porting.gin_config import MACRO, GinConfig, MissingValue, RefValue, Value
from namedmesh.porting.mtf_catalog import MTF, TRANSFORMER, UTILS
from namedmesh.porting.ported import (Ignored, PortedConfig, PortedLayer, ReadValue, Source)
from namedmesh.transformer.spec import (LAYER_CONFIGS, LEGACY_SUBLAYERS, LayerSpec,
                                        LayerStackSpec, ModelSpec, SublayerSpec,
                                        UnitransformerSpec)

RUN = MTF[UTILS + ".run"]
TPU_MESH_SHAPE = MTF[UTILS + ".tpu_mesh_shape"]
MODEL_FN = MTF[UTILS + ".tpu_estimator_model_fn"]
MAKE_BITRANSFORMER = MTF[TRANSFORMER + ".make_bitransformer"]
BITRANSFORMER = MTF[TRANSFORMER + ".Bitransformer"]
UNITRANSFORMER = MTF[TRANSFORMER + ".Unitransformer"]
MAKE_LAYER_STACK = MTF[TRANSFORMER + ".make_layer_stack"]
LAYER_STACK = MTF[TRANSFORMER + ".LayerStack"]
MTF_DEFAULT = "mtf 0.1.21 default"
UNIT_FIELDS = ("d_model", "max_length", "shared_embedding_and_softmax_weights",
               "label_smoothing", "z_loss", "vocab_divisor", "positional_embedding",
               "sinusoid_positional_embedding", "ensemble", "input_full_attention",
               "loss_on_targets_only", "loss_denominator", "token_dropout_rate")
LM_TYPES = ("lm", "delimited_lm", "aligned")


def mesh_string(value, source: Source, what: str = "mesh_shape") -> str:
    """An mtf mesh shape or layout (``"batch:8,model:2"``, ``[("batch", 8)]``, ``[]``) as a
    namedmesh string (``"batch:8;model:2"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        return ";".join("%s:%s" % (a, b) for a, b in value)
    raise ConfigError("%s: %s = %r: expected a string such as 'b0:4;b1:8' or a list of "
                      "(name, %s) pairs" % (source, what, value,
                                            "size" if what == "mesh_shape" else "mesh dim"))


def tpu_mesh_shape(tpu_topology, model_parallelism, ensemble_parallelism=None,
                   logical_cores_per_chip: int = 2, source: Optional[Source] = None,
                   sources: Optional[Dict[str, Source]] = None) -> str:
    """mtf's ``utils.tpu_mesh_shape``: ``"v3-8"`` is 8 cores, ``"4x4"`` (or ``"4x4_twisted"``)
    is 4*4 chips of ``logical_cores_per_chip`` cores; ``batch`` gets cores /
    model_parallelism (/ ensemble_parallelism), ``model`` gets model_parallelism; size-1
    dims are left out.  A list ``model_parallelism`` is a hierarchical-tiling spec
    ``[(name, [sizes] or None), ...]`` (the first None takes the rest)."""
    sources = sources or {}

    def where_of(arg):
        src = sources.get(arg, source)
        return "%s: " % src if src else ""

    where = where_of("tpu_topology")
    if not isinstance(tpu_topology, str):
        raise ConfigError("%stpu_topology = %r: expected a string such as 'v3-8' or '4x4'"
                          % (where, tpu_topology))
    try:
        if tpu_topology.startswith("v"):
            num_cores = int(tpu_topology.split("-")[-1])
        else:
            chips = [int(x) for x in re.split("_twisted|_untwisted", tpu_topology)[0].split("x")]
            num_cores = functools.reduce(lambda a, b: a * b, chips) * logical_cores_per_chip
    except ValueError:
        num_cores = 0
    if num_cores < 1:
        raise ConfigError("%stpu_topology = %r: expected 'v<gen>-<cores>' (e.g. 'v3-8') or "
                          "'<x>x<y>[x<z>]' chips (e.g. '4x4')" % (where, tpu_topology))
    if isinstance(model_parallelism, (list, tuple)):
        names = [p[0] for p in model_parallelism]
        sizes = [None if p[1] is None else functools.reduce(lambda a, b: a * b, p[1], 1)
                 for p in model_parallelism]
        if sizes and sizes[0] is None:
            rest = functools.reduce(lambda a, b: a * b, sizes[1:], 1)
            sizes[0] = num_cores // rest
        if None in sizes or functools.reduce(lambda a, b: a * b, sizes, 1) != num_cores:
            where = where_of("model_parallelism")
            raise ConfigError("%smodel_parallelism spec %r does not multiply to the %d cores of "
                              "%r" % (where, model_parallelism, num_cores, tpu_topology))
        return ";".join("%s:%d" % d for d in zip(names, sizes))
    if isinstance(model_parallelism, bool) or not isinstance(model_parallelism, int) or \
            model_parallelism < 1:
        raise ConfigError("%smodel_parallelism = %r: expected a positive integer or a tiling "
                          "spec" % (where_of("model_parallelism"), model_parallelism))
    data = num_cores // model_parallelism
    if ensemble_parallelism:
        data //= ensemble_parallelism
    dims = []
    if ensemble_parallelism and ensemble_parallelism > 1:
        dims.append("ensemble:%d" % ensemble_parallelism)
    if data > 1:
        dims.append("batch:%d" % data)
    if model_parallelism > 1:
        dims.append("model:%d" % model_parallelism)
    return ";".join(dims)


def _typed(kind: str, values: Dict[str, Value], where: str):
    """The typed config of a layer; an invalid value is an error naming where it was set."""
    config_cls = LAYER_CONFIGS[kind]
    plain = {}
    for key, v in values.items():
        value = v.value
        if key == "activation":   # @mtf.gelu or ["gelu", "linear"]: mtf reads names
            value = ([x.short if isinstance(x, RefValue) else x for x in value]
                     if isinstance(value, list) else
                     value.short if isinstance(value, RefValue) else value)
        if isinstance(value, RefValue):
            raise ConfigError("%s: %s.%s = %r: a configurable reference is not a %s value"
                              % (v.origin, kind, key, value, key))
        plain[key] = value
    try:
        return config_cls(**plain)
    except (NamedMeshError, TypeError) as e:
        for key in plain:   # find the offending keyword so the error names its line
            try:
                config_cls(**{key: plain[key]})
            except (NamedMeshError, TypeError) as e1:
                v = values[key]
                raise ConfigError("%s: %s (in %s)" % (
                    v.binding.source if v.binding else v.origin, e1, where)) from None
        raise ConfigError("%s: %s" % (where, e)) from None


class _MtfBuilder:
    """What mtf's code does with the bindings (see the module docstring)."""

    def __init__(self, gin: GinConfig, ported: PortedConfig, cores_per_chip: int):
        self.gin = gin
        self.ported = ported
        self.cores_per_chip = cores_per_chip
        self.unsupported: List[str] = []
        gin.evaluators[TPU_MESH_SHAPE.name] = self._tpu_mesh_shape

    # -- bookkeeping -----------------------------------------------------------------------
    def record(self, key: str, v: Value, default: str = MTF_DEFAULT):
        if v.binding is not None:
            self.ported.values.append(ReadValue(key, v.value, v.binding.source))
        elif v.explicit is not None:
            self.ported.values.append(ReadValue(key, v.value, Source(v.explicit, 0)))
        else:
            self.ported.values.append(ReadValue(key, v.value, None, default))

    def _tpu_mesh_shape(self, gin: GinConfig, scope, source: Source) -> str:
        try:
            v = gin.call(TPU_MESH_SHAPE, scope, who="utils.tpu_mesh_shape()")
        except MissingValue as e:
            raise ConfigError("%s: mtf computes the mesh with utils.tpu_mesh_shape(), which needs "
                              "tpu_mesh_shape.%s: pass --tpu-topology (e.g. v3-8 or 4x4) or "
                              "--mesh" % (source, e.arg)) from None
        for key, value in v.items():
            self.record("utils.tpu_mesh_shape.%s" % key, value)
        return tpu_mesh_shape(v["tpu_topology"].value, v["model_parallelism"].value,
                              v["ensemble_parallelism"].value, self.cores_per_chip, source,
                              {k: x.binding.source for k, x in v.items() if x.binding})

    # -- utils.run -------------------------------------------------------------------------
    def run(self) -> Dict[str, Value]:
        run = self.gin.call(RUN, [], only=("model_type", "mesh_shape", "layout_rules",
                                           "mesh_devices", "batch_size", "sequence_length"),
                            who="utils.run", required=False)
        p = self.ported
        for key, target in (("mesh_shape", "mesh_shape"), ("layout_rules", "layout")):
            if key not in run:
                p.reports.append("utils.run.%s is not set (mtf requires it); namedmesh uses %s"
                                 % (key, "one processor" if key == "mesh_shape"
                                    else "no layout rules"))
                continue
            v = run[key]
            src = v.binding.source if v.binding else Source("utils.run", 0, key)
            setattr(p, target, mesh_string(v.value, src, "mesh_shape" if key == "mesh_shape"
                                           else "layout_rules"))
            p.sources[target] = src
            self.record("utils.run." + key, v)
        v = run["mesh_devices"]
        if v.value is not None:
            if not isinstance(v.value, (list, tuple)):
                raise ConfigError("%s: expected a list of device names, got %r"
                                  % (v.binding.source, v.value))
            p.mesh_devices = list(v.value)
            p.sources["mesh_devices"] = v.binding.source
        self.record("utils.run.mesh_devices", v)
        for key in ("model_type", "batch_size", "sequence_length"):
            self.record("utils.run." + key, run[key])
        return run

    def batch_dims(self, run: Dict[str, Value], lengths: Dict[str, int]):
        """mtf's ``compute_batch_size`` and ``tpu_estimator_model_fn``'s outer batch."""
        v = run["batch_size"]
        value = v.value
        if isinstance(value, bool):
            value = None
        if isinstance(value, (list, tuple)):
            if len(value) != 2 or not isinstance(value[1], int):
                raise ConfigError("%s: utils.run.batch_size = %r: expected an integer or "
                                  "(method, value)" % (v.origin, value))
            method, n = value
            if method == "sequences_per_batch":
                value = n
            elif method in ("tokens_per_batch", "tokens_per_replica",
                            "sequences_per_replica"):
                if "tokens" in method and not lengths:
                    self.ported.reports.append("batch size %r needs utils.run.sequence_length, "
                                               "which is not set" % (value,))
                    return None
                replicas = self._replicas()
                per = n // max(lengths.values()) if "tokens" in method else n
                if "tokens" in method and n % max(lengths.values()):
                    raise ConfigError("%s: batch_size %r: %d is not divisible by the sequence "
                                      "length %d" % (v.origin, value, n, max(lengths.values())))
                value = per * (replicas if "replica" in method else 1)
            else:
                raise ConfigError("%s: utils.run.batch_size = %r: unknown method %r (expected "
                                  "sequences_per_batch, tokens_per_batch, sequences_per_replica "
                                  "or tokens_per_replica)" % (v.origin, value, method))
        if not isinstance(value, int):
            return None
        fn = self.gin.call(MODEL_FN, [], only=("outer_batch_size",),
                           who="utils.tpu_estimator_model_fn")
        outer = fn["outer_batch_size"]
        self.record("utils.tpu_estimator_model_fn.outer_batch_size", outer)
        if outer.value and outer.value > 1:
            if value % outer.value:
                raise ConfigError("%s: outer_batch_size %d does not divide the batch size %d"
                                  % (outer.origin, outer.value, value))
            return [("outer_batch", outer.value), ("batch", value // outer.value)]
        return [("batch", value)]

    def _replicas(self) -> int:
        from namedmesh.core.dims import Dimension
        from namedmesh.moe.dims import mesh_dim_size_of
        mesh = self.ported._layout_only_mesh()[0]
        return (mesh_dim_size_of(mesh, Dimension("batch", 1))
                * mesh_dim_size_of(mesh, Dimension("outer_batch", 1)))

    # -- the model -------------------------------------------------------------------------
    def model(self, run: Dict[str, Value]) -> ModelSpec:
        model_type = run["model_type"].value
        layout = Value(self.ported.layout, explicit="utils.run.layout_rules")
        mesh = Value(self.ported.mesh_shape, explicit="utils.run.mesh_shape")
        vocab = Value(None, explicit="the run's vocabulary (utils.run.vocabulary)")
        if model_type == "bitransformer":
            mb = self.gin.call(MAKE_BITRANSFORMER, [],
                               {"input_vocab_size": vocab, "output_vocab_size": vocab,
                                "layout": layout, "mesh_shape": mesh},
                               only=("encoder_name", "decoder_name", "bitransformer_cls"),
                               who="make_bitransformer")
            cls = mb["bitransformer_cls"].value
            if isinstance(cls, RefValue) and cls.short != "Bitransformer":
                raise ConfigError("%s: bitransformer_cls = %r: namedmesh ports mtf's "
                                  "Bitransformer" % (mb["bitransformer_cls"].origin, cls))
            for key in ("encoder_name", "decoder_name"):
                self.record("make_bitransformer." + key, mb[key])
            explicit = {"layout": layout, "mesh_shape": mesh, "input_vocab_size": vocab}
            encoder = self.unit(["encoder"], dict(explicit, name=mb["encoder_name"],
                                                  output_vocab_size=Value(None, explicit="mtf"),
                                                  autoregressive=Value(False, explicit="mtf")))
            decoder = self.unit(["decoder"], dict(explicit, name=mb["decoder_name"],
                                                  output_vocab_size=vocab,
                                                  autoregressive=Value(True, explicit="mtf")))
            bi = self.gin.call(BITRANSFORMER, [], {"encoder": Value(None, explicit="mtf"),
                                                   "decoder": Value(None, explicit="mtf")},
                               only=("shared_embedding",), who="Bitransformer")
            self.record("Bitransformer.shared_embedding", bi["shared_embedding"])
            return ModelSpec("Bitransformer", decoder, encoder, model_type,
                             bool(bi["shared_embedding"].value))
        if model_type in LM_TYPES:
            decoder = self.unit([], {"layout": layout, "mesh_shape": mesh,
                                     "input_vocab_size": vocab, "output_vocab_size": vocab,
                                     "autoregressive": Value(model_type != "aligned",
                                                             explicit="mtf")})
            return ModelSpec("Unitransformer", decoder, None, model_type)
        v = run["model_type"]
        raise ConfigError("%s: utils.run.model_type = %r: namedmesh ports 'bitransformer', 'lm', "
                          "'delimited_lm' and 'aligned' models" % (v.origin, model_type))

    def unit(self, scope: List[str], explicit: Dict[str, Value]) -> UnitransformerSpec:
        only = UNIT_FIELDS + ("name",)
        v = self.gin.call(UNITRANSFORMER, scope, explicit, only=only,
                          who="/".join(scope + ["Unitransformer"]))
        name = v["name"].value
        if not isinstance(name, str):
            raise ConfigError("%s: Unitransformer.name = %r: expected a string"
                              % (v["name"].origin, name))
        for key in only:
            self.record("%s Unitransformer.%s" % (name, key), v[key])
        stack = self.layer_stack(scope, name)
        kwargs = {k: v[k].value for k in UNIT_FIELDS}
        try:
            return UnitransformerSpec(
                name=name, layer_stack=stack, autoregressive=bool(explicit["autoregressive"].value),
                input_vocab_size=None, output_vocab_size=None, **kwargs)
        except NamedMeshError as e:
            key = str(e).split(":")[0].rpartition(".")[2]
            origin = v[key].origin if key in v else "/".join(scope)
            raise ConfigError("%s: %s" % (origin, e)) from None

    def stack_layers(self, scope: List[str], unit_name: str):
        """``make_layer_stack`` in ``scope``: the layers of ``num_layers`` blocks."""
        m = self.gin.call(MAKE_LAYER_STACK, scope,
                          only=("layers", "num_layers", "block_scope", "layer_stack_cls"),
                          who="/".join(scope + ["make_layer_stack"]))
        for key in ("layers", "num_layers", "block_scope"):
            self.record("%s make_layer_stack.%s" % (unit_name, key), m[key])
        cls = m["layer_stack_cls"].value
        if isinstance(cls, RefValue) and cls.short != "LayerStack":
            raise ConfigError("%s: layer_stack_cls = %r: namedmesh ports mtf's LayerStack"
                              % (m["layer_stack_cls"].origin, cls))
        binding = m["layers"].binding
        entries, num_blocks = m["layers"].value, m["num_layers"].value
        where = binding.source if binding else Source("make_layer_stack", 0, "layers")
        if not isinstance(entries, (list, tuple)):
            raise ConfigError("%s: expected a list of layers, got %r" % (where, entries))
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
            raise ConfigError("%s: make_layer_stack.num_layers = %r: expected an integer >= 0"
                              % (m["num_layers"].origin, num_blocks))
        parsed = [self._entry(e, where) for e in entries]
        layers = []
        for block in range(num_blocks):
            for n, (ref, name, kwargs) in enumerate(parsed):
                if m["block_scope"].value:
                    layer_name = "block_{:03d}/{}".format(block, name or "layer_{:03d}".format(n))
                else:
                    layer_name = name or "layer_{:03d}".format(len(layers))
                layers.append(self.layer(ref, scope, kwargs, layer_name, unit_name, where))
        return layers, num_blocks, bool(m["block_scope"].value)

    @staticmethod
    def _entry(entry, where: Source):
        if isinstance(entry, RefValue):
            return entry, None, {}
        if isinstance(entry, (list, tuple)):
            ref, name, kwargs = None, None, {}
            for item in entry:
                if isinstance(item, str):
                    name = item
                elif isinstance(item, dict):
                    kwargs = item
                elif isinstance(item, RefValue):
                    ref = item
                else:
                    ref = None
                    break
            if ref is not None:
                return ref, name, kwargs
        raise ConfigError("%s: layer %r: expected @Layer or [@Layer, 'name', {kwargs}]"
                          % (where, entry))

    def layer(self, ref: RefValue, scope: List[str], kwargs: Dict[str, Any], name: str,
              unit_name: str, where: Source) -> LayerSpec:
        call_scope = ref.scopes or scope   # a scoped reference replaces the active scopes
        conf = ref.configurable
        label = "%s/%s" % (unit_name, name)
        explicit = {k: Value(v, explicit="%s (inline kwargs)" % where.where)
                    for k, v in kwargs.items()}
        if conf is None or conf.params is None:
            bound = self.gin.bindings_for(conf.name if conf else ref.name, call_scope)
            raw = {k: self.gin.evaluate(b.value, call_scope, b.source) for k, b in bound.items()}
            for b in bound.values():
                b.read_by.append(label)
            raw.update(kwargs)
            self.unsupported.append("%s: %s (%r)" % (label, ref.short, ref))
            return LayerSpec(ref.short, name, None, raw, "%s/%s/%s/" % (unit_name, name, ref.short),
                             conf.name if conf else ref.name, repr(ref))
        unknown = [k for k in kwargs if k not in conf.params]
        if unknown and not conf.accepts_kwargs:
            raise ConfigError("%s: %s has no parameter %s (it has: %s)"
                              % (where, conf.short, ", ".join(map(repr, unknown)),
                                 ", ".join(conf.params)))
        values = self.gin.call(conf, call_scope, explicit, who=label + " " + conf.short)
        if conf.parent is not None:
            parent = MTF[conf.parent]
            passed = {k: values[k] for k in conf.passes_to_parent}
            passed.update({k: v for k, v in values.items() if k not in conf.params})
            final = self.gin.call(parent, call_scope, passed, who=label + " " + conf.short)
            final.update({k: v for k, v in values.items() if k not in passed})
            values = final
        for key, v in sorted(values.items()):
            self.record("%s %s.%s" % (label, conf.short, key), v)
        config = _typed(conf.short, values, label)
        return LayerSpec(conf.short, name, config, {k: v.value for k, v in values.items()
                                                    if not v.is_default},
                         "%s/%s/%s/" % (unit_name, name, conf.short), conf.name, repr(ref))

    def layer_stack(self, scope: List[str], unit_name: str) -> LayerStackSpec:
        layers, num_blocks, block_scope = self.stack_layers(scope, unit_name)
        v = self.gin.call(LAYER_STACK, scope, {"layers": Value(None, explicit="make_layer_stack")},
                          only=("sublayers_initial", "sublayers_per_layer", "sublayers_final",
                                "dropout_rate", "norm_epsilon", "recompute_grads"),
                          who="/".join(scope + ["LayerStack"]))
        for key, value in v.items():
            self.record("%s LayerStack.%s" % (unit_name, key), value)
        legacy = v["dropout_rate"].value is not None
        if (v["norm_epsilon"].value is not None) != legacy:
            raise ConfigError("%s: LayerStack.dropout_rate and LayerStack.norm_epsilon must both "
                              "be set (legacy mode) or both be None; got %r and %r (mtf raises "
                              "ValueError)" % (v["dropout_rate"].origin, v["dropout_rate"].value,
                                               v["norm_epsilon"].value))
        if legacy:
            custom = [k for k in ("sublayers_initial", "sublayers_per_layer", "sublayers_final")
                      if v[k].value is not None]
            if custom:
                self.ported.reports.append(
                    "%s: LayerStack legacy mode (dropout_rate=%r, norm_epsilon=%r set at %s): "
                    "mtf ignores the custom sublayers %s and runs its legacy_* sublayers"
                    % (unit_name, v["dropout_rate"].value, v["norm_epsilon"].value,
                       v["dropout_rate"].origin, ", ".join(custom)))
            lists = [list(s) for s in LEGACY_SUBLAYERS]
        else:
            lists = []
            for key in ("sublayers_initial", "sublayers_per_layer", "sublayers_final"):
                if v[key].value is None:
                    raise MissingValue("LayerStack", key, scope)
                lists.append([self.sublayer(s, v[key]) for s in v[key].value])
        return LayerStackSpec(layers, *lists, dropout_rate=v["dropout_rate"].value,
                              norm_epsilon=v["norm_epsilon"].value,
                              recompute_grads=bool(v["recompute_grads"].value),
                              num_blocks=num_blocks, block_scope=block_scope)

    def sublayer(self, ref, listed: Value) -> SublayerSpec:
        if not isinstance(ref, RefValue):
            raise ConfigError("%s: sublayer %r: expected a reference such as "
                              "@transformer.sublayer_rms_norm" % (listed.origin, ref))
        conf = ref.configurable
        if conf is None or conf.kind != "sublayer":
            self.unsupported.append("sublayer %r" % ref)
            return SublayerSpec(ref.name)
        # sublayers run when the model is called, outside the construction's gin scopes
        v = self.gin.call(conf, ref.scopes, who=conf.short)
        for key, value in v.items():
            self.record("%s.%s" % (conf.short, key), value)
        return SublayerSpec(conf.short[len("sublayer_"):], {k: x.value for k, x in v.items()})

    # -- fragments -------------------------------------------------------------------------
    def fragment_layers(self) -> List[LayerSpec]:
        """The layer stacks a config fragment binds, each scope on its own."""
        out = []
        scopes = sorted({b.scope for b in self.gin.history if b.configurable is MAKE_LAYER_STACK
                         and b.arg == "layers"}, key=lambda s: (s != "encoder", s))
        for scope in scopes:
            parts = scope.split("/") if scope else []
            layers, _, _ = self.stack_layers(parts, scope or "transformer")
            out += layers
        return out

    def class_layers(self) -> List[LayerSpec]:
        """MoE classes configured without a layer stack: one layer per class and scope."""
        out = []
        seen = []
        for b in self.gin.history:
            conf = b.configurable
            if conf is None or conf.short not in ("MoE1D", "MoE2D"):
                continue
            if (conf, b.scope) in seen:
                continue
            seen.append((conf, b.scope))
            scope = b.scope.split("/") if b.scope else []
            values = self.gin.call(conf, scope, who="%s %s" % (b.scope or "<root>", conf.short))
            for key, v in sorted(values.items()):
                self.record("%s %s.%s" % (b.scope or "<root>", conf.short, key), v)
            out.append(LayerSpec(conf.short, b.scope, _typed(conf.short, values, conf.short),
                                 {k: v.value for k, v in values.items() if not v.is_default},
                                 "", conf.name, conf.short))
        return out


def _moe_ported_layers(specs, model: Optional[ModelSpec], batch_dims, lengths, values):
    """``PortedLayer`` s of the MoE layers, with the sources of the keywords the config set and
    the input the config's own sizes give them."""
    sources: Dict[str, Dict[str, Source]] = {}
    for v in values:
        label, _, param = v.key.partition(" ")
        if v.source is not None and "." in param:
            sources.setdefault(label, {})[param.split(".", 1)[1]] = v.source
    units = {}
    if model is not None:
        units = {id(layer): unit for unit, layer in model.layers()}
    out = []
    for layer in specs:
        if not layer.is_moe:
            continue
        full = layer.variable_scope.rsplit("/", 2)[0] if layer.variable_scope else layer.scope
        unit = units.get(id(layer))
        input_shape = None
        if unit is not None and batch_dims:
            length = model.length_of(unit)
            if length:
                input_shape = ";".join("%s:%d" % d for d in batch_dims) + \
                    ";length:%d;d_model:%d" % (length, unit.d_model)
        label = full if layer.variable_scope else (layer.scope or "<root>")
        out.append(PortedLayer(layer.kind, dict(layer.kwargs), full,
                               {k: s for k, s in sources.get(label, {}).items()
                                if k in layer.kwargs},
                               layer.variable_scope, input_shape, layer.implementation))
    return out


_IGNORE_REASONS = {
    "run": "a training/eval setting of utils.run, not part of the model",
    "other": "not part of the model",
}


def _ignored(gin: GinConfig) -> List[Ignored]:
    out = []
    for b in gin.unread_bindings():
        if b.overridden_by is not None:
            reason = "overridden by %s" % b.overridden_by.source.where
        elif b.selector == MACRO:
            reason = "macro not used by the model"
        elif b.configurable is None:
            reason = "not a configurable namedmesh reads (optimizer, data, vocabulary, ...)"
        elif b.configurable is TPU_MESH_SHAPE:
            reason = "utils.tpu_mesh_shape() is not called: the final utils.run.mesh_shape " \
                     "does not use it"
        elif b.configurable.kind == "run":
            reason = "a training or input-pipeline setting, not part of the model"
        else:
            reason = "no %s is built in scope %r" % (b.configurable.short, b.scope) \
                if b.scope else "not read by the model namedmesh builds"
        out.append(Ignored(b.source, b.text, reason))
    for source, text in gin.imports:
        out.append(Ignored(source, text, "import (namedmesh does not run Python)"))
    return sorted(out, key=lambda i: (i.source.file, i.source.line))


def read_gin(files: Union[str, Sequence[str]], params: Sequence[str] = (),
             search_paths: Sequence[str] = (), tpu_topology: Optional[str] = None,
             logical_cores_per_chip: int = 2, mesh: Optional[str] = None,
             layout: Optional[str] = None) -> PortedConfig:
    """Port gin files (read in order) and ``--gin_param`` strings as mtf's main.py would run
    them; ``search_paths`` are ``--gin_location_prefix`` es; ``tpu_topology`` binds
    ``utils.tpu_mesh_shape.tpu_topology``; ``mesh`` / ``layout`` replace the run's."""
    files = [files] if isinstance(files, (str, os.PathLike)) else files
    if not isinstance(files, (list, tuple)) or not files:
        raise WrongTypeError("read_gin: expected a gin file path or a list of them, got %r"
                             % (files,))
    files = [check_path(f, "read_gin") for f in files]
    if isinstance(params, str):
        params = [params]
    for p in params:
        if not isinstance(p, str):
            raise WrongTypeError("read_gin: each gin param must be a string such as "
                                 "'MoE1D.num_experts = 8', got %r" % (p,))

    def parse() -> GinConfig:
        gin = GinConfig(search_paths)
        for f in files:
            gin.parse_file(f)
        for i, text in enumerate(params, 1):
            gin.parse_param(text, "--gin_param[%d]" % i)
        for option, key, value in (("--tpu-topology", "utils.tpu_mesh_shape.tpu_topology",
                                    tpu_topology),
                                   ("--mesh", "utils.run.mesh_shape", mesh),
                                   ("--layout", "utils.run.layout_rules", layout)):
            if value is not None:
                gin.parse_param("%s = %r" % (key, value), option)
        return gin

    label = " ".join(files + ["--gin_param=%r" % p for p in params])

    def start(gin):
        ported = PortedConfig(path=label, layers=[], source_format="gin")
        builder = _MtfBuilder(gin, ported, logical_cores_per_chip)
        run = builder.run()
        ported.check_mesh_and_layout()
        return ported, builder, run

    gin = parse()
    ported, builder, run = start(gin)
    try:
        model = builder.model(run)
    except MissingValue as missing:
        model = None   # read the fragment afresh: what the failed model read does not count
        gin = parse()
        ported, builder, run = start(gin)
        ported.reports.append(
            "not a whole mtf model: %s. mtf's main.py reads its defaults.gin before the command "
            "line's files; pass it first (--gin_file .../mesh_tensorflow/transformer/gin/"
            "defaults.gin) to port the model mtf runs" % missing)
    if model is not None:
        lengths = run["sequence_length"].value
        if isinstance(lengths, int):
            lengths = {"inputs": lengths, "targets": lengths}
        lengths = dict(lengths or {})
        batch_dims = builder.batch_dims(run, lengths) or []
        model.mesh_shape, model.layout = ported.mesh_shape or "", ported.layout or ""
        model.batch_dims, model.sequence_length = batch_dims, lengths
        ported.model = model
        specs = [layer for _, layer in model.layers()]
    else:
        batch_dims, lengths = [], {}
        specs = builder.fragment_layers() or builder.class_layers()
    ported.layers = _moe_ported_layers(specs, model, batch_dims, lengths, ported.values)
    for entry in builder.unsupported:
        ported.reports.append("not described by namedmesh (reported, not built): %s" % entry)
    if model is None and not specs:
        raise ConfigError("%s: describes neither a model (no make_layer_stack.layers) nor MoE "
                          "layers (no binding such as 'MoE1D.num_experts = 16')" % label)
    ported.ignored = _ignored(gin)
    ported.used = [(b.source, "read by %s" % ", ".join(dict.fromkeys(b.read_by)))
                   for b in gin.read_bindings()]
    return ported
