"""Random SPMD programs for the lowering property tests.

A program is drawn from shapes alone (op kinds, dims, new names, layout rules),
then run on any mesh: the same named code on a single device, on the placement
executor and on the tf.distribute executor must give the same values and
gradients.
"""
import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

import namedmesh as nm
from namedmesh.errors import LayoutError
from namedmesh.mesh.layout import compute_tensor_layout

MESHES = {
    1: ["x:1", "x:1;y:1"],
    2: ["x:2", "x:2;y:1", "x:1;y:2"],
    4: ["x:4", "x:2;y:2", "x:2;y:2;z:1", "x:1;y:4"],
    8: ["x:8", "x:2;y:4", "x:4;y:2", "x:2;y:2;z:2"],
}
INPUT = [("a", 8), ("b", 4), ("c", 4)]
# hypothesis prefers the first entries of a list: the ones that move splits come first
KINDS = ["merge", "einsum", "split", "rename", "reduce", "top_1", "cumsum", "softmax",
         "transpose", "elementwise"]


class Program:
    def __init__(self, mesh_shape, rules, ops, seed):
        self.mesh_shape = mesh_shape
        self.rules = rules          # {tensor dim name: mesh dim name}
        self.ops = ops              # list of (kind, params)
        self.seed = seed

    @property
    def layout(self) -> str:
        return ";".join("%s:%s" % kv for kv in self.rules.items())

    def __repr__(self):
        return "Program(mesh=%r, layout=%r, ops=%r)" % (self.mesh_shape, self.layout, self.ops)


@st.composite
def programs(draw, max_ops=6):
    n = draw(st.sampled_from(sorted(MESHES, reverse=True)))
    mesh_shape = draw(st.sampled_from(MESHES[n]))
    mesh = nm.convert_to_shape(mesh_shape)
    choices = [n for n, size in zip(mesh.names, mesh.sizes) if size > 1] + [None]
    rules = {}

    def rule_for(name, prefer=None):
        """Draw a mesh dim (or None) for a new name; ``prefer`` (often the mesh dim of
        the dim it comes from) is drawn more often, so splits move between dims."""
        if name not in rules:
            weighted = ([prefer] * 3 if prefer is not None else []) + choices
            rules[name] = draw(st.sampled_from(weighted))
        return rules[name]

    def valid(dims):
        for name, _ in dims:
            rule_for(name)
        shape = nm.Shape(dims)
        try:
            compute_tensor_layout(shape, mesh, nm.convert_to_layout_rules(
                [(k, v) for k, v in rules.items() if v is not None]))
            return True
        except LayoutError:
            return False

    dims = list(INPUT)
    # the input's dims get distinct mesh dims (or none), so the input layout is valid
    assignment = draw(st.permutations(choices[:-1] + [None] * len(INPUT)))
    for (name, size), mesh_dim in zip(INPUT, assignment):
        fits = mesh_dim is not None and size % mesh[mesh_dim].size == 0
        rules[name] = mesh_dim if fits else None
    ops = []
    for i in range(draw(st.integers(2, max_ops))):
        kind = draw(st.sampled_from(KINDS))
        names = [d[0] for d in dims]
        pick = draw(st.integers(0, len(dims) - 1))
        if kind in ("elementwise",):
            ops.append((kind, {}))
            continue
        if kind in ("softmax", "cumsum"):
            ops.append((kind, {"dim": names[pick], "exclusive": draw(st.booleans())}))
            continue
        if kind in ("reduce", "top_1"):
            if len(dims) == 1:
                continue
            new = dims[:pick] + dims[pick + 1:]
            if valid(new):
                ops.append((kind, {"dim": names[pick],
                                   "how": draw(st.sampled_from(["sum", "max", "mean"]))}))
                dims = new
            continue
        if kind == "einsum":
            size = draw(st.sampled_from([2, 4, 8]))
            new_dim = ("e%d" % i, size)
            rule_for(new_dim[0], prefer=rules.get(names[pick]))
            where = draw(st.integers(0, len(dims) - 1))
            new = dims[:pick] + dims[pick + 1:]
            new.insert(where, new_dim)
            if valid(new) and valid([dims[pick], new_dim]):
                ops.append((kind, {"dim": names[pick], "new": new_dim, "out": new}))
                dims = new
            continue
        if kind == "merge":
            if len(dims) == 1 or pick == len(dims) - 1:
                continue
            merged = ("m%d" % i, dims[pick][1] * dims[pick + 1][1])
            rule_for(merged[0], prefer=rules.get(names[pick + 1]))  # -> an all-to-all
            new = dims[:pick] + [merged] + dims[pick + 2:]
        elif kind == "split":
            if dims[pick][1] < 4:
                continue
            rule_for("q%d" % i, prefer=rules.get(names[pick]))
            new = dims[:pick] + [("p%d" % i, 2), ("q%d" % i, dims[pick][1] // 2)] + dims[pick + 1:]
        elif kind == "rename":
            new = list(dims)
            new[pick] = ("r%d" % i, dims[pick][1])
            rule_for(new[pick][0], prefer=rules.get(names[pick]))
        else:  # transpose
            order = draw(st.permutations(range(len(dims))))
            new = [dims[j] for j in order]
        if valid(new):
            ops.append((kind, {"out": new}))
            dims = new
    rules = {k: v for k, v in rules.items() if v is not None}
    return Program(mesh_shape, rules, ops, draw(st.integers(0, 10_000)))


def make_inputs(program):
    """(x, [weights...]) as float32 numpy arrays; weight shapes follow the program."""
    rng = np.random.RandomState(program.seed)
    x = rng.randn(*[s for _, s in INPUT]).astype(np.float32)
    ws = []
    for kind, p in program.ops:
        if kind == "einsum":
            ws.append(rng.randn(_size_of(program, p["dim"]), p["new"][1]).astype(np.float32) * 0.5)
    return x, ws


def _size_of(program, name):
    sizes = dict(INPUT)
    for kind, p in program.ops:
        for n, s in p.get("out", []):
            sizes[n] = s
        if kind == "einsum":
            sizes[p["new"][0]] = p["new"][1]
    return sizes[name]


def run_program(program, mesh, x, ws):
    """The program's output (global tf tensor) on ``mesh``; x and ws are tf values."""
    t = nm.import_tf_tensor(mesh, x, nm.Shape(INPUT))
    wi = 0
    for kind, p in program.ops:
        if kind == "elementwise":
            t = nm.tanh(t) * 1.5 + t * 0.25
        elif kind == "softmax":
            t = nm.softmax(t, p["dim"])
        elif kind == "cumsum":
            t = nm.cumsum(t, p["dim"], exclusive=p["exclusive"]) * 0.5
        elif kind == "reduce":
            fn = {"sum": nm.reduce_sum, "max": nm.reduce_max, "mean": nm.reduce_mean}[p["how"]]
            t = fn(t, reduced_dim=p["dim"])
        elif kind == "top_1":
            dim = t.shape[p["dim"]]
            values, indices = nm.top_1(t, dim)
            picked = nm.reduce_sum(nm.one_hot(indices, dim) * t, reduced_dim=dim)
            t = values + picked * 0.5
        elif kind == "einsum":
            w = nm.import_tf_tensor(mesh, ws[wi], nm.Shape([t.shape[p["dim"]], p["new"]]))
            wi += 1
            t = nm.einsum([t, w], nm.Shape(p["out"]))
        elif kind == "transpose":
            t = nm.einsum([t], nm.Shape(p["out"]))
        else:  # merge, split, rename
            t = nm.reshape(t, nm.Shape(p["out"]))
    return nm.export_to_tf_tensor(t), t.shape


def value_and_grads(program, mesh, x, ws, r):
    """(output, d/dx, d/dws) of ``sum(output * r)``, as TF values, on ``mesh``."""
    with tf.GradientTape() as tape:
        tape.watch([x] + list(ws))
        out, _ = run_program(program, mesh, x, ws)
        loss = tf.reduce_sum(out * r)
    grads = tape.gradient(loss, [x] + list(ws))
    return [out] + [tf.zeros_like(v) if g is None else g for g, v in zip(grads, [x] + list(ws))]
