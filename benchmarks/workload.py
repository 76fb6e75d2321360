"""The benchmark workload, shared by the namedmesh and mtf sides (plain Python, no imports
of TensorFlow, namedmesh or mtf, so the oracle's interpreter can read it too).

Issue 16's workload: MoE2D top-2, 8,192 tokens (outer_batch 2 x batch 8 x length 512),
d_model 512, hidden 2048, 4x4 experts, capacity factor 1.25 (train), forward +
backward of ``reduce_sum(y) + aux_loss`` w.r.t. the input and every variable (as for a
layer inside a model); ``--tiny`` shrinks it for a smoke test.
"""

import argparse
import json
import resource
import sys

LAYOUT = "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0"

FULL = dict(outer_batch=2, batch=8, length=512, d_model=512, hidden=2048, expert_x=4,
            expert_y=4, capacity_factor=1.25)
TINY = dict(outer_batch=2, batch=4, length=16, d_model=16, hidden=32, expert_x=4, expert_y=4,
            capacity_factor=1.25)


def add_workload_args(parser: argparse.ArgumentParser):
    parser.add_argument("--mesh", default="", help='mesh shape, e.g. "b0:2;b1:2" ("" = 1)')
    parser.add_argument("--group-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
    parser.add_argument("--tiny", action="store_true", help="a tiny workload (smoke test)")
    parser.add_argument("--seed", type=int, default=0)


def workload(args) -> dict:
    return dict(TINY if args.tiny else FULL)


def hparams(w: dict, group_size: int) -> dict:
    """mtf's ``moe_*`` hparams of the workload (namedmesh reads the same names)."""
    return {
        "moe_num_experts": [w["expert_x"], w["expert_y"]],
        "moe_hidden_size": w["hidden"],
        "moe_group_size": group_size,
        "moe_capacity_factor_train": w["capacity_factor"],
        "moe_capacity_factor_eval": w["capacity_factor"],
        "moe_capacity_factor_second_level": 1.0,
        "moe_min_expert_capacity": 4,
        "moe_loss_coef": 1e-2,
        "moe_use_second_place_loss": False,
        "moe_second_policy_train": "random",
        "moe_second_policy_eval": "random",
        "moe_second_threshold_train": 0.2,
        "moe_second_threshold_eval": 0.2,
    }


def input_sizes(w: dict):
    return [w["outer_batch"], w["batch"], w["length"], w["d_model"]]


def mesh_size(mesh_shape: str) -> int:
    n = 1
    for part in mesh_shape.replace(",", ";").split(";"):
        if part.strip():
            n *= int(part.split(":")[1])
    return n


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def emit(result: dict):
    """One JSON line on stdout, the runner's input."""
    sys.stdout.write("BENCH_RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()
