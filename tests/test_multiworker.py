"""Real worker processes on loopback: MultiWorkerMirroredStrategy, compared with one process.

Each test starts ``tests/workers/launcher.py``, which forks N worker processes
(gRPC on 127.0.0.1, free ports) that each run a scenario of
``tests/workers/scenarios.py``; every wait is bounded and stragglers are killed.
The expected values come from the same namedmesh program on the single-process
placement executor.
"""
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import namedmesh as nm
from workers.scenarios import (LINE_LAYOUT, line_input, line_program, probe, probe_input,
                               probe_layout)

LAUNCHER = pathlib.Path(__file__).resolve().parent / "workers" / "launcher.py"


PORT_TAKEN = ("Address already in use", "Failed to add port", "Could not start gRPC server")


def launch(tmp_path, scenario, workers, cpus=1, timeout=60.0, mesh="", deadline=90.0):
    """Run a scenario in ``workers`` processes: (their result dicts, the launcher's summary).
    Starts once more if another process took one of the free ports in between."""
    try:
        return _launch(tmp_path / scenario, scenario, workers, cpus, timeout, mesh, deadline)
    except _PortTaken:
        return _launch(tmp_path / (scenario + "_again"), scenario, workers, cpus, timeout, mesh,
                       deadline)


class _PortTaken(Exception):
    pass


def _launch(out, scenario, workers, cpus, timeout, mesh, deadline):
    command = [sys.executable, str(LAUNCHER), "--workers", str(workers), "--cpus", str(cpus),
               "--scenario", scenario, "--out", str(out), "--timeout", str(timeout),
               "--deadline", str(deadline)] + (["--mesh", mesh] if mesh else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=deadline + 60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the launcher did not finish within %g s" % (deadline + 60))
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads(stdout.strip().splitlines()[-1])
    results = []
    for i, code in enumerate(summary["exit_codes"]):
        error = out / ("worker%d.error" % i)
        log = out / ("worker%d.log" % i)
        if code != 0 or error.exists():
            text = error.read_text() if error.exists() else ""
            if any(p in text for p in PORT_TAKEN):
                raise _PortTaken(text)
            pytest.fail("worker %d exited with %s:\n%s\n%s" % (
                i, code, error.read_text() if error.exists() else "",
                log.read_text()[-3000:] if log.exists() else ""))
        results.append(dict(np.load(out / ("worker%d.npz" % i))))
    return results, summary



def test_the_launcher_knows_every_scenario():
    """The launcher lists the scenario names without importing them (it forks before
    TensorFlow is imported): the list must be the scenarios module's."""
    from workers import launcher, scenarios
    assert sorted(launcher.SCENARIO_NAMES) == sorted(scenarios.SCENARIOS)

def _single_process_probe(mesh_shape):
    n = nm.convert_to_shape(mesh_shape).size  # one device: 12 processors > 8 logical CPUs
    mesh = nm.Mesh(mesh_shape, probe_layout(mesh_shape), devices=[""] * n)
    want = [v.numpy() for v in probe(mesh, tf.constant(probe_input(mesh_shape)))]
    line = nm.Mesh("x:%d" % n, LINE_LAYOUT, devices=[""] * n)
    want += [v.numpy() for v in line_program(line, tf.constant(line_input(n)))]
    return dict(zip(["moved", "sum_e", "max_e", "sum_f", "doubled", "line_sum", "line_moved"],
                    want))


def _assert_probe_bitwise(results, mesh_shape):
    want = _single_process_probe(mesh_shape)
    for i, got in enumerate(results):
        assert bool(got["check_ok"]), str(got["check"])  # check_collectives on every worker
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg="worker %d: %s" % (i, name))


def test_twelve_workers_rank_order(tmp_path):
    """12 workers, one CPU each, mesh a:3;b:4: TensorFlow ranks task:10 and task:11
    before task:2; every worker gets the single-process results bitwise.  The second
    mesh x:12 also moves a split across all 12 (an all-to-all too large for
    CollectiveAllToAllV2, done by one all-gather)."""
    results, _ = launch(tmp_path, "rank_probe", workers=12, mesh="a:3;b:4")
    _assert_probe_bitwise(results, "a:3;b:4")
    text = str(results[0]["processor_map"])
    assert "along a: [2, 6, 10] ranks [10, 2, 6]; [3, 7, 11] ranks [11, 3, 7]" in text
    assert "along b: [8, 9, 10, 11] ranks [10, 11, 8, 9]" in text
    for i, r in enumerate(results):  # processor i is worker i: numeric order
        assert [str(d) for d in r["local_devices"]] == [
            "/job:worker/replica:0/task:%d/device:CPU:0" % i]


def test_four_workers_two_meshes_built_in_different_orders(tmp_path):
    """4 workers: two meshes on one strategy, built in a different order on odd workers,
    which also trace one more program first."""
    results, _ = launch(tmp_path, "rank_probe", workers=4, mesh="a:2;b:2")
    _assert_probe_bitwise(results, "a:2;b:2")


def test_two_workers_two_devices_moe2d_forward_backward(tmp_path):
    """2 workers x 2 devices, MoE2D on b0:2;b1:2: output, loss and every gradient equal
    the single-process placement run to 1e-6."""
    from moe_cases import Case, run_case
    results, _ = launch(tmp_path, "moe2d", workers=2, cpus=2)
    y, loss, grads, _ = run_case(Case("v2_small"), executor="placement")
    for i, got in enumerate(results):
        np.testing.assert_allclose(got["y"], y, atol=1e-6, rtol=0, err_msg="worker %d" % i)
        assert abs(float(got["loss"]) - loss) <= 1e-6
        for name, g in grads.items():
            np.testing.assert_allclose(got["grad/" + name], g, atol=1e-6, rtol=0,
                                       err_msg="worker %d: grad %s" % (i, name))


def test_mismatched_program_fails_within_the_timeout(tmp_path):
    """Worker 0 sums over b, worker 1 moves a split along b: both fail after the 3 s
    timeout with an error naming the collective, the mesh dim and the group."""
    results, summary = launch(tmp_path, "mismatch", workers=2, timeout=3.0, deadline=60.0)
    assert summary["exit_codes"] == [0, 0]  # nobody hung: no worker was killed
    for i, (kind, group) in enumerate([("all_reduce", "[0, 1]"), ("all_to_all", "[0, 1]")]):
        got = results[i]
        assert str(got["kind"]) == "CollectiveError"
        message = str(got["error"])
        assert message.startswith("%s over mesh dim(s) b in group of processors %s" % (kind, group))
        assert "timed out after 3 s" in message and "\n" not in message
        assert 3.0 <= float(got["seconds"]) < 20.0
        assert "aborted after an earlier failure" in str(got["again"])


def test_two_workers_two_devices_keras_custom_loop(tmp_path):
    """namedmesh.keras layers in a custom loop (strategy.run, Keras's compute_loss and
    optimizer) under MultiWorkerMirroredStrategy, 2 workers x 2 devices, each replica on
    its own shard: per-step losses and trained weights equal one process, one device."""
    from namedmesh.keras.example import ToyTask, build_model
    from workers.scenarios import KERAS_STEPS
    results, _ = launch(tmp_path, "keras_loop", workers=2, cpus=2)
    task = ToyTask()
    model = build_model(task)
    model.optimizer.build(model.trainable_weights)

    @tf.function(autograph=False)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y, model(x, training=True), training=True)
        grads = tape.gradient(loss, model.trainable_weights)
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss

    losses = [float(train_step(x, y)) for x, y in task.dataset(KERAS_STEPS)]
    for i, got in enumerate(results):
        np.testing.assert_allclose(got["losses"], losses, rtol=1e-5, err_msg="worker %d" % i)
        for w in model.trainable_weights:
            np.testing.assert_allclose(got["weight/" + w.path], w.numpy(), atol=1e-6,
                                       err_msg="worker %d: %s" % (i, w.path))
