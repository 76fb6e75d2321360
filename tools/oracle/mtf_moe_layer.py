"""mesh-tensorflow 0.1.21's MoE layers as a TF1 graph on a PlacementMeshImpl (oracle side).

Shared by ``make_moe_precision_goldens.py`` (golden cases) and ``bench_mtf_moe.py`` (the
benchmark's mtf side).  Run in the oracle virtualenv only (tools/oracle/README.md).
"""
import contextlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mtf_shim  # noqa: E402,F401  (makes mesh_tensorflow importable on TF 2.21)
import mesh_tensorflow as mtf  # noqa: E402
from mesh_tensorflow.transformer import moe  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

tf.disable_v2_behavior()

# every hparam transformer_moe_layer_v1 / _v2 read, with mtf's own defaults
# (moe.HParams is a plain attribute bag; mtf's gin layers fill the same names)
DEFAULT_HPARAMS = dict(
    moe_gating="top_2", moe_num_experts=16, moe_loss_coef=1e-2, moe_hidden_size=4096,
    moe_group_size=1024, moe_capacity_factor_train=1.25, moe_capacity_factor_eval=2.0,
    moe_capacity_factor_second_level=1.0, moe_min_expert_capacity=4,
    moe_use_second_place_loss=False, moe_second_policy_train="random",
    moe_second_policy_eval="random", moe_second_threshold_train=0.2,
    moe_second_threshold_eval=0.2, moe_z_loss=None, moe_word_embed_mode=None,
    moe_switch_policy_train="argmax", moe_switch_policy_eval="argmax", moe_switch_dropout=0.0,
    moe_switch_temperature=1.0, moe_switch_jitter=1e-2, moe_dropout_rate=0.0,
    moe_output_dim=None, moe_use_experts_attention=False,
    moe_use_second_place_expert_prob=None, moe_use_second_place_expert_prob_temp=None,
    moe_ntlb_top_k=4, moe_top_n_num_experts_per_token=3)


def make_hparams(**overrides):
    unknown = sorted(set(overrides) - set(DEFAULT_HPARAMS))
    if unknown:
        raise KeyError("unknown moe hparams %s" % unknown)
    return moe.HParams(**dict(DEFAULT_HPARAMS, **overrides))


@contextlib.contextmanager
def tpu_alltoall_rounding():
    """Make PlacementMeshImpl's all-to-all send float32 as bfloat16, as mtf's SimdMeshImpl
    does on TPU (simd_mesh_impl.py, ``alltoall``: ``tf.to_bfloat16`` before
    ``tpu_ops.all_to_all`` and a cast back after), so that mtf's TPU numerics can be
    reproduced on CPU.  The gradient of a reshape is a reshape, so backward all-to-alls
    are rounded too, as on TPU."""
    impl = mtf.placement_mesh_impl.PlacementMeshImpl
    original = impl.alltoall

    def alltoall(self, x, mesh_axis, split_axis, concat_axis):
        dtype = x.tensor_list[0].dtype
        if dtype != tf.float32:
            return original(self, x, mesh_axis, split_axis, concat_axis)
        narrow = self.slicewise(tf.to_bfloat16, x)
        moved = original(self, narrow, mesh_axis, split_axis, concat_axis)
        return self.slicewise(lambda t: tf.cast(t, dtype), moved)

    impl.alltoall = alltoall
    try:
        yield
    finally:
        impl.alltoall = original


def build_layer(layer, hparams, input_dims, mesh_shape, layout, train, x, r=None,
                nonpadding=None, activation_dtype=tf.float32, input_gradient=True):
    """Build mtf's layer on a fresh mtf graph (inside the current tf.Graph).

    layer: "v1" or "v2"; input_dims: [(name, size), ...]; x, r, nonpadding: tf tensors
    (f32); the objective is ``reduce_sum(y * r) + loss`` (``reduce_sum(y) + loss`` without
    r), computed in float32.  Returns (graph, mesh, y, loss, objective, variables, grads)
    with grads in the order of ``variables`` (+ x last when input_gradient).
    """
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    dims = [mtf.Dimension(n, s) for n, s in input_dims]
    shape = mtf.Shape(dims)
    x_m = mtf.import_tf_tensor(mesh, x, shape)
    inputs = mtf.cast(x_m, activation_dtype) if activation_dtype != tf.float32 else x_m
    nonpad = None
    if nonpadding is not None:
        nonpad = mtf.import_tf_tensor(mesh, nonpadding, mtf.Shape(dims[:-1]))
    vdt = mtf.VariableDType(tf.float32, tf.float32, activation_dtype)
    fn = moe.transformer_moe_layer_v2 if layer == "v2" else moe.transformer_moe_layer_v1
    y, loss = fn(inputs, dims[-1], hparams, bool(train), vdt, layout=layout,
                 mesh_shape=mesh_shape, nonpadding=nonpad)
    y32 = mtf.cast(y, tf.float32) if y.dtype != tf.float32 else y
    loss32 = mtf.cast(loss, tf.float32) if loss.dtype != tf.float32 else loss
    if r is not None:
        objective = mtf.reduce_sum(y32 * mtf.import_tf_tensor(mesh, r, y.shape)) + loss32
    else:
        objective = mtf.reduce_sum(y32) + loss32
    variables = list(graph.trainable_variables)
    targets = [v.outputs[0] for v in variables] + ([x_m] if input_gradient else [])
    grads = mtf.gradients([objective], targets)
    return graph, mesh, y, loss, objective, variables, grads


def placement_impl(mesh_shape, layout, devices=None):
    shape = mtf.convert_to_shape(mesh_shape)
    devices = devices or [""] * shape.size
    return mtf.placement_mesh_impl.PlacementMeshImpl(shape, mtf.convert_to_layout_rules(layout),
                                                     devices)


def golden_main(argv, description, cases, default_out, run_case, summary):
    """The command line of a golden-case generator: ``--case NAME`` (repeatable) or
    ``--all``; writes ``<out>/<name>.npz`` of ``run_case(name, cases[name])`` and prints
    ``summary(path, data)``."""
    import argparse
    import numpy as np
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--case", action="append", choices=sorted(cases))
    parser.add_argument("--all", action="store_true")
    parser.add_argument("--out", default=default_out)
    args = parser.parse_args(argv)
    names = sorted(cases) if args.all else (args.case or [])
    if not names:
        parser.error("give --case NAME or --all")
    os.makedirs(args.out, exist_ok=True)
    for name in names:
        data = run_case(name, cases[name])
        path = os.path.join(args.out, name + ".npz")
        np.savez(path, **data)
        print(summary(path, data))
