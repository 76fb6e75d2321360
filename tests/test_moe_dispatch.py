"""The index dispatcher: the one-hot einsum's results, without its [group, experts, capacity]
tensors; chosen by the layers' ``dispatch`` option."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from moe_cases import Case, assert_dispatchers_agree, run_case, strategy
from namedmesh.moe.config import MoE1DConfig
from namedmesh.moe.dispatch import INDEX, ONE_HOT_EINSUM, make_dispatcher
from namedmesh.moe.gating import switch_gating, top_2_gating

GROUPED = nm.convert_to_shape("outer_batch:2;batch:4;group:16;d_model:8")


def _gating(mesh, router, **config):
    """A real router's decisions on random inputs ``[outer_batch, batch, group, d_model]``,
    with capacity 3 of 16 tokens over 4 experts (so tokens are dropped) and padding."""
    rng = np.random.RandomState(7)
    x = nm.import_tf_tensor(mesh, rng.randn(*GROUPED.sizes).astype(np.float32), GROUPED)
    importance = nm.import_tf_tensor(mesh, rng.choice([0.0, 0.5, 1.0], GROUPED.sizes[:-1],
                                                      p=[0.1, 0.2, 0.7]).astype(np.float32),
                                     GROUPED - "d_model")
    store = nm.VariableStore()
    store.create("router/kernel", "d_model:8;experts:4",
                 value=rng.randn(8, 4).astype(np.float32))
    cfg = MoE1DConfig(second_policy_eval="all", switch_policy_eval="argmax", **config)
    fn = top_2_gating if router == "top_2" else switch_gating
    return fn(x, None, nm.Dimension("experts", 4), nm.Dimension("capacity", 3), cfg, False,
              store, "router", importance=importance), x


@pytest.mark.parametrize("router", ["top_2", "switch"])
def test_dispatch_combine_and_slot_weights_equal_the_einsums(router):
    mesh = nm.Mesh("b0:2;b1:2", "outer_batch:b0;batch:b1")
    gating, x = _gating(mesh, router)
    assert gating.stats.numpy()["dropped"] > 0
    slots = nm.convert_to_shape("experts:4;outer_batch:2;batch:4;capacity:3;d_model:8")
    results = {}
    for dispatcher in (ONE_HOT_EINSUM, INDEX):
        expert_out = nm.import_tf_tensor(
            mesh, np.random.RandomState(8).randn(*slots.sizes).astype(np.float32), slots)
        with tf.GradientTape() as tape:
            tape.watch(expert_out.slices)
            moved = dispatcher.dispatch(x, gating, slots)
            back = dispatcher.combine(expert_out, gating, GROUPED)
            upstream = nm.import_tf_tensor(mesh, np.random.RandomState(9).randn(
                *GROUPED.sizes).astype(np.float32), GROUPED)
            objective = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(back.slices,
                                                                      upstream.slices)])
        grads = tape.gradient(objective, list(expert_out.slices))
        weights = dispatcher.slot_weights(gating, "outer_batch:2;experts:4;batch:4;capacity:3")
        results[dispatcher.name] = [nm.export_to_tf_tensor(t).numpy()
                                    for t in (moved, back, weights)] + [
                                        np.stack([g.numpy() for g in grads])]
    for a, b, what in zip(results["einsum"], results["index"],
                          ["dispatched", "combined", "slot weights", "d expert output"]):
        if what == "combined":  # a token's two weighted rows: one addition, maybe fused
            np.testing.assert_allclose(b, a, rtol=0, atol=2.0 ** -22 * np.abs(a).max())
        else:
            np.testing.assert_array_equal(b, a, err_msg=what)
    filled = (np.abs(results["index"][0]).sum(-1) > 0).sum()
    assert filled == gating.stats.numpy()["routed"]   # every routed token got its slot


def test_index_dispatcher_on_other_meshes():
    # golden weights on meshes other than the cases' own (test_moe.py compares the two
    # dispatchers on every golden case's mesh, and the default, index, with mtf under
    # tf.distribute)
    for name, mesh_shape in (("v2_small", "b0:2;b1:4"), ("v1_switch_train", "")):
        case = Case(name)
        einsum = run_case(case, mesh_shape=mesh_shape, layout=None if mesh_shape else "",
                          dispatch="einsum")
        index = run_case(case, mesh_shape=mesh_shape, layout=None if mesh_shape else "",
                         dispatch="index")
        assert_dispatchers_agree(einsum, index)


def test_index_dispatch_builds_no_group_by_experts_by_capacity_tensor():
    # the one-hot einsum's dispatch and combine tensors have S·E·C elements per group; the
    # index dispatcher's largest tensors are the inputs and the expert slots (O(S·M))
    shape = nm.convert_to_shape("outer_batch:1;batch:2;length:64;d_model:4")
    largest = {}
    for dispatch in ("einsum", "index"):
        layer = nm.moe.MoE1D(num_experts=8, hidden_size=4, group_size=64,
                             capacity_factor_eval=2.0, second_policy_eval="all",
                             dispatch=dispatch)
        mesh = nm.Mesh()
        layer.build(shape, mesh)

        def step(x, layer=layer, mesh=mesh):
            with tf.GradientTape() as tape:
                y, aux = layer(nm.import_tf_tensor(mesh, x, shape))
                objective = nm.export_to_tf_tensor(nm.reduce_sum(y) + aux)
            return tape.gradient(objective, layer.trainable_variables)

        graph = tf.function(step, autograph=False).get_concrete_function(
            tf.TensorSpec(shape.sizes, tf.float32)).graph
        largest[dispatch] = max(t.shape.num_elements() or 0 for op in graph.get_operations()
                                for t in op.outputs if t.shape.is_fully_defined())
    per_group = 64 * 8 * 16                              # S·E·C, C = 64 · 2.0 / 8
    assert largest["einsum"] >= 2 * per_group
    assert largest["index"] < per_group // 4


def test_dispatch_option():
    assert nm.moe.MoE2D().config.dispatch == "auto"
    assert make_dispatcher("auto", nm.Mesh()) is INDEX            # CPU / GPU: index
    assert make_dispatcher("auto", nm.Mesh("b0:2", "batch:b0", strategy=strategy(2))) is INDEX
    assert make_dispatcher("einsum", nm.Mesh()) is ONE_HOT_EINSUM
    layer = nm.moe.MoE1D(dispatch="einsum")
    assert layer.dispatcher_for(nm.Mesh()).name == "einsum"
    with pytest.raises(nm.ConfigError, match=r"dispatch: unknown dispatcher 'scatter'.*'index'"):
        nm.moe.MoE2D(dispatch="scatter")


def test_a_layout_that_splits_the_group_dim_falls_back_to_the_einsum():
    x = np.random.RandomState(0).randn(4, 8, 16).astype(np.float32)
    outs = {}
    for dispatch in ("einsum", "index"):
        layer = nm.moe.MoE1D(num_experts=4, hidden_size=8, group_size=8,
                             second_policy_eval="all", min_expert_capacity=1,
                             capacity_factor_eval=1.0, dispatch=dispatch)
        mesh = nm.Mesh("b0:2", "group:b0")              # splits the tokens of each group
        y, _ = layer(nm.import_tf_tensor(mesh, x, "batch:4;length:8;d_model:16"))
        outs[dispatch] = nm.export_to_tf_tensor(y).numpy()
    np.testing.assert_array_equal(outs["index"], outs["einsum"])
