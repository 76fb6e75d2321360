"""``make bench``: the MoE2D workload of issue 16, namedmesh and mtf side by side, in one run.

Every configuration runs in a process of its own (so its first call and peak memory are
its own): ``moe_step.py`` for namedmesh (and ``--floor``, the expert FFN alone on the same
capacity slots), and, when an mtf oracle virtualenv is present (``$NAMEDMESH_MTF_ORACLE``,
default /tmp/mtf-oracle; see tools/oracle/README.md), ``tools/oracle/bench_mtf_moe.py``
with the oracle's interpreter.  Prints the figures side by side with ratios; compare
ratios within one run (timings on a shared machine are noisy).  ``--rounds R`` runs the
whole grid R times, one round after the other, and reports each configuration's median
over the rounds: a slow moment of the machine then lands in one round of every
configuration rather than in all of one.

    make bench                                   # the full grid, about 10-15 minutes
    .venv/bin/python benchmarks/bench.py --groups 1024 --meshes "b0:2;b1:2"
    .venv/bin/python benchmarks/bench.py --tiny --repeats 1      # a smoke run
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from workload import FULL, TINY  # noqa: E402

ORACLE_ENV = "NAMEDMESH_MTF_ORACLE"
DEFAULT_ORACLE = "/tmp/mtf-oracle"
MTF_SCRIPT = os.path.join(ROOT, "tools", "oracle", "bench_mtf_moe.py")
STEP_SCRIPT = os.path.join(HERE, "moe_step.py")


def oracle_python():
    """The oracle virtualenv's interpreter, or None if there is none."""
    path = os.path.join(os.environ.get(ORACLE_ENV, DEFAULT_ORACLE), "bin", "python")
    return path if os.path.exists(path) else None


def run_one(python, script, args, timeout):
    """Run one configuration; its BENCH_RESULT dict, or {"error": ...}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    try:
        proc = subprocess.run([python, script] + args, capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": "timed out after %d s" % timeout}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": "exit %d: %s" % (proc.returncode, " | ".join(tail))}


def configurations(args):
    """(key, python, script, argv) for every run, mtf and namedmesh interleaved."""
    common = ["--repeats", str(args.repeats)] + (["--tiny"] if args.tiny else [])
    mtf_python = oracle_python() if not args.no_mtf else None
    runs = []
    for group in args.groups:
        for mesh in args.meshes:
            base = common + ["--group-size", str(group), "--mesh", mesh]
            if mtf_python:
                runs.append((("mtf", group, mesh, "mtf", "einsum"), mtf_python, MTF_SCRIPT,
                             base))
            for executor in args.executors:
                for dispatch in args.dispatch:
                    runs.append((("namedmesh", group, mesh, executor, dispatch), sys.executable,
                                 STEP_SCRIPT, base + ["--executor", executor, "--dispatch",
                                                      dispatch]))
            runs.append((("floor", group, mesh, "-", "-"), sys.executable, STEP_SCRIPT,
                         base + ["--floor"]))
    if args.scaling_mesh and "strategy" in args.executors:
        group = scaling_group(args)
        base = common + ["--group-size", str(group), "--mesh", args.scaling_mesh]
        runs.append((("namedmesh", group, args.scaling_mesh, "strategy", args.dispatch[0]),
                     sys.executable, STEP_SCRIPT,
                     base + ["--executor", "strategy", "--dispatch", args.dispatch[0]]))
    return runs, mtf_python


def scaling_group(args) -> int:
    """The group size of the first-call scaling run (the middle one of the grid)."""
    return sorted(args.groups)[len(args.groups) // 2]


def _s(v, fmt="%.3f"):
    return "-" if v is None else fmt % v


def _ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def combine_rounds(rounds):
    """One result per configuration from several rounds of the grid: every number is the
    median over the rounds (peak RSS: the largest), ``steps_s`` every round's steps, and
    ``rounds_median_s`` each round's median; a configuration that failed in any round
    keeps that round's error."""
    if len(rounds) == 1:
        return rounds[0]
    combined = {}
    for key in rounds[0]:
        per = [r[key] for r in rounds]
        failed = [r for r in per if "error" in r]
        if failed:
            combined[key] = failed[0]
            continue
        out = dict(per[0])
        for field, value in per[0].items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            values = [r[field] for r in per]
            out[field] = max(values) if field == "peak_rss_mb" else _median(values)
        out["steps_s"] = [s for r in per for s in r.get("steps_s", [])]
        out["rounds_median_s"] = [r["median_s"] for r in per]
        combined[key] = out
    return combined


def _median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])


def report(results, args, mtf_python) -> str:
    """The side-by-side tables and the acceptance ratios of issue 16, as text."""
    lines = []
    w = TINY if args.tiny else FULL
    tokens = w["outer_batch"] * w["batch"] * w["length"]
    lines.append("MoE2D top-2, %d tokens, d_model %d, hidden %d, %dx%d experts, capacity factor "
                 "%.2f; forward + backward of reduce_sum(y) + aux_loss; median of %d steps%s"
                 % (tokens, w["d_model"], w["hidden"], w["expert_x"], w["expert_y"],
                    w["capacity_factor"], args.repeats,
                    "" if args.rounds == 1 else
                    ", then the median over %d rounds of the grid" % args.rounds))
    lines.append("mtf: %s" % (mtf_python or "no oracle (set %s; see tools/oracle/README.md)"
                              % ORACLE_ENV))
    lines.append("")
    header = ["mesh", "executor", "dispatch", "group (actual)", "mtf s", "namedmesh s",
              "nm/mtf", "floor s", "nm/floor", "first call nm", "mtf build+lower",
              "mtf first", "RSS nm MB", "RSS mtf MB"]
    rows = []
    for key, r in results.items():
        side, group, mesh, executor, dispatch = key
        if side != "namedmesh":
            continue
        m = results.get(("mtf", group, mesh, "mtf", "einsum"), {})
        f = results.get(("floor", group, mesh, "-", "-"), {})
        if "error" in r:
            rows.append([mesh or "1", executor, dispatch, str(group), "", "error: " + r["error"]]
                        + [""] * 8)
            continue
        actual = "%d (%d, %d)" % (group, r["group_size_x"], r["group_size_y"])
        rows.append([mesh or "1", executor, r["dispatch"], actual, _s(m.get("median_s")),
                     _s(r["median_s"]), _s(_ratio(r["median_s"], m.get("median_s")), "%.2f"),
                     _s(f.get("median_s")), _s(_ratio(r["median_s"], f.get("median_s")), "%.2f"),
                     _s(r["first_call_s"], "%.1f"), _s(m.get("build_and_lower_s"), "%.1f"),
                     _s(m.get("first_call_s"), "%.1f"), _s(r["peak_rss_mb"], "%.0f"),
                     _s(m.get("peak_rss_mb"), "%.0f")])
    widths = [max(len(str(x)) for x in [h] + [row[i] for row in rows])
              for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(wd) for h, wd in zip(header, widths)))
    for row in rows:
        lines.append("  ".join(str(c).ljust(wd) for c, wd in zip(row, widths)))
    errors = [(k, r["error"]) for k, r in results.items() if "error" in r]
    for k, e in errors:
        lines.append("error in %s: %s" % (k, e))
    lines.append("")
    lines += acceptance(results, args)
    return "\n".join(lines)


def acceptance(results, args):
    """Issue 16's acceptance ratios, from this run's medians."""
    out = ["Issue 16 ratios (this run):"]

    def med(side, group, mesh, executor, dispatch="auto"):
        key = (side, group, mesh, executor, "einsum" if side == "mtf" else dispatch)
        if side == "floor":
            key = ("floor", group, mesh, "-", "-")
        r = results.get(key)
        return None if r is None or "error" in r else r

    mesh4 = "b0:2;b1:2"
    dispatch = args.dispatch[0]
    for group in args.groups:
        nm = med("namedmesh", group, mesh4, "placement", dispatch)
        mtf = med("mtf", group, mesh4, "mtf")
        if nm and mtf:
            target = 0.6 if group >= 4096 else 0.8
            out.append("  %s placement, group %d: namedmesh / mtf = %.2f (target <= %.1f)"
                       % (mesh4, group, nm["median_s"] / mtf["median_s"], target))
    for mesh in args.meshes:
        for executor in args.executors:
            per_group = []
            for group in args.groups:
                nm = med("namedmesh", group, mesh, executor, dispatch)
                fl = med("floor", group, mesh, "-")
                if nm and fl:
                    per_group.append((group, nm["median_s"] / fl["median_s"], nm["median_s"]))
            if per_group:
                steps = [s for _, _, s in per_group]
                out.append("  %s %s: step / FFN floor = %s (target <= 1.3); max/min step over "
                           "groups = %.2f (target <= 1.15)"
                           % (mesh or "1", executor, ", ".join("%d: %.2f" % (g, r)
                                                               for g, r, _ in per_group),
                              max(steps) / min(steps)))
    for executor in args.executors:
        for group in args.groups:
            one = med("namedmesh", group, "", executor, dispatch)
            four = med("namedmesh", group, mesh4, executor, dispatch)
            if one and four:
                out.append("  %s, group %d: 4 processors / 1 processor = %.2f (target <= 1.0)"
                           % (executor, group, four["median_s"] / one["median_s"]))
    for mesh in args.meshes:
        for executor in args.executors:
            for group in args.groups:
                nm = med("namedmesh", group, mesh, executor, dispatch)
                mtf = med("mtf", group, mesh, "mtf")
                if nm and mtf:
                    out.append(
                        "  %s %s, group %d: first call %.1f s (variables %.1f + trace %.1f + "
                        "first step %.1f) vs mtf build+lower %.1f s (%.2f; trace alone %.2f) "
                        "and mtf's first call %.1f s (%.2f)"
                        % (mesh or "1", executor, group, nm["first_call_s"], nm["build_s"],
                           nm["trace_s"], nm["first_step_s"], mtf["build_and_lower_s"],
                           nm["first_call_s"] / mtf["build_and_lower_s"],
                           nm["trace_s"] / mtf["build_and_lower_s"], mtf["first_call_s"],
                           nm["first_call_s"] / mtf["first_call_s"]))
    if args.scaling_mesh and "strategy" in args.executors:
        group = scaling_group(args)
        four = med("namedmesh", group, mesh4, "strategy", dispatch)
        eight = med("namedmesh", group, args.scaling_mesh, "strategy", dispatch)
        if four and eight:
            out.append("  strategy, group %d: first call on %s / on %s = %.1f s / %.1f s = %.2f "
                       "(target <= 1.5); trace %.2f s / %.2f s"
                       % (group, args.scaling_mesh, mesh4, eight["first_call_s"],
                          four["first_call_s"], eight["first_call_s"] / four["first_call_s"],
                          eight["trace_s"], four["trace_s"]))
    big = max(args.groups)
    for mesh in args.meshes:
        mtf = med("mtf", big, mesh, "mtf")
        for executor in args.executors:
            nm = med("namedmesh", big, mesh, executor, dispatch)
            if nm and mtf:
                out.append("  %s %s, group %d: peak RSS %.0f MB vs mtf %.0f MB (%.2f)"
                           % (mesh or "1", executor, big, nm["peak_rss_mb"], mtf["peak_rss_mb"],
                              nm["peak_rss_mb"] / mtf["peak_rss_mb"]))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--meshes", nargs="+", default=["", "b0:2;b1:2"],
                        help='mesh shapes ("" = one processor)')
    parser.add_argument("--executors", nargs="+", default=["placement", "strategy"],
                        choices=["placement", "strategy"])
    parser.add_argument("--dispatch", nargs="+", default=["auto"],
                        choices=["auto", "index", "einsum"],
                        help="namedmesh dispatchers to run (auto = index on CPU)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the whole grid this many times; report medians over rounds")
    parser.add_argument("--tiny", action="store_true", help="a tiny workload (smoke run)")
    parser.add_argument("--no-mtf", action="store_true", help="skip mtf even if present")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per configuration")
    parser.add_argument("--scaling-mesh", default="b0:2;b1:4",
                        help="a larger mesh on which the strategy executor's first call is "
                             "compared with b0:2;b1:2's ('' to skip)")
    parser.add_argument("--json", help="also write every result to this file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats must be at least 1")
    runs, mtf_python = configurations(args)
    rounds = []
    for r in range(args.rounds):
        results = {}
        for i, (key, python, script, argv_) in enumerate(runs):
            sys.stderr.write("[round %d/%d, %d/%d] %s\n" % (r + 1, args.rounds, i + 1, len(runs),
                                                           " ".join(map(str, key))))
            results[key] = run_one(python, script, argv_, args.timeout)
        rounds.append(results)
    results = combine_rounds(rounds)
    text = report(results, args, mtf_python)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([dict(key=list(k), **v) for k, v in results.items()], f, indent=1)
    return 0 if not any("error" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
