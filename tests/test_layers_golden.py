"""mtf 0.1.21's layers.py, golden cases from the oracle: outputs and gradients to 2e-5,
variables by mtf's names; on one device, on the case's mesh, and under tf.distribute."""
import pytest

from layer_cases import (CASES, RUNNERS, LayerCase, assert_matches, forward_collectives,
                         run_case)

READY = [c for c in CASES if c.split("@")[0] in RUNNERS]


def test_golden_cases_exist():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", READY)
def test_matches_mtf(name):
    case = LayerCase(name)
    assert_matches(case, *run_case(case))


@pytest.mark.parametrize("name", [c for c in READY if "@" in c])
def test_mesh_case_on_one_device(name):
    """The mesh variant's inputs are the one-device case's: namedmesh on one device gives
    mtf's mesh result."""
    case = LayerCase(name)
    assert_matches(case, *run_case(case, mesh_shape="", layout=""))


@pytest.mark.parametrize("name", [c for c in READY if "@" in c])
def test_forward_collectives_are_mtfs(name):
    """The collectives of the forward pass, by kind and count, are those mtf's lowering of the
    same layer on the same mesh and layout calls (recorded by the oracle)."""
    case = LayerCase(name)
    assert forward_collectives(case) == case.meta["mtf_collectives"]


STRATEGY_CASES = ["dense_relu_dense@mesh", "multihead_self_attention@mesh", "embedding@mesh",
                  "softmax_xent_hard_zloss@mesh", "layer_norm@mesh", "local_attention_1d@mesh",
                  "conv2d_with_blocks@mesh", "conv2d@cmesh"]


@pytest.mark.parametrize("name", STRATEGY_CASES)
def test_matches_mtf_under_tf_distribute(name):
    case = LayerCase(name)
    assert_matches(case, *run_case(case, executor="strategy"))
