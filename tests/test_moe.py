"""MoE1D / MoE2D: parity with mtf 0.1.21, executors, collectives, accounting, training, errors."""
import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from moe_cases import CASES, Case, assert_dispatchers_agree, forward_and_grads, run_case, strategy
from namedmesh.moe.groups import split_into_groups
from namedmesh.moe.layers import mesh_dim_size_of

ATOL = 2e-5


def _assert_matches_mtf(case, y, loss, grads):
    np.testing.assert_allclose(y, case.data["y"], atol=ATOL, rtol=0, err_msg="y")
    np.testing.assert_allclose(loss, case.data["loss"], atol=ATOL, rtol=0, err_msg="loss")
    expected = {k[5:]: v for k, v in case.data.items() if k.startswith("grad/")}
    assert sorted(grads) == sorted(expected)
    for name, g in grads.items():
        np.testing.assert_allclose(g, expected[name], atol=ATOL, rtol=0, err_msg="grad " + name)


def test_there_are_golden_cases():
    assert len(CASES) >= 10  # the four shared ones and those generated with the oracle


@pytest.mark.parametrize("name", CASES)
def test_golden_case_matches_mtf_with_both_dispatchers(name):
    case = Case(name)
    einsum = run_case(case, dispatch="einsum")
    index = run_case(case, dispatch="index")
    _assert_matches_mtf(case, *einsum[:3])
    _assert_matches_mtf(case, *index[:3])
    assert_dispatchers_agree(einsum, index)


# -- same outputs on other meshes and on both executors --------------------------------------
def _groups(case, mesh_shape):
    """The group counts mtf's rule gives on a mesh (v1: one level; v2: first level)."""
    mesh = nm.Mesh(mesh_shape, case.call["layout"], devices=[""] * nm.convert_to_shape(
        mesh_shape).size)
    dims = case.shape.dims
    batch = dims[1] if dims[0].name == "outer_batch" else dims[0]
    n = case.shape.size // dims[-1].size // (dims[0].size if dims[0].name == "outer_batch" else 1)
    try:
        return split_into_groups(n, case.hparams["moe_group_size"], mesh_dim_size_of(mesh, batch))
    except nm.ConfigError:
        return None


def _mesh_variants(case):
    out = []
    for mesh_shape in ["b0:1;b1:1", "b0:2;b1:2", "b0:2;b1:4"]:
        if case.call["mesh_shape"].count(":") == 1:  # 1-D layouts name b0 only
            mesh_shape = {"b0:1;b1:1": "b0:1", "b0:2;b1:2": "b0:2", "b0:2;b1:4": "b0:4"}[mesh_shape]
        if _groups(case, mesh_shape) == _groups(case, case.call["mesh_shape"]):
            out.append(mesh_shape)
    return out


@pytest.mark.parametrize("name", CASES)
def test_same_outputs_on_other_meshes_placement(name):
    case = Case(name)
    variants = _mesh_variants(case)
    assert variants, "no mesh gives this case's groups"
    for mesh_shape in variants:
        try:
            y, loss, grads, _ = run_case(case, mesh_shape=mesh_shape)
        except nm.LayoutError:
            continue  # e.g. 8 experts do not fit a size-... mesh dim: not the same program
        _assert_matches_mtf(case, y, loss, grads)


@pytest.mark.parametrize("name", ["v2_small", "v2_nonpad_threshold", "v1_top2", "v1_switch",
                                  "v2_mesh_2x4"])
def test_same_outputs_with_tf_distribute(name):
    case = Case(name)
    reference = run_case(case)[3]
    for mesh_shape in sorted(set(_mesh_variants(case)) | {case.call["mesh_shape"]}):
        try:
            y, loss, grads, stats = run_case(case, mesh_shape=mesh_shape, executor="strategy")
        except nm.LayoutError:
            continue
        _assert_matches_mtf(case, y, loss, grads)
        # the statistics (packed into one all-reduce per level) agree with the placement run
        for level, values in stats.items():
            for key, value in values.items():
                np.testing.assert_allclose(value, reference[level][key], rtol=1e-6,
                                           err_msg="%s %s %s" % (mesh_shape, level, key))


# -- the collectives of MoE2D ---------------------------------------------------------------
@pytest.mark.parametrize("executor", ["placement", "strategy"])
def test_moe2d_forward_makes_mtf_five_alltoalls(executor):
    case = Case("v2_small")
    layout = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"
    layer = case.make_layer()
    if executor == "placement":
        mesh = nm.Mesh("b0:2;b1:2", layout)
    else:
        mesh = nm.Mesh("b0:2;b1:2", layout, strategy=strategy(4))
        layer.build(case.shape, mesh)
    traces = []

    def fn(x):
        t = nm.import_tf_tensor(mesh, x, case.shape)
        with nm.trace_collectives() as tr:
            y, loss = layer(t)
        traces.append(tr)
        return nm.export_to_tf_tensor(y)

    y = mesh.run(fn, tf.constant(case.data["x"]))
    np.testing.assert_allclose(y.numpy(), case.data["y"], atol=ATOL)
    tr = traces[0]
    a2a = tr.select("all_to_all")
    assert [r.mesh_dims for r in a2a] == [("b1",), ("b1",), ("b0",), ("b0",), ("b1",)]
    assert "expert_x_unsplit" in a2a[0].shape and "d_model" in a2a[0].shape  # inputs
    assert "d_model" not in a2a[1].shape                                     # importance
    assert "expert_y_unsplit" in a2a[2].shape                                # to expert_y
    assert tr.count("all_gather") == 0
    kinds = {r.kind for r in tr.records}
    assert kinds <= {"all_to_all", "all_reduce"}
    # the router loss and statistics: one all-reduce per routing level, as mtf's loss alone
    # makes (they were 12 + 15 before they were packed)
    reduces = {step.name: [c.kind for c in cs if c.kind == "all_reduce"]
               for step, cs in tr.collectives_of_steps()}
    assert tr.count("all_reduce") == 2
    assert reduces["outer expert input"] == ["all_reduce"]      # index dispatch: no dispatch
    assert reduces["inner expert input"] == ["all_reduce"]      # tensor step before these
    assert all(r.mesh_dims == ("b0", "b1") for r in tr.select("all_reduce"))


@pytest.mark.parametrize("executor", ["placement", "strategy"])
def test_router_sums_stay_one_allreduce_per_level_in_train_mode_with_extra_losses(executor):
    case = Case("v2_small")
    layout = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"
    layer = nm.moe.MoE2D.from_hparams(dict(case.hparams, moe_z_loss=1e-3,
                                           moe_use_second_place_loss=True))
    strat = strategy(4) if executor == "strategy" else None
    mesh = nm.Mesh("b0:2;b1:2", layout, strategy=strat)
    layer.build(case.shape, mesh)
    npd = (np.random.RandomState(0).rand(*case.shape.sizes[:-1]) > 0.2).astype(np.float32)
    traces = []

    def fn(x, nonpadding):
        t = nm.import_tf_tensor(mesh, x, case.shape)
        p = nm.import_tf_tensor(mesh, nonpadding, case.shape - "d_model")
        with nm.trace_collectives() as tr:
            y, loss = layer(t, train=True, nonpadding=p, seed=1)
        traces.append(tr)
        return nm.export_to_tf_tensor(loss)

    mesh.run(fn, tf.constant(case.data["x"]), tf.constant(npd))
    assert traces[0].count("all_reduce") == 2
    v1 = nm.moe.MoE1D.from_hparams(dict(Case("v1_top2").hparams, moe_z_loss=1e-3))
    mesh1 = nm.Mesh("b0:2", "batch:b0;experts:b0")
    with nm.trace_collectives() as tr:
        v1(nm.ones(mesh1, "batch:4;length:8;d_model:16"), train=True, seed=1)
    assert tr.count("all_reduce") == 1


def test_second_level_regrouping_is_free():
    mesh = nm.Mesh("b0:2;b1:2", "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0")
    t = nm.zeros(mesh, "expert_x:4;outer_batch:2;batch_unsplit:4;expert_capacity_x:4;d_model:16")
    with nm.trace_collectives() as tr:
        nm.reshape(t, "expert_x:4;outer_batch:4;group_size_y:8;d_model:16")
    assert len(tr) == 0


# -- token accounting ----------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_token_accounting(name):
    case = Case(name)
    _, _, _, stats = run_case(case)
    for level, s in stats.items():
        assert s["routed"] + s["dropped"] == s["assigned"], level
        assert s["first_choice_per_expert"].sum() + s["second_choice_per_expert"].sum() == \
            s["routed"]
    first = stats["experts" if "experts" in stats else "outer"]
    real = case.nonpadding.sum() if case.nonpadding is not None else case.shape.size // \
        case.shape.dims[-1].size
    # every real token makes one first-choice assignment, and at most one second choice
    assert first["assigned_first"] == real
    assert real <= first["assigned"] <= 2 * real
    assert first["first_choice_per_expert"].sum() <= real
    if case.hparams["moe_gating"] == "switch":
        assert first["assigned"] == real
    policy = case.hparams["moe_second_policy_%s" % ("train" if case.call["train"] else "eval")]
    if policy == "all" and case.hparams["moe_gating"] == "top_2":
        assert first["assigned"] == 2 * real


def test_statistics_are_the_same_on_one_processor_and_on_a_mesh():
    # the inner level of MoE2D on 2x2 splits its expert_x dim over b1: its per-expert counts
    # are completed by the packed all-reduce (identity onto an unsplit copy)
    case = Case("v2_nonpad_threshold")
    _, _, _, single = run_case(case, mesh_shape="", layout="")
    _, _, _, split = run_case(case, mesh_shape="b0:2;b1:2")
    for level in ("outer", "inner"):
        for key in ("first_choice_per_expert", "second_choice_per_expert",
                    "requested_per_expert", "assigned", "routed", "dropped"):
            np.testing.assert_array_equal(split[level][key], single[level][key],
                                          err_msg="%s %s" % (level, key))


def test_split_expert_counts_equal_the_filled_slots():
    # the router of MoE2D's inner level on 2x2: inputs [expert_x(b1), outer_batch(b0),
    # group, d_model], experts expert_y_unsplit; its per-expert counts are completed by the
    # packed all-reduce. They must equal the filled slots of the dispatch tensor, counted
    # here in NumPy, and the counts of the same router on one processor.
    from namedmesh.moe.config import MoE2DConfig
    from namedmesh.moe.gating import top_2_gating
    config = MoE2DConfig(capacity_factor_eval=1.0, second_policy_eval="all")
    shape = nm.convert_to_shape("expert_x:2;outer_batch:4;group_size_y:12;d_model:8")
    rng = np.random.RandomState(3)
    x = rng.randn(*shape.sizes).astype(np.float32)
    importance = rng.choice([0.0, 0.5, 1.0], size=shape.sizes[:-1]).astype(np.float32)
    experts, capacity = nm.Dimension("expert_y_unsplit", 4), nm.Dimension("expert_capacity_y", 3)
    kernel = rng.randn(2, 8, 4).astype(np.float32)
    results = []
    for mesh in (nm.Mesh(), nm.Mesh("b0:2;b1:2", "outer_batch:b0;expert_x:b1")):
        store = nm.VariableStore()
        store.create("inner_gating/kernel", "expert_x:2;d_model:8;expert_y_unsplit:4",
                     value=kernel)
        gating = top_2_gating(nm.import_tf_tensor(mesh, x, shape), [shape.dims[0]], experts,
                              capacity, config, False, store, "inner_gating",
                              importance=nm.import_tf_tensor(mesh, importance,
                                                             shape - "d_model"))
        stats = gating.stats.numpy()
        dispatch = nm.export_to_tf_tensor(gating.dispatch_tensor()).numpy()
        filled = dispatch.sum(axis=(1, 2, 4))             # [expert_x, expert_y]
        np.testing.assert_array_equal(
            filled, stats["first_choice_per_expert"] + stats["second_choice_per_expert"])
        assert stats["dropped"] > 0 and stats["routed"] + stats["dropped"] == stats["assigned"]
        results.append(stats)
    for key in results[0]:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-6, err_msg=key)


def test_capacity_drops_are_counted():
    case = Case("v1_capacity_half")
    _, _, _, stats = run_case(case)
    s = stats["experts"]
    assert s["dropped"] > 0 and 0 < s["fraction_dropped"] < 1
    tokens = case.shape.size // case.shape.dims[-1].size
    policy_all = 2 * tokens  # policy "all": every token asks for two experts
    assert s["assigned"] == policy_all


# -- training ------------------------------------------------------------------------------
def test_moe2d_trains_inside_tf_function():
    mesh = nm.Mesh("b0:2;b1:2", "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0")
    layer = nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=16, group_size=8,
                         second_policy_train="all", capacity_factor_train=2.0,
                         min_expert_capacity=2)
    shape = nm.convert_to_shape("outer_batch:2;batch:4;length:8;d_model:8")
    rng = np.random.RandomState(0)
    x = tf.constant(rng.randn(*shape.sizes).astype(np.float32))
    target = tf.constant(np.tanh(rng.randn(*shape.sizes)).astype(np.float32))
    layer.build(shape, mesh)
    variables = layer.trainable_variables
    opt_lr = 0.5

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            y, aux = layer(nm.import_tf_tensor(mesh, x, shape), train=True)
            err = y - nm.import_tf_tensor(mesh, target, shape)
            loss = nm.export_to_tf_tensor(nm.reduce_mean(err * err) + aux)
        grads = tape.gradient(loss, variables)
        for v, g in zip(variables, grads):
            v.assign_sub(opt_lr * g)
        return loss, grads

    first, grads = step()
    for v, g in zip(variables, grads):
        assert np.abs(g.numpy()).max() > 0, v.name
    for _ in range(15):
        last, _ = step()
    assert last.numpy() < 0.9 * first.numpy()


def test_train_mode_without_nonpadding_works():
    # mtf 0.1.21 crashes here (it casts a None importance)
    case = Case("v2_small")
    layer = case.make_layer()
    mesh = nm.Mesh("b0:2;b1:2", case.call["layout"])
    y, loss, stats = layer(nm.import_tf_tensor(mesh, case.data["x"], case.shape), train=True,
                           seed=3, return_stats=True)
    assert np.isfinite(nm.export_to_tf_tensor(y).numpy()).all()
    assert stats["outer"].numpy()["assigned"] > 0


def test_random_policies_are_seeded_and_agree_across_meshes():
    case = Case("v1_top2")
    outs = []
    for mesh_shape, layout in [("", ""), (case.call["mesh_shape"], case.call["layout"])]:
        layer = nm.moe.MoE1D.from_hparams(dict(case.hparams, moe_second_policy_train="random",
                                               moe_second_threshold_train=1.0))
        layer.load_mtf_variables(case.variables)
        mesh = nm.Mesh(mesh_shape, layout)
        x = nm.import_tf_tensor(mesh, case.data["x"], case.shape)
        outs.append([nm.export_to_tf_tensor(layer(x, train=True, seed=s)[0]).numpy()
                     for s in (1, 1, 2)])
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(outs[0][0], outs[0][1])
    assert not np.array_equal(outs[0][0], outs[0][2])


@pytest.mark.parametrize("policy", ["input_jitter", "input_dropout", "sample"])
def test_switch_train_policies_run(policy):
    case = Case("v1_switch")
    layer = nm.moe.MoE1D.from_hparams(dict(case.hparams, moe_switch_policy_train=policy,
                                           moe_switch_dropout=0.1))
    layer.load_mtf_variables(case.variables)
    mesh = nm.Mesh(case.call["mesh_shape"], case.call["layout"])
    y, loss, stats = layer(nm.import_tf_tensor(mesh, case.data["x"], case.shape), train=True,
                           seed=5, return_stats=True)
    s = stats["experts"].numpy()
    assert s["routed"] + s["dropped"] == s["assigned"] == case.shape.size // 16
    assert np.isfinite(nm.export_to_tf_tensor(y).numpy()).all()


def test_router_z_loss_matches_numpy():
    case = Case("v1_switch")
    base = dict(case.hparams, moe_switch_policy_train="argmax")
    layers = []
    for z in (None, 1e-3):
        layer = nm.moe.MoE1D.from_hparams(dict(base, moe_z_loss=z))
        layer.load_mtf_variables(case.variables)
        layers.append(layer)
    mesh = nm.Mesh()
    x = nm.import_tf_tensor(mesh, case.data["x"], case.shape)
    without = nm.export_to_tf_tensor(layers[0](x, train=True)[1]).numpy()
    with_z = nm.export_to_tf_tensor(layers[1](x, train=True)[1]).numpy()
    logits = case.data["x"].reshape(-1, 16) @ case.variables["switch_gating/kernel"]
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    z_loss = (lse ** 2).mean()
    np.testing.assert_allclose(with_z - without, 1e-2 * 1e-3 * z_loss, rtol=1e-4)


def test_three_d_and_two_d_inputs():
    mesh = nm.Mesh()
    layer = nm.moe.MoE1D(num_experts=4, hidden_size=8, group_size=4, second_policy_eval="all",
                         min_expert_capacity=1)
    y, loss = layer(nm.ones(mesh, "batch:8;d_model:6"))
    assert y.shape == nm.convert_to_shape("batch:8;d_model:6")
    layer2 = nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=8, group_size=4)
    y2, _ = layer2(nm.ones(mesh, "batch:4;length:4;d_model:6"))
    assert y2.shape == nm.convert_to_shape("batch:4;length:4;d_model:6")


# -- the porting surface and its errors -----------------------------------------------------
def test_mtf_variables_and_loading_by_name():
    case = Case("v2_small")
    layer = case.make_layer()
    mesh = nm.Mesh()
    layer(nm.import_tf_tensor(mesh, case.data["x"], case.shape))
    vs = layer.mtf_variables()
    assert sorted(vs) == sorted(case.variables)
    for k, v in vs.items():
        np.testing.assert_array_equal(v.numpy(), case.variables[k])
    layer.load_mtf_variables({k: v * 0 for k, v in case.variables.items()})  # after build
    assert not np.any(layer.mtf_variables()["wi/kernel"].numpy())


def test_moe2d_defaults_and_min_expert_capacity():
    layer = nm.moe.MoE2D()
    c = layer.config
    assert (c.expert_x, c.expert_y, c.hidden_size, c.group_size) == (8, 8, 4096, 1024)
    assert c.min_expert_capacity == 4 and c.capacity_factor_second_level == 1.0
    assert nm.moe.MoE1D().config.num_experts == 16


@pytest.mark.parametrize("bad,message", [
    ({"moe_gating": "top_3"}, r"moe_gating.*'top_3'"),
    ({"second_policy_train": "sometimes"}, r"second_policy_train.*'sometimes'"),
    ({"num_experts": "8"}, r"num_experts.*'8'"),
    ({"num_expert": 8}, r"unknown keyword 'num_expert'"),
    ({"moe_gating": "ntlb"}, r"'ntlb'.*not implement"),
])
def test_bad_config_is_named(bad, message):
    with pytest.raises(nm.ConfigError, match=message):
        nm.moe.MoE1D(**bad)


def test_unknown_hparam_is_named():
    with pytest.raises(nm.ConfigError, match="moe_num_expert'"):
        nm.moe.MoE1D.from_hparams({"moe_num_expert": 8})
    with pytest.raises(nm.ConfigError, match="two expert counts"):
        nm.moe.MoE2D.from_hparams({"moe_num_experts": 8})


def test_expert_count_not_divisible_by_mesh_dim():
    mesh = nm.Mesh("b0:2;b1:4", "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0")
    layer = nm.moe.MoE2D(expert_x=6, expert_y=2, hidden_size=8, group_size=4)
    with pytest.raises(nm.LayoutError, match=r"expert_x:6.*b1:4"):
        layer(nm.zeros(mesh, "outer_batch:2;batch:4;length:4;d_model:8"))


def test_token_count_not_divisible_by_mesh_dim():
    # mtf's check, kept where the layers compute groups from shapes (explain, porting)
    with pytest.raises(nm.ConfigError, match=r"n=6 is not a multiple of mesh_dim_size=4"):
        split_into_groups(6, 4, 4)
    # on a mesh, an input whose batch the mesh dim does not divide cannot even be laid out
    mesh = nm.Mesh("b0:2;b1:4", "batch:b1;experts:b1")
    with pytest.raises(nm.LayoutError, match=r"batch:6 is split over mesh dim b1:4"):
        nm.zeros(mesh, "outer_batch:1;batch:6;length:1;d_model:8")


def test_missing_extra_and_misshapen_variables_are_named():
    case = Case("v2_small")
    good = case.variables
    with pytest.raises(nm.ConfigError, match="'wo/kernel' is missing"):
        nm.moe.MoE2D.from_hparams(case.hparams).load_mtf_variables(
            {k: v for k, v in good.items() if k != "wo/kernel"})
    with pytest.raises(nm.ConfigError, match="unexpected variable 'extra/kernel'"):
        nm.moe.MoE2D.from_hparams(case.hparams).load_mtf_variables(dict(good, **{
            "extra/kernel": np.zeros(2)}))
    with pytest.raises(nm.ConfigError, match=r"'wi/kernel' has shape \(4, 4, 16, 31\)"):
        nm.moe.MoE2D.from_hparams(case.hparams).load_mtf_variables(dict(good, **{
            "wi/kernel": np.zeros((4, 4, 16, 31))}))


def test_strategy_needs_seed_for_random_training():
    mesh = nm.Mesh("b0:2", "batch:b0", strategy=strategy(2))
    layer = nm.moe.MoE1D(num_experts=2, hidden_size=4, group_size=4)
    shape = nm.convert_to_shape("batch:4;length:2;d_model:4")
    layer.build(shape, mesh)

    def fn(x):
        y, _ = layer(nm.import_tf_tensor(mesh, x, shape), train=True)
        return nm.export_to_tf_tensor(y)

    with pytest.raises(nm.ConfigError, match="seed"):
        mesh.run(fn, tf.zeros(shape.sizes))
