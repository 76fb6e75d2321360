"""``namedmesh run`` and ``namedmesh port --checkpoint --check`` on mtf's whole-model checkpoints:
from the real gin files and the checkpoint to mtf's numbers and tokens; bad input is one line."""
import json
import os

import numpy as np
import pytest

from namedmesh.cli.main import main
from transformer_cases import ATOL, DATA, load

GIN = os.path.join(DATA, "gin")
LM_GIN = [os.path.join(GIN, "mtf", "defaults.gin"), os.path.join(GIN, "mtf", "lm_moe.gin"),
          os.path.join(GIN, "cases", "ckpt_lm_moe.gin")]
BI_GIN = [os.path.join(GIN, "mtf", "defaults.gin"), os.path.join(GIN, "mtf", "bi_moe.gin"),
          os.path.join(GIN, "cases", "ckpt_bi_moe.gin")]


def _ckpt(name):
    return os.path.join(DATA, load(name)[0]["checkpoint"]["prefix"])


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_evaluates_a_batch_file_to_mtf_loss(capsys, tmp_path):
    _, arrays = load("ckpt_lm_moe")
    batch = tmp_path / "batch.npz"
    np.savez(batch, **{k: arrays[k] for k in ("targets", "inputs", "sequence_id")})
    code, out, err = _run(capsys, "run", *LM_GIN, "--checkpoint", _ckpt("ckpt_lm_moe"),
                          "--eval", str(batch), "--format", "json",
                          "--output", str(tmp_path / "logits.npz"))
    assert code == 0, err
    report = json.loads(out)
    assert report["variables"] == 37
    np.testing.assert_allclose(report["eval"]["loss"], arrays["eval/loss"], atol=ATOL)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npz")["logits"],
                               arrays["eval/logits"], atol=ATOL, rtol=0)


def test_run_decodes_prompts_to_mtf_tokens(capsys, tmp_path):
    _, arrays = load("ckpt_bi_moe")
    prompts = tmp_path / "inputs.json"
    prompts.write_text(json.dumps({"inputs": arrays["decode/prompts"].tolist()}))
    code, out, err = _run(capsys, "run", *BI_GIN, "--checkpoint",
                          os.path.dirname(_ckpt("ckpt_bi_moe")), "--decode", str(prompts),
                          "--format", "json")
    assert code == 0, err
    np.testing.assert_array_equal(json.loads(out)["tokens"], arrays["decode/tokens"])


def test_run_without_a_batch_evaluates_random_ids_on_the_config_mesh(capsys):
    code, out, err = _run(capsys, "run", *LM_GIN, "--checkpoint", _ckpt("ckpt_lm_moe"),
                          "--mesh", "batch:2;model:2")
    assert code == 0, err
    assert "loaded 37 variables by name; mesh 'batch:2;model:2'" in out
    assert "evaluated random ids {'targets': [4, 16]}" in out
    assert "transformer/block_001/layer_001/MoE1D" in out


def test_port_check_loads_the_whole_checkpoint_and_runs_a_batch(capsys):
    code, out, err = _run(capsys, "port", *BI_GIN, "--checkpoint", _ckpt("ckpt_bi_moe"),
                          "--check")
    assert code == 0, err
    assert "## check: the whole model from the checkpoint" in out
    assert "Bitransformer: encoder 4 layers, decoder 6 layers): loaded all 48 variables" in out
    assert "MoE aux losses" in out
    code, out, err = _run(capsys, "port", *BI_GIN, "--checkpoint", _ckpt("ckpt_bi_moe"),
                          "--check", "--format", "json")
    assert code == 0, err
    whole = json.loads(out)["check_model"]
    assert whole["variables"] == 48 and whole["batch"] == {"inputs": [4, 16],
                                                          "targets": [4, 16]}
    assert sorted(whole["eval"]["moe_losses"]) == ["decoder/block_000/layer_002/MoE1D",
                                                   "encoder/block_000/layer_001/MoE1D"]


@pytest.mark.parametrize("argv,words", [
    (["run", LM_GIN[1], "--checkpoint", "x"], ["not a whole", "max_length"]),
    (["run"] + BI_GIN + ["--checkpoint", "CKPT_LM"], ["has no shared/embedding",
                                                      "not a checkpoint of this config"]),
    (["run"] + BI_GIN + ["--checkpoint", "CKPT_LM", "--vocab-size", "128"],
     ["does not match", "missing shared/embedding [128, 8]", "does not have: transformer/"]),
    (["run"] + LM_GIN + ["--checkpoint", "CKPT_LM", "--eval", "BAD_BATCH"],
     ["unknown feature", "labels"]),
    (["run"] + LM_GIN + ["--checkpoint", "CKPT_LM", "--decode", "/nonexistent.json"],
     ["cannot read batch file", "/nonexistent.json"]),
    (["run"] + LM_GIN + ["--checkpoint", "CKPT_LM", "--eval", "a.npz", "--decode", "b.npz"],
     ["--eval or --decode"]),
])
def test_bad_input_is_one_line(argv, words, capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"labels": [[1, 2]]}))
    argv = [{"CKPT_LM": _ckpt("ckpt_lm_moe"), "BAD_BATCH": str(bad)}.get(a, a) for a in argv]
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
