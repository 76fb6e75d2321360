"""The benchmark harness runs end to end on a tiny workload (make bench runs the real one)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_harness_runs_a_tiny_configuration(tmp_path):
    out = tmp_path / "results.json"
    env = dict(os.environ, NAMEDMESH_MTF_ORACLE=str(tmp_path / "no-oracle"))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--tiny", "--repeats",
         "2", "--rounds", "2", "--groups", "16", "--meshes", "b0:2;b1:2", "--executors",
         "placement", "--json", str(out)], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no oracle" in proc.stdout
    results = {tuple(r["key"][:1]): r for r in json.loads(out.read_text())}
    step, floor = results[("namedmesh",)], results[("floor",)]
    assert step["dispatch"] == "index" and step["processors"] == 4
    assert len(step["steps_s"]) == 4 and step["median_s"] > 0 and step["peak_rss_mb"] > 100
    assert len(step["rounds_median_s"]) == 2     # two rounds of the grid, then their median
    assert min(step["rounds_median_s"]) <= step["median_s"] <= max(step["rounds_median_s"])
    assert floor["slots"] == step["slots"] > 0
    assert "b0:2;b1:2  placement  index" in proc.stdout
    assert "step / FFN floor" in proc.stdout
    assert "median over 2 rounds" in proc.stdout


def test_strategy_profile_attributes_every_phase_forward_and_backward(tmp_path):
    """profile_step.py --executor strategy on a tiny workload: TensorFlow's profiler sees the
    replicas' ops, and the collectives' backward ops land in their phase (they are named
    gradient_tape/<forward scope>/, as TensorFlow names its own gradients)."""
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "profile_step.py"), "--tiny",
         "--repeats", "1", "--group-size", "16", "--mesh", "b0:2;b1:2", "--executor",
         "strategy", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(tf.distribute executor)" in proc.stdout
    profile = json.loads(out.read_text())
    assert profile["executor"] == "strategy" and profile["ops"] > 100
    seconds = profile["seconds"]
    for phase in ("router", "dispatch", "combine", "all-to-alls", "expert FFN",
                  "variables onto the mesh"):
        for direction in ("forward", "backward"):
            assert seconds.get("%s/%s" % (phase, direction), 0.0) > 0, (phase, direction)
