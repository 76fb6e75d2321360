"""``namedmesh port``: what a legacy config means in namedmesh, with an account of every value.

The report lists the model (every layer with its kind, scope and sizes, the sublayers
around them), the namedmesh code of its MoE layers, the mesh and layout, the
``explain`` sheet of each distinct MoE layer at the input the config's own batch,
length and d_model give it, every binding or key read (file:line, who read it), every
one ignored (file:line and why), every value that came from a default (and whose), the
checkpoint's MoE layers paired with the config's, and with ``--check`` one call of each
distinct MoE layer (with the checkpoint's weights when given).
"""

import contextlib
import json
import re
from collections import OrderedDict
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.porting import checkpoint as ckpt
from namedmesh.porting.ported import PortedConfig

CHECK_BUDGET_BYTES = 2 << 30


def layer_sizes(layer) -> str:
    """One line of a layer's sizes, e.g. ``experts=32 hidden=4096 group=1024 top_2``."""
    c = layer.config
    if c is None:
        return ", ".join("%s=%r" % kv for kv in sorted(layer.kwargs.items())) + \
            " (not described by namedmesh)"
    if layer.kind == "MoE1D":
        return "experts=%d hidden=%d group=%d gating=%s capacity=%s/%s min_capacity=%d" % (
            c.num_experts, c.hidden_size, c.group_size, c.moe_gating, c.capacity_factor_train,
            c.capacity_factor_eval, c.min_expert_capacity)
    if layer.kind == "MoE2D":
        return "experts=%dx%d hidden=%d group=%d capacity=%s/%s min_capacity=%d" % (
            c.expert_x, c.expert_y, c.hidden_size, c.group_size, c.capacity_factor_train,
            c.capacity_factor_eval, c.min_expert_capacity)
    if layer.kind == "DenseReluDense":
        return "d_ff=%d activation=%s dropout=%s" % (c.hidden_size, c.activation, c.dropout_rate)
    text = "heads=%d d_kv=%d dropout=%s" % (c.num_heads, c.key_value_size, c.dropout_rate)
    if getattr(c, "radius", None):
        text += " radius=%d" % c.radius
    if c.relative_attention_type:
        text += " relative=%s" % c.relative_attention_type
    return text


def pair_checkpoint_scopes(config: PortedConfig, prefix: str) -> List[str]:
    """The checkpoint scope of each config MoE layer, in the model's order.

    A config with a model pairs by the scopes its source model gives the layers (every
    missing, mis-shaped or extra MoE variable is named); a config of MoE layers alone
    pairs with the checkpoint's MoE layers in model order (one configured layer applies
    to all of them)."""
    if config.layers and all(layer.variable_scope for layer in config.layers):
        pairing = ckpt.pair_model_checkpoint(config, prefix)
        if not pairing.ok:
            problems = pairing.problems()
            raise ConfigError("checkpoint %r does not match %s: %s%s"
                              % (prefix, config.path, "; ".join(problems[:6]),
                                 " (and %d more)" % (len(problems) - 6) if len(problems) > 6
                                 else ""))
        return pairing.scopes
    found = ckpt.find_moe_layers(prefix)
    if not found:
        raise ConfigError("checkpoint %r holds no MoE layer (no */top_2_gating/kernel, "
                          "*/switch_gating/kernel, */outer_gating/kernel, nor t2t's "
                          "*/x0/kernel or */expert0/kernel)" % prefix)
    if len(config.layers) == 1 and len(found) > 1:
        config.layers = [config.layers[0]] * len(found)
    if len(found) != len(config.layers):
        raise ConfigError("%s configures %d MoE layers but checkpoint %r holds %d (scopes %s)"
                          % (config.path, len(config.layers), prefix, len(found),
                             [f.scope for f in found]))
    for layer, f in zip(config.layers, found):
        if layer.kind != f.kind:
            raise ConfigError("checkpoint %r scope %r holds an %s layer but the config's is %s"
                              % (prefix, f.scope, f.kind, layer.kind))
    return [f.scope for f in found]


def _input_shapes(config: PortedConfig, input_shape: Optional[str]) -> Dict[int, str]:
    return {id(layer): input_shape or config.default_input_shape(layer)
            for layer in config.layers}


def check_budget(config: PortedConfig, shapes: Dict[int, str]):
    """``--check`` allocates real weights at the config's own sizes: refuse what this
    machine cannot hold, naming the layer and how to shrink it."""
    import namedmesh as nm
    for spec, _ in config.distinct_layers():
        d_model = nm.convert_to_shape(shapes[id(spec)]).dims[-1]
        weights = 4 * sum(s.size for s in spec.build().variable_shapes(d_model).values())
        if weights > CHECK_BUDGET_BYTES:
            raise ConfigError("--check would allocate %.1f GiB of weights for %s at the config's "
                              "own sizes (input %s); shrink it (e.g. --gin_param "
                              "'MoE1D.hidden_size = 64' or --hparams moe_hidden_size=64) or "
                              "pass --input-shape with a smaller d_model"
                              % (weights / 2.0 ** 30, spec.label, shapes[id(spec)]))


def check_layers(config: PortedConfig, shapes: Dict[int, str], prefix: Optional[str],
                 scopes: Optional[List[str]], seed: int = 0):
    """Run each distinct ported MoE layer once on random input of its shape (with the
    checkpoint's weights); [(label, y shape, aux loss, stats)]."""
    import namedmesh as nm
    mesh = config.build_mesh()
    out = []
    if prefix is not None:   # every layer, with its own weights
        runs = [(layer, i, 0) for i, layer in enumerate(config.layers)]
    else:                    # each distinct layer once
        index = {id(layer): i for i, layer in enumerate(config.layers)}
        runs = [(spec, index[id(spec)], len(members) - 1)
                for spec, members in config.distinct_layers()]
    for spec, i, more in runs:
        shape = nm.convert_to_shape(shapes[id(spec)])
        x = tf.random.stateless_normal(shape.sizes, seed=[seed, 0])
        layer = spec.build()
        if prefix is not None:
            ckpt.load_layer_from_checkpoint(layer, prefix, scopes[i])
        y, loss, stats = layer(nm.import_tf_tensor(mesh, x, shape), return_stats=True)
        value = nm.export_to_tf_tensor(y).numpy()
        if not np.all(np.isfinite(value)):
            raise ConfigError("%s produced non-finite outputs" % spec.label)
        label = spec.label + (" <- %s" % (scopes[i] or "<root>") if scopes else "")
        if more:
            label += " (and %d more like it)" % more
        out.append((label, value.shape, float(nm.export_to_tf_tensor(loss).numpy()), stats))
    return out


@contextlib.contextmanager
def _naming(config: PortedConfig):
    """Errors of the ported layers on this mesh name the config and the keys involved."""
    try:
        yield
    except NamedMeshError as e:
        message = str(e)
        hints = []
        for layer in config.layers:
            for key in ("num_experts", "expert_x", "expert_y", "group_size"):
                dim = {"num_experts": "experts", "group_size": "n="}.get(key, key)
                if dim in message and key in layer.sources:
                    hints.append("%s is set at %s" % (key, layer.sources[key]))
        for key in ("mesh_shape", "layout"):
            if key in config.sources:
                hints.append("%s at %s" % (key, config.sources[key]))
        raise ConfigError("%s: %s (%s)" % (config.path, message, "; ".join(dict.fromkeys(hints))
                                           or "with the config's mesh and layout")) from None


def grouped_defaults(config: PortedConfig):
    """The values that came from defaults, one line per (parameter, value, whose default):
    ``[(key pattern, value, default, count)]`` (``block_*`` stands for every block)."""
    groups: "OrderedDict[tuple, int]" = OrderedDict()
    for v in config.defaults():
        key = re.sub(r"block_\d+", "block_*", v.key)
        key = re.sub(r"\b(h)\d+\b", r"\1*", key)
        k = (key, repr(v.value), v.default)
        groups[k] = groups.get(k, 0) + 1
    return [(k[0], k[1], k[2], n) for k, n in groups.items()]


def _model_lines(config: PortedConfig) -> List[str]:
    m = config.model
    if m is None:
        return ["(not a whole model: see the notes; the MoE layers below are what it configures)"]
    lines = ["%s (%s): mesh %r, layout %r, batch %s, sequence length %s"
             % (m.kind, m.model_type, m.mesh_shape, m.layout,
                ";".join("%s:%d" % d for d in m.batch_dims) or "not in the config",
                m.sequence_length or "not in the config")]
    if m.kind == "Bitransformer":
        lines.append("shared embedding between encoder and decoder: %s" % m.shared_embedding)
    for unit in m.stacks:
        st = unit.layer_stack
        lines += ["", "%s: d_model %d, max_length %s, vocab %s/%s, shared embedding and softmax "
                      "%s, %d layers%s%s" % (
                          unit.name, unit.d_model, unit.max_length,
                          unit.input_vocab_size or "(from the run's vocabulary)",
                          unit.output_vocab_size or "-",
                          unit.shared_embedding_and_softmax_weights, len(st.layers),
                          " in %d blocks" % st.num_blocks if st.num_blocks > 1 else "",
                          ", legacy LayerStack (dropout %s, epsilon %s)" % (
                              st.dropout_rate, st.norm_epsilon) if st.legacy else "")]
        for name, subs in (("initial", st.sublayers_initial),
                           ("per layer", st.sublayers_per_layer), ("final", st.sublayers_final)):
            lines.append("  sublayers %s: %s" % (name, ", ".join(
                s.name + ("(%s)" % ", ".join("%s=%r" % kv for kv in s.kwargs.items())
                          if s.kwargs else "") for s in subs) or "none"))
        for layer in st.layers:
            lines.append("  %-28s %-18s %s" % (layer.scope or "(%s)" % layer.source_name,
                                                layer.kind, layer_sizes(layer)))
    return lines


def port_report(config: PortedConfig, checkpoint: Optional[str] = None, check: bool = False,
                input_shape: Optional[str] = None, fmt: str = "text") -> str:
    from namedmesh.lowering.devices import default_devices
    from namedmesh.mesh.mesh import parse_mesh_shape
    from namedmesh.moe.explain import explain, render
    size = parse_mesh_shape(config.mesh_shape or "").size
    shapes = _input_shapes(config, input_shape)
    if check:
        check_budget(config, shapes)
        default_devices(size)  # before TensorFlow starts (explain starts it)
    scopes = pair_checkpoint_scopes(config, checkpoint) if checkpoint else None
    distinct = config.distinct_layers()
    with _naming(config):
        explained = [(spec, members, explain(spec.build(), shapes[id(spec)],
                                             config.mesh_shape or "", config.layout or ""))
                     for spec, members in distinct]
        checked = check_layers(config, shapes, checkpoint, scopes) if check else None
        whole = None
        if check and checkpoint:   # a checkpoint of the whole model: load it all, run a batch
            from namedmesh.transformer.running import check_whole_model
            whole = check_whole_model(config, checkpoint)
    defaults = grouped_defaults(config)
    if fmt == "json":
        return json.dumps({
            "config": config.path, "format": config.source_format,
            "model": config.model.to_dict() if config.model is not None else None,
            "mesh_shape": config.mesh_shape, "layout": config.layout,
            "mesh_devices": config.mesh_devices,
            "layers": [{"kind": l.kind, "scope": l.scope, "kwargs": l.kwargs,
                        "variable_scope": l.variable_scope, "input_shape": shapes[id(l)],
                        "implementation": l.implementation,
                        "checkpoint_scope": scopes[i] if scopes else None,
                        "sources": {k: str(v) for k, v in l.sources.items()}}
                       for i, l in enumerate(config.layers)],
            "snippet": config.python_snippet(checkpoint, scopes),
            "read": [{"source": str(s), "by": what} for s, what in config.used],
            "ignored": [{"source": str(i.source), "text": i.text, "reason": i.reason}
                        for i in config.ignored],
            "defaults": [{"key": k, "value": v, "default": d, "count": n}
                         for k, v, d, n in defaults],
            "values": [{"key": v.key, "value": v.value,
                        "source": str(v.source) if v.source is not None else None,
                        "default": v.default or None} for v in config.values],
            "reports": config.reports,
            "explain": [dict(ex.to_dict(), scopes=[m.scope for m in members])
                        for _, members, ex in explained],
            "check": [{"layer": c[0], "output_shape": list(c[1]), "aux_loss": c[2],
                       "stats": {k: {kk: np.asarray(vv).tolist() for kk, vv in v.items()}
                                 for k, v in c[3].numpy().items()}}
                      for c in checked] if checked else None,
            "check_model": {k: v for k, v in whole.items() if k != "lines"} if whole else None,
        }, indent=2, default=repr)
    lines = ["# ported from %s (%s)" % (config.path, config.source_format or "config"), "",
             "## model", ""] + _model_lines(config)
    lines += ["", "## MoE layers: namedmesh code", ""]
    lines += [config.python_snippet(checkpoint, scopes)] if config.layers else [
        "(no MoE layer)", ""]
    lines += ["## mesh and layout", "",
              "mesh shape: %s" % (config.mesh_shape or "'' (one processor)"),
              "layout:     %s" % (config.layout or "'' (everything replicated)")]
    if config.mesh_devices:
        lines.append("mesh devices in the config: %s (namedmesh uses the devices you give "
                     "Mesh, or logical CPUs)" % config.mesh_devices)
    lines += ["", "## notes", ""] + ["- " + r for r in config.reports] + (
        [] if config.reports else ["(none)"])
    for spec, members, ex in explained:
        where = spec.scope if len(members) == 1 else "%s (and %d more like it: %s)" % (
            spec.scope, len(members) - 1, ", ".join(m.scope for m in members[1:4]) +
            (", ..." if len(members) > 4 else ""))
        lines += ["", "## explain: %s in %s, input %s" % (spec.kind, where or "<root>",
                                                          shapes[id(spec)]), "",
                  render(ex, "text")]
    lines += ["## read (%d bindings or keys)" % len(config.used), ""]
    lines += ["%s  <- %s" % (s, what) for s, what in config.used] or ["(nothing)"]
    lines += ["", "## ignored (%d)" % len(config.ignored), ""]
    lines += ["%s: %s  -- %s" % (i.source.where, i.text, i.reason) for i in config.ignored] \
        or ["(nothing)"]
    lines += ["", "## defaults (%d values)" % sum(n for *_, n in defaults), ""]
    lines += ["%s = %s  (%s%s)" % (k, v, d or "default", ", %d times" % n if n > 1 else "")
              for k, v, d, n in defaults] or ["(none)"]
    if scopes:
        lines += ["", "## checkpoint %s" % checkpoint, ""]
        lines += ["%s <- %s" % (l.label, s or "<root>") for l, s in zip(config.layers, scopes)]
    if checked:
        lines += ["", "## check: one call on random input", ""]
        for label, shape, loss, stats in checked:
            lines.append("%s: output %s, aux loss %.6f" % (label, list(shape), loss))
            lines += ["  " + s for s in stats.summary().splitlines()]
    if whole:
        lines += ["", "## check: the whole model from the checkpoint", "",
                  "%s: loaded all %d variables by name; one eval batch of random ids %s"
                  % (whole["model"], whole["variables"], whole["batch"])]
        lines += ["  " + line for line in whole["lines"]]
    return "\n".join(lines).rstrip() + "\n"
