"""``namedmesh demo``: a short tour of named dims on an embedded default input."""

import numpy as np


def run_demo(args) -> int:
    import tensorflow as tf

    import namedmesh as nm

    mesh = nm.Mesh()
    print("namedmesh %s demo: named dimensions on %s" % (nm.__version__, mesh.describe()))
    x = nm.import_tf_tensor(mesh, tf.random.stateless_normal([4, 8], seed=[0, 0]),
                            "batch:4;d_model:8")
    w = nm.import_tf_tensor(mesh, tf.random.stateless_normal([8, 16], seed=[0, 1]),
                            "d_model:8;hidden:16")
    h = nm.relu(nm.einsum([x, w], "batch:4;hidden:16"))
    probs = nm.softmax(h, "hidden")
    value, index = nm.top_1(probs, "hidden")
    print("x %s  w %s  ->  einsum %s" % (x.shape, w.shape, h.shape))
    print("softmax over 'hidden', top-1 index per batch row:",
          nm.export_to_tf_tensor(index).numpy().tolist())
    total = nm.export_to_tf_tensor(nm.reduce_sum(probs, reduced_dim="hidden")).numpy()
    print("probabilities sum to 1 per row:", bool(np.allclose(total, 1.0, atol=1e-5)))
    return 0
