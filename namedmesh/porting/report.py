"""``namedmesh port CONFIG``: the namedmesh equivalent of a legacy config, explained.

Prints the Python that builds it, the mesh and layout, the ``explain`` sheet of
each layer, what the config set that namedmesh ignores, the layout rules that
do nothing on this mesh, and the checkpoint's MoE layers; ``--check`` runs
every ported layer once on random input (with the checkpoint's weights).
"""

import contextlib
import json
from typing import List, Optional

import numpy as np
import tensorflow as tf

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.porting import checkpoint as ckpt
from namedmesh.porting.ported import PortedConfig


def pair_checkpoint_scopes(config: PortedConfig, prefix: str) -> List[str]:
    """The checkpoint scope of each config layer (in order); a config with one layer
    applies to every MoE layer of the checkpoint."""
    found = ckpt.find_moe_layers(prefix)
    if not found:
        raise ConfigError("checkpoint %r holds no MoE layer (no */top_2_gating/kernel, "
                          "*/switch_gating/kernel or */outer_gating/kernel)" % prefix)
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


def check_layers(config: PortedConfig, input_shape: str, prefix: Optional[str],
                 scopes: Optional[List[str]], seed: int = 0):
    """Run each ported layer once on random input; [(label, y shape, aux loss, stats)]."""
    import namedmesh as nm
    mesh = config.build_mesh()
    shape = nm.convert_to_shape(input_shape)
    x = tf.random.stateless_normal(shape.sizes, seed=[seed, 0])
    out = []
    for i, spec in enumerate(config.layers):
        layer = spec.build()
        if prefix is not None:
            ckpt.load_layer_from_checkpoint(layer, prefix, scopes[i])
        y, loss, stats = layer(nm.import_tf_tensor(mesh, x, shape), return_stats=True)
        value = nm.export_to_tf_tensor(y).numpy()
        if not np.all(np.isfinite(value)):
            raise ConfigError("%s produced non-finite outputs" % spec.label)
        out.append((spec.label + (" <- %s" % (scopes[i] or "<root>") if scopes else ""),
                    value.shape, float(nm.export_to_tf_tensor(loss).numpy()), stats))
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


def port_report(config: PortedConfig, checkpoint: Optional[str] = None, check: bool = False,
                input_shape: Optional[str] = None, fmt: str = "text") -> str:
    from namedmesh.lowering.devices import default_devices
    from namedmesh.mesh.mesh import parse_mesh_shape
    from namedmesh.moe.explain import explain, render
    if check:  # before TensorFlow starts (explain starts it): enough logical CPU devices
        default_devices(parse_mesh_shape(config.mesh_shape or "").size)
    scopes = pair_checkpoint_scopes(config, checkpoint) if checkpoint else None
    shapes = [input_shape or config.default_input_shape(layer) for layer in config.layers]
    with _naming(config):
        explained = [explain(layer.build(), s, config.mesh_shape or "", config.layout or "")
                     for layer, s in zip(config.layers, shapes)]
        checked = check_layers(config, shapes[0], checkpoint, scopes) if check else None
    if fmt == "json":
        return json.dumps({
            "config": config.path, "mesh_shape": config.mesh_shape, "layout": config.layout,
            "mesh_devices": config.mesh_devices,
            "layers": [{"kind": l.kind, "scope": l.scope, "kwargs": l.kwargs,
                        "checkpoint_scope": scopes[i] if scopes else None,
                        "sources": {k: str(v) for k, v in l.sources.items()}}
                       for i, l in enumerate(config.layers)],
            "snippet": config.python_snippet(checkpoint, scopes),
            "ignored": [{"source": str(i.source), "text": i.text} for i in config.ignored],
            "reports": config.reports,
            "explain": [e.to_dict() for e in explained],
            "check": [{"layer": c[0], "output_shape": list(c[1]), "aux_loss": c[2],
                       "stats": {k: {kk: np.asarray(vv).tolist() for kk, vv in v.items()}
                                 for k, v in c[3].numpy().items()}}
                      for c in checked] if checked else None,
        }, indent=2)
    lines = ["# ported from %s" % config.path, "", "## namedmesh code", "",
             config.python_snippet(checkpoint, scopes), "## mesh and layout", "",
             "mesh shape: %s" % (config.mesh_shape or "'' (one processor)"),
             "layout:     %s" % (config.layout or "'' (everything replicated)")]
    if config.mesh_devices:
        lines.append("mesh devices in the config: %s (namedmesh uses the devices you give "
                     "Mesh, or logical CPUs)" % config.mesh_devices)
    for report in config.reports:
        lines.append("note: " + report)
    lines.append("")
    for layer, shape, ex in zip(config.layers, shapes, explained):
        lines += ["## explain: %s, input %s" % (layer.label, shape), "", render(ex, "text")]
    lines += ["## ignored (not MoE, mesh or layout)", ""]
    lines += ["%s:%d: %s" % (i.source.file, i.source.line, i.text) for i in config.ignored] \
        or ["(nothing)"]
    if scopes:
        lines += ["", "## checkpoint %s" % checkpoint, ""]
        lines += ["%s <- scope %s" % (l.label, s or "<root>") for l, s in zip(config.layers,
                                                                             scopes)]
    if checked:
        lines += ["", "## check: one call on random input", ""]
        for label, shape, loss, stats in checked:
            lines.append("%s: output %s, aux loss %.6f" % (label, list(shape), loss))
            lines += ["  " + s for s in stats.summary().splitlines()]
    return "\n".join(lines).rstrip() + "\n"
