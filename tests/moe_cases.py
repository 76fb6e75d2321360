"""Golden MoE cases (made by mtf 0.1.21, see tests/data/README.md) and how to run them."""
import glob
import json
import os

import numpy as np
import tensorflow as tf

import namedmesh as nm
from helpers import strategy  # noqa: F401  (shared MirroredStrategy cache)

DATA = os.path.join(os.path.dirname(__file__), "data")
CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DATA, "*.npz")))


class Case:
    def __init__(self, name):
        d = np.load(os.path.join(DATA, name + ".npz"))
        self.name = name
        self.data = {k: d[k] for k in d.files}
        self.call = json.loads(str(d["mtf_call"]))
        self.hparams = json.loads(str(d["hparams"]))
        self.shape = nm.convert_to_shape(self.call["input_shape"])
        self.variables = {k[4:]: v for k, v in self.data.items() if k.startswith("var/")}

    @property
    def layer_cls(self):
        return nm.moe.MoE2D if self.call["function"].endswith("v2") else nm.moe.MoE1D

    def make_layer(self, dispatch=None):
        """mtf's layer with this case's weights; ``dispatch``: "einsum", "index" (default: the
        layer's default, "auto")."""
        layer = self.layer_cls.from_hparams(self.hparams)
        if dispatch is not None:
            layer = self.layer_cls(**dict(layer.config.to_kwargs(), dispatch=dispatch))
        layer.load_mtf_variables(self.variables)
        return layer

    @property
    def nonpadding(self):
        return self.data.get("nonpadding")




def forward_and_grads(case, layer, mesh, x, r, nonpadding=None, train=None):
    """(y, loss, {name: grad} incl. "x", stats) of ``reduce_sum(y * r) + loss`` on ``mesh``."""
    train = case.call["train"] if train is None else train
    layer.build(case.shape, mesh)
    variables = layer.mtf_variables()
    with tf.GradientTape() as tape:
        tape.watch(x)
        t = nm.import_tf_tensor(mesh, x, case.shape)
        npd = None
        if nonpadding is not None:
            npd = nm.import_tf_tensor(mesh, nonpadding, case.shape - case.shape.dims[-1].name)
        y, loss, stats = layer(t, train=train, nonpadding=npd, return_stats=True)
        y = nm.export_to_tf_tensor(y)
        loss = nm.export_to_tf_tensor(loss)
        objective = tf.reduce_sum(y * r) + loss
    names = list(variables)
    grads = tape.gradient(objective, [x] + [variables[n] for n in names])
    return y, loss, dict(zip(["x"] + names, grads)), stats


def run_case(case, mesh_shape=None, layout=None, executor="placement", dispatch=None):
    """Numpy results of a golden case on a mesh (default: the case's own mesh)."""
    mesh_shape = case.call["mesh_shape"] if mesh_shape is None else mesh_shape
    layout = case.call["layout"] if layout is None else layout
    layer = case.make_layer(dispatch)
    x = tf.constant(case.data["x"])
    r = tf.constant(case.data["r"])
    npd = tf.constant(case.nonpadding) if case.nonpadding is not None else None
    if executor == "placement":
        mesh = nm.Mesh(mesh_shape, layout)
        y, loss, grads, stats = forward_and_grads(case, layer, mesh, x, r, npd)
        return (y.numpy(), float(loss.numpy()), {k: v.numpy() for k, v in grads.items()},
                stats.numpy())
    n = nm.convert_to_shape(mesh_shape).size
    mesh = nm.Mesh(mesh_shape, layout, strategy=strategy(n))
    layer.build(case.shape, mesh)

    def replica(x, r, npd):
        y, loss, grads, stats = forward_and_grads(case, layer, mesh, x, r, npd)
        # exports are copies on every replica; n is a power of two, so / n is exact
        counts = {level: {k: tf.cast(getattr(s, k), tf.float32) / n for k in STAT_KEYS}
                  for level, s in stats.levels.items()}
        return y / n, loss / n, grads, counts

    y, loss, grads, counts = mesh.run(replica, x, r, npd, reduce="sum")
    return (y.numpy(), float(loss.numpy()), {k: v.numpy() for k, v in grads.items()},
            {level: {k: v.numpy() for k, v in s.items()} for level, s in counts.items()})


STAT_KEYS = ("first_choice_per_expert", "second_choice_per_expert", "requested_per_expert",
             "assigned", "assigned_first", "routed", "dropped", "router_confidence")


def assert_dispatchers_agree(einsum, index, router_atol=2e-6):
    """The index dispatcher's results equal the one-hot einsum's: loss, routing statistics
    and the expert weights' gradients bit for bit; the outputs to the rounding of one
    addition (a token's two weighted expert outputs: the einsum's matmul may fuse it into an
    FMA, 2 float32 steps at the output's scale allowed, measured <= 1 step); the router
    kernels' and the input's gradients to float32 rounding (a dot product over d_model that
    the matmul sums in another order; measured <= 1.4e-6)."""
    (y_e, loss_e, grads_e, stats_e), (y_i, loss_i, grads_i, stats_i) = einsum, index
    np.testing.assert_allclose(y_i, y_e, rtol=0, atol=2.0 ** -22 * np.abs(y_e).max())
    assert loss_i == loss_e
    if stats_e is not None:
        for level in stats_e:
            for key in stats_e[level]:
                np.testing.assert_array_equal(stats_i[level][key], stats_e[level][key],
                                              err_msg="%s %s" % (level, key))
    for name, g in grads_e.items():
        if name == "x" or "gating" in name:
            np.testing.assert_allclose(grads_i[name], g, rtol=0, atol=router_atol, err_msg=name)
        else:
            np.testing.assert_array_equal(grads_i[name], g, err_msg=name)
