"""Random single-op programs for the op property tests (test_ops_properties.py).

A case is one of mtf's ops with its parameters, a mesh and layout rules drawn
so that the op's dims are often split: split dims get sliced, padded,
concatenated, split, stacked, shifted (by whole blocks and by parts of one),
gathered from, reduced over, top-k'd and halo-exchanged.  Every parameter is
drawn so that the layout stays valid (split sizes divisible by their mesh dim).
"""
import numpy as np
import tensorflow as tf
from hypothesis import strategies as st

import namedmesh as nm
from namedmesh.errors import LayoutError
from namedmesh.mesh.layout import compute_tensor_layout
from programs import MESHES

X = [("a", 8), ("b", 8), ("c", 4)]
KINDS = ["shift", "slice", "concat", "pad", "gather", "top_k", "split", "stack", "unstack",
         "halo", "dynamic_shift", "cumsum", "where", "logsumexp", "transpose", "dropout",
         "replace", "range", "broadcast", "math", "log_softmax", "sample", "random"]


class OpCase:
    def __init__(self, mesh_shape, rules, kind, params, seed):
        self.mesh_shape, self.rules, self.kind, self.params, self.seed = (
            mesh_shape, rules, kind, params, seed)

    @property
    def layout(self):
        return ";".join("%s:%s" % kv for kv in sorted(self.rules.items()))

    def __repr__(self):
        return "OpCase(%r, %r, %r, %r)" % (self.mesh_shape, self.layout, self.kind, self.params)


@st.composite
def op_cases(draw):
    n = draw(st.sampled_from([4, 8, 2]))
    mesh_shape = draw(st.sampled_from(MESHES[n]))
    mesh = nm.convert_to_shape(mesh_shape)
    mesh_dims = [d.name for d in mesh.dims if d.size > 1]
    rules = {}

    def fits(name, size, mesh_dim):
        return mesh_dim is None or size % mesh[mesh_dim].size == 0

    # the op's dim is split in about three cases out of four
    kind = draw(st.sampled_from(KINDS))
    dim = draw(st.sampled_from(["b", "b", "a", "c"]))
    taken = set()
    for name, size in sorted(X, key=lambda d: d[0] != dim):
        options = [m for m in mesh_dims if m not in taken and fits(name, size, m)]
        weights = options * (3 if name == dim else 1) + [None]
        choice = draw(st.sampled_from(weights))
        if choice is not None:
            rules[name] = choice
            taken.add(choice)

    def split_of(name):
        m = rules.get(name)
        return mesh[m].size if m else 1

    def valid(*shapes):
        layout = nm.convert_to_layout_rules(sorted(rules.items()))
        try:
            for s in shapes:
                compute_tensor_layout(nm.Shape(s), mesh, layout)
            return True
        except LayoutError:
            return False

    def new_dim_rule(name, size, *shapes):
        choice = draw(st.sampled_from(mesh_dims + [None]))
        if choice is not None and fits(name, size, choice):
            rules[name] = choice
            if not valid(*shapes):
                del rules[name]

    size = dict(X)[dim]
    k = split_of(dim)
    p = {"dim": dim}
    if kind == "shift":
        block = size // k
        p["offset"] = draw(st.sampled_from([1, -1, block, -block, block + 1, 2 * block - 1,
                                            size - 1, size + 2, -size]))
        p["wrap"] = draw(st.booleans())
    elif kind == "slice":
        p["size"] = draw(st.sampled_from([m for m in range(k, size + 1, k)]))
        p["begin"] = draw(st.integers(0, size - p["size"]))
    elif kind == "pad":
        total = draw(st.sampled_from([k, 2 * k]))
        before = draw(st.integers(0, total))
        p["paddings"] = [before, total - before]
    elif kind == "concat":
        p["other"] = draw(st.sampled_from([k, 2 * k, size]))
    elif kind == "split":
        parts = draw(st.sampled_from([m for m in range(1, size // k + 1) if (size // k) % m == 0]))
        p["sizes"] = [size // parts] * parts if draw(st.booleans()) else (
            [k, size - k] if size > k else [size])
    elif kind == "stack":
        p["count"] = draw(st.sampled_from([2, 4]))
        p["axis"] = draw(st.integers(-4, 3))
        new_dim_rule("s", p["count"], [("s", p["count"])] + X)
    elif kind == "unstack":
        p["picks"] = [draw(st.integers(0, size - 1)), draw(st.integers(0, size - 1))]
    elif kind == "gather":
        p["batch"] = draw(st.booleans()) and dim != "a"   # indices share dim "a" with x
        p["count"] = draw(st.sampled_from([2, 4]))
        idx = ([("a", 8)] if p["batch"] else []) + [("i", p["count"])]
        new_dim_rule("i", p["count"], idx, [d for d in X if d[0] != dim] + [("i", p["count"])])
        p["indices"] = idx
    elif kind == "top_k":
        p["k"] = draw(st.sampled_from([1, 2, 3, 4]))
        out = [d for d in X if d[0] != dim] + [("k", p["k"])]
        new_dim_rule("k", p["k"], out)
    elif kind == "halo":
        p["halo"] = draw(st.sampled_from([1, 2, 4, 5]))
        p["wrap"] = draw(st.booleans())
        p["left"] = draw(st.booleans())
        block_dim = draw(st.sampled_from([d for d in ("a", "b", "c") if d != dim]))
        rules.pop(block_dim, None)  # the margins sliced off a block are smaller than a split
        p["block_dim"] = block_dim
    elif kind == "dynamic_shift":
        p["wrap"] = draw(st.booleans())
    elif kind == "cumsum":
        p["exclusive"] = draw(st.booleans())
        p["reverse"] = draw(st.booleans())
    elif kind == "where":
        p["other_dims"] = draw(st.sampled_from([["b"], ["c", "a"], ["b", "c"]]))
    elif kind == "logsumexp":
        p["extra"] = draw(st.sampled_from([None, "scalar", "tensor"]))
    elif kind == "transpose":
        p["order"] = draw(st.permutations(["a", "b", "c"]))
    elif kind == "dropout":
        p["rate"] = draw(st.sampled_from([0.25, 0.5]))
        p["noise"] = draw(st.sampled_from([None, ["a", "b"], ["c"]]))
    elif kind == "replace":
        p["parts"] = draw(st.sampled_from([2, 4]))     # dim -> [dim_hi, dim_lo] and back
        hi = ("%s_hi" % dim, size // p["parts"])
        new_dim_rule(hi[0], hi[1], [hi if n == dim else (n, s) for n, s in X])
    elif kind == "broadcast":
        p["new"] = draw(st.sampled_from([2, 4]))
        p["where"] = draw(st.integers(0, 3))
        new_dim_rule("n", p["new"], X + [("n", p["new"])])
    elif kind == "math":
        p["fn"] = draw(st.sampled_from(["sin", "cos", "mod", "floordiv", "cast"]))
    elif kind == "sample":
        p["temperature"] = draw(st.sampled_from([0.0, 0.5, 1.0]))
    elif kind == "random":
        p["normal"] = draw(st.booleans())
    return OpCase(mesh_shape, rules, kind, p, draw(st.integers(0, 1000)))


def make_inputs(case):
    """{name: array}: x, and y / indices / offsets as the op needs."""
    rng = np.random.RandomState(case.seed)
    p = case.params
    out = {"x": rng.randn(*[s for _, s in X]).astype(np.float32)}
    dim_size = dict(X)[p["dim"]]
    if case.kind == "concat":
        out["y"] = rng.randn(*[p["other"] if n == p["dim"] else s for n, s in X]).astype(np.float32)
    if case.kind == "stack":
        out["y"] = rng.randn(*[s for _, s in X]).astype(np.float32)
    if case.kind == "gather":
        sizes = [s for _, s in p["indices"]]
        out["indices"] = rng.randint(-1, dim_size + 1, sizes).astype(np.int32)
    if case.kind == "dynamic_shift":
        out["offsets"] = rng.randint(-dim_size, dim_size + 1, [8]).astype(np.int32)
    if case.kind == "where":
        out["y"] = rng.randn(*[dict(X)[n] for n in p["other_dims"]]).astype(np.float32)
    if case.kind == "logsumexp" and p["extra"] == "tensor":
        out["y"] = rng.randn(*[s for n, s in X if n != p["dim"]]).astype(np.float32)
    return out


def run_case(case, mesh, values):
    """The op on ``mesh`` -> (float output Tensor, optional int Tensor).  values: tf tensors."""
    p = case.params
    x = nm.import_tf_tensor(mesh, values["x"], nm.Shape(X))
    dim = p["dim"]
    kind = case.kind
    if kind == "shift":
        return nm.shift(x, p["offset"], dim, p["wrap"]), None
    if kind == "slice":
        return nm.slice(x, p["begin"], p["size"], dim), None
    if kind == "pad":
        return nm.pad(x, p["paddings"], dim), None
    if kind == "concat":
        y_shape = nm.Shape([(n, p["other"] if n == dim else s) for n, s in X])
        return nm.concat([x, nm.import_tf_tensor(mesh, values["y"], y_shape)], dim), None
    if kind == "split":
        parts = nm.split(x, dim, p["sizes"])
        return nm.concat([parts[-1] * 2.0] + parts[:-1], dim), None
    if kind == "stack":
        y = nm.import_tf_tensor(mesh, values["y"], nm.Shape(X))
        xs = [x, y, x * y, y * 3.0][:p["count"]]
        return nm.stack(xs, "s", p["axis"]), None
    if kind == "unstack":
        parts = nm.unstack(x, dim)
        return parts[p["picks"][0]] * 2.0 + parts[p["picks"][1]], None
    if kind == "gather":
        idx = nm.import_tf_tensor(mesh, values["indices"], nm.Shape(p["indices"]))
        return nm.gather(x, idx, dim), None
    if kind == "top_k":
        values_, indices = nm.top_k(x, dim, nm.Dimension("k", p["k"]))
        return values_, indices
    if kind == "halo":
        fn = nm.left_halo_exchange if p["left"] else nm.halo_exchange
        return fn(x, dim, p["block_dim"], p["halo"], p["wrap"]), None
    if kind == "dynamic_shift":
        offsets = nm.import_tf_tensor(mesh, values["offsets"], "a:8")
        if dim == "a":
            offsets = nm.import_tf_tensor(mesh, values["offsets"][:4], "c:4")
        return nm.dynamic_shift(x, offsets, dim, p["wrap"]), None
    if kind == "cumsum":
        return nm.cumsum(x, dim, exclusive=p["exclusive"], reverse=p["reverse"]), None
    if kind == "where":
        y = nm.import_tf_tensor(mesh, values["y"], nm.Shape([(n, dict(X)[n])
                                                             for n in p["other_dims"]]))
        return nm.where(x > y, x, y * 2.0), None
    if kind == "logsumexp":
        extra = None
        if p["extra"] == "scalar":
            extra = 0.5
        elif p["extra"] == "tensor":
            extra = nm.import_tf_tensor(mesh, values["y"], nm.Shape([d for d in X if d[0] != dim]))
        return nm.reduce_logsumexp(x, dim, extra_logit=extra), None
    if kind == "transpose":
        return nm.transpose(x, nm.Shape([(n, dict(X)[n]) for n in p["order"]])), None
    if kind == "dropout":
        noise = None if p["noise"] is None else nm.Shape([(n, dict(X)[n]) for n in p["noise"]])
        return nm.dropout(x, True, rate=p["rate"], noise_shape=noise, seed=case.seed), None
    size = dict(X)[dim]
    if kind == "replace":
        parts = p["parts"]
        split = nm.replace_dimensions(x, x.shape[dim], [nm.Dimension(dim + "_hi", size // parts),
                                                        nm.Dimension(dim + "_lo", parts)])
        return nm.replace_dimensions(nm.tanh(split), [split.shape[dim + "_hi"],
                                                      split.shape[dim + "_lo"]],
                                     x.shape[dim]), None
    if kind == "range":
        r = nm.mtf_range(mesh, x.shape[dim], tf.float32)
        return x * r + nm.cast(nm.mtf_range(mesh, x.shape[dim], tf.int32), tf.float32), None
    if kind == "broadcast":
        dims = list(X)
        dims.insert(p["where"], ("n", p["new"]))
        return nm.broadcast(x, nm.Shape(dims)) * 2.0, None
    if kind == "math":
        fn = p["fn"]
        if fn in ("sin", "cos"):
            return getattr(nm, fn)(x), None
        if fn == "cast":
            return nm.cast(nm.cast(x * 4.0, tf.int32), tf.float32) + x, None
        ints = nm.cast(x * 10.0, tf.int32)
        other = nm.cast(nm.abs(nm.cast(nm.mtf_range(mesh, x.shape[dim], tf.int32), tf.float32))
                        + 1.0, tf.int32)
        return nm.cast(getattr(nm, fn)(ints, other), tf.float32) + x, None
    if kind == "log_softmax":
        return nm.log_softmax(x, dim), None
    if kind == "sample":
        picked = nm.sample_with_temperature(x, dim, p["temperature"], seed=case.seed)
        return nm.reduce_sum(x * nm.one_hot(picked, x.shape[dim]), reduced_dim=dim), picked
    if kind == "random":
        fn = nm.random_normal if p["normal"] else nm.random_uniform
        return x * fn(mesh, nm.Shape([d for d in X if d[0] != "c"]), seed=case.seed), None
    raise ValueError(kind)


def value_and_grads(case, mesh, values, r):
    """[output, int output or 0, d sum(out * r) / d x, (d / d y)] as TF values."""
    names = sorted(k for k, v in values.items() if v.dtype.is_floating)
    with tf.GradientTape() as tape:
        tape.watch([values[k] for k in names])
        out, ints = run_case(case, mesh, values)
        exported = nm.export_to_tf_tensor(out)
        loss = tf.reduce_sum(exported * r)
    grads = tape.gradient(loss, [values[k] for k in names])
    grads = [tf.zeros_like(values[k]) if g is None else tf.convert_to_tensor(g)
             for g, k in zip(grads, names)]
    extra = nm.export_to_tf_tensor(ints) if ints is not None else tf.constant(0)
    return [exported, extra] + grads
