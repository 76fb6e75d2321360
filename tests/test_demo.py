"""The demo: its pieces in-process, and the command end to end with a few steps."""
import os
import subprocess
import sys

import numpy as np
import pytest

import namedmesh as nm
from namedmesh.demo.corpus import Corpus
from namedmesh.demo.model import CharMoELM
from namedmesh.demo.report import expert_load_table, mesh_matches_single_device, write_png
from namedmesh.demo.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_corpus_is_generated_and_deterministic():
    a, b = Corpus(num_sentences=50, seed=1), Corpus(num_sentences=50, seed=1)
    assert a.text == b.text and a.vocab_size < 40
    windows, targets = a.batch(np.random.RandomState(0), (2, 3), context=4)
    assert windows.shape == (2, 3, 4) and targets.shape == (2, 3)
    # the window ends with the character before the target
    flat = a.text
    w, t = windows.reshape(-1, 4)[0], targets.reshape(-1)[0]
    assert a.decode(list(w) + [t]) in flat


def test_training_pieces_on_a_small_mesh(tmp_path):
    mesh = nm.Mesh("b0:2;b1:2", "outer_batch:b0;batch:b1;expert_x:b1;expert_y:b0")
    layers = [nm.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=16, group_size=16,
                           second_policy_train="random", min_expert_capacity=2)]
    corpus = Corpus(num_sentences=300)
    model = CharMoELM(corpus.vocab_size, 16, context=3, moe_layers=layers)
    positions = "outer_batch:2;batch:4;length:8"
    history = train(model, mesh, corpus, positions, steps=25, learning_rate=1e-2,
                    progress=False)
    assert np.mean(history.loss[-5:]) < np.mean(history.loss[:5]) - 0.3
    assert len(history.demand) == 25 and history.demand[0].shape == (4,)
    table = expert_load_table(history, 2, 2)
    assert "x=1, y=1" in table and "demand" in table
    png = write_png(history, str(tmp_path / "demo.png"), 2, 2)
    assert os.path.getsize(png) > 10_000
    diff, ok = mesh_matches_single_device(model, mesh, corpus, positions)
    assert ok and diff < 1e-4


def _demo(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "namedmesh", "demo", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_demo_command_end_to_end(tmp_path):
    out = _demo("--steps", "8", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("== 1. the legacy config, ported", "nm.moe.MoE2D", "all-to-all to expert_y",
                     "== 2. training", "step    8/8", "loss fell from", "== 3. expert load",
                     "== 4.", "OK, they agree"):
        assert expected in text, expected
    png = tmp_path / "demo.png"
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(str(png))
    height, width = image.shape[:2]
    left, right = image[:, : width // 2], image[:, width // 2:]
    assert left.std() > 0.05 and right.std() > 0.05  # both panels have content


@pytest.mark.parametrize("args,words", [
    (["--mesh", "b0:3"], ["'b0:3'", "3 processors", "8 logical CPU devices"]),
    (["--config", "/nonexistent/legacy.gin"], ["cannot read config", "/nonexistent/legacy.gin"]),
    (["--steps", "0"], ["--steps"]),
    (["--executor", "gpu"], ["gpu"]),
])
def test_bad_options_are_one_line_exit_2(args, words):
    out = _demo(*args, timeout=300)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for w in words:
        assert w in lines[0]


def test_unparsable_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("MoE2D.expert_x = = 4\n")
    out = _demo("--config", str(bad), timeout=300)
    assert out.returncode == 2 and "bad.gin:1" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
