"""The demo: mtf's lm_moe.gin language model ported, trained, checked; its pieces in-process on a
smaller config of the same files, and the command end to end with a few steps."""
import os
import subprocess
import sys

import numpy as np
import pytest

import namedmesh as nm
from namedmesh.cli.demo import DEFAULT_CONFIG, DEFAULTS
from namedmesh.cli.main import main
from namedmesh.demo.corpus import Corpus
from namedmesh.demo.report import (continue_prompts, expert_load_table,
                                   mesh_matches_single_device, write_png)
from namedmesh.demo.train import FIRST_ID, char_rows, train
from helpers import strategy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALLER = ["num_layers = 1", "d_model = 16", "d_ff = 32", "num_heads = 2", "d_kv = 8",
           "MoE1D.num_experts = 4", "MoE1D.hidden_size = 16", "MoE1D.group_size = 32"]


def test_corpus_is_generated_and_deterministic():
    a, b = Corpus(num_sentences=50, seed=1), Corpus(num_sentences=50, seed=1)
    assert a.text == b.text and a.vocab_size < 40
    rows = char_rows(a, np.random.RandomState(0), [2, 3], 8)
    assert rows.shape == (2, 3, 8) and rows.min() >= FIRST_ID
    assert a.decode(list(rows[1, 2] - FIRST_ID)) in a.text


def test_the_packaged_config_is_lm_moe_gin_scaled_down():
    """mtf's files are unchanged copies; the stack is lm_moe.gin's, the sizes demo_small.gin's."""
    for name in ("defaults.gin", "lm_moe.gin"):
        with open(os.path.join(ROOT, "namedmesh", "demo", "data", name), "rb") as f, \
                open(os.path.join(ROOT, "tests", "data", "models", "gin", "mtf", name), "rb") as g:
            assert f.read() == g.read(), name
    ported = nm.porting.read_gin([DEFAULTS] + DEFAULT_CONFIG)
    stack = ported.model.decoder.layer_stack
    assert [l.kind for l in stack.layers] == ["SelfAttention", "MoE1D", "SelfAttention",
                                              "DenseReluDense"] * 2
    assert ported.mesh_shape == "batch:2;model:4" and "experts:batch" in ported.layout
    assert stack.layers[1].config.second_policy_train == "random"   # MoE1D's, as lm_moe runs it


def _small(mesh_shape):
    ported = nm.porting.read_gin([DEFAULTS] + DEFAULT_CONFIG, SMALLER, mesh=mesh_shape)
    return ported, ported.build_model(vocab_size=Corpus(num_sentences=300).vocab_size + 2)


def test_training_pieces_on_a_small_mesh(tmp_path):
    ported, model = _small("batch:2;model:2")
    mesh = ported.build_mesh()
    corpus = Corpus(num_sentences=300)
    history = train(model, mesh, corpus, [8], 16, steps=30, learning_rate=1e-2, progress=False)
    assert np.mean(history.loss[-5:]) < np.mean(history.loss[:5]) - 0.5
    assert len(history.demand) == 30 and history.demand[0].shape == (4,)
    assert history.moe_scope == "transformer/block_000/layer_001/MoE1D"
    table = expert_load_table(history)
    assert "expert 3" in table and "demand" in table
    png = write_png(history, str(tmp_path / "demo.png"))
    assert os.path.getsize(png) > 10_000
    diff, ok = mesh_matches_single_device(model, mesh, corpus, [8], 16)
    assert ok and diff < 1e-4
    texts = continue_prompts(model, corpus, ["the cat "], 16)
    assert len(texts[0]) == 16 and texts[0].startswith("the cat ")


def test_strategy_executor_trains_like_placement():
    """The same steps (data, seeds, random second-place policy) on MirroredStrategy and on
    the placement executor give the same losses."""
    corpus = Corpus(num_sentences=300)
    losses = []
    for executor in ("placement", "strategy"):
        ported, model = _small("batch:2;model:2")
        mesh = ported.build_mesh(strategy=strategy(4)) if executor == "strategy" \
            else ported.build_mesh()
        losses.append(train(model, mesh, corpus, [8], 16, steps=3, progress=False).loss)
    np.testing.assert_allclose(losses[1], losses[0], atol=1e-4)


def test_demo_command_end_to_end(tmp_path):
    out = subprocess.run([sys.executable, "-m", "namedmesh", "demo", "--steps", "8", "--out",
                          str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for expected in ("== 1. the legacy config, ported", "lm_moe.gin", "8 layers in 2 blocks",
                     "block_001/layer_001          MoE1D", "all-to-all",
                     "== 2. training", "step    8/8", "loss fell from", "== 3. expert load",
                     "expert 7", "== 4.", "OK, they agree", "== 5.", "'the cat '",
                     "model.ckpt-8 (37 variables"):
        assert expected in text, expected
    png = tmp_path / "demo.png"
    image = __import__("matplotlib.image", fromlist=["imread"]).imread(str(png))
    height, width = image.shape[:2]
    left, right = image[:, : width // 2], image[:, width // 2:]
    assert left.std() > 0.05 and right.std() > 0.05  # both panels have content
    # the checkpoint it wrote is read back by name
    ported = nm.porting.read_gin([DEFAULTS] + DEFAULT_CONFIG)
    model = ported.build_model(vocab_size=27)
    model.load_checkpoint(str(tmp_path))
    assert len(model.variables()) == 37


@pytest.mark.parametrize("args,words", [
    (["--mesh", "batch:3"], ["'batch:3'", "3 processors", "8 logical CPU devices"]),
    (["--config", "/nonexistent/legacy.gin"], ["cannot read config", "/nonexistent/legacy.gin"]),
    (["--steps", "0"], ["--steps"]),
    (["--executor", "gpu"], ["gpu"]),
    (["--config", DEFAULT_CONFIG[1]], ["trains a language model", "describes Bitransformer"]),
])
def test_bad_options_are_one_line_exit_2(args, words, capsys):
    code = main(["demo"] + args)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0]


def test_unparsable_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.gin"
    bad.write_text("MoE1D.num_experts = = 4\n")
    code = main(["demo", "--config", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "bad.gin:1" in err
    assert len(err.strip().splitlines()) == 1
