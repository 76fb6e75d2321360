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

    def make_layer(self):
        layer = self.layer_cls.from_hparams(self.hparams)
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


def run_case(case, mesh_shape=None, layout=None, executor="placement"):
    """Numpy results of a golden case on a mesh (default: the case's own mesh)."""
    mesh_shape = case.call["mesh_shape"] if mesh_shape is None else mesh_shape
    layout = case.call["layout"] if layout is None else layout
    layer = case.make_layer()
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
        return y / n, loss / n, grads

    y, loss, grads = mesh.run(replica, x, r, npd, reduce="sum")
    return y.numpy(), float(loss.numpy()), {k: v.numpy() for k, v in grads.items()}, None
