"""The command line: every subcommand refuses bad arguments and bad files with exit status 2 and
one line naming the offender (never a traceback; ``--debug`` shows one), ``--help`` shows the
right program name, and no third-party warning reaches a normal run's output.

Most cases run ``main()`` in-process (fast); a few run the real command in a subprocess,
where TensorFlow's native start-up logs would show.
"""
import os
import subprocess
import sys

import pytest

from namedmesh.cli import main as cli_main
from namedmesh.cli.main import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
GIN = os.path.join(DATA, "gin", "namedmesh_moe2d.gin")
GIN_V1 = os.path.join(DATA, "gin", "t5_moe1d_base.gin")
HPARAMS = os.path.join(DATA, "hparams", "t2t_moe2d_big.json")
CKPT = os.path.join(DATA, "ckpt", "v1_model.ckpt")
SHAPE2 = "outer_batch:1;batch:2;length:4;d_model:8"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_files")
    (d / "ub.gin").write_text('MoE2D.expert_x = 4\nMoE2D.hidden_size = [32,\n')
    (d / "latin1.gin").write_bytes(b"MoE2D.expert_x = 4\n# caf\xe9\n")
    (d / "tr.json").write_text('{"moe_num_experts": 4,')
    (d / "latin1.json").write_bytes(b'{"moe_num_experts": 4, "x": "\xe9"}')
    (d / "list.json").write_text("[1, 2]")
    (d / "afile").write_text("a regular file\n")
    with open(CKPT + ".index", "rb") as f:
        index = f.read()
    (d / "cut.ckpt.index").write_bytes(index[: len(index) // 2])
    (d / "empty.ckpt.index").write_bytes(b"")
    (d / "moe1d.gin").write_text("MoE1D.num_experts = 4\n")
    return d


# (args; "{d}" is the files directory; the words the one line must contain)
CASES = [
    ([], ["namedmesh: error:", "explain"]),
    (["bogus"], ["namedmesh: error:", "'bogus'"]),
    (["--bogus-flag", "glossary"], ["--bogus-flag"]),
    # explain
    (["explain"], ["namedmesh explain: error:", "--input-shape", "--mesh"]),
    (["explain", "--mesh", "b0:2"], ["namedmesh explain: error:", "--input-shape"]),
    (["explain", "--mesh", "b0:2", "--input-shape", "x"], ["namedmesh explain:", "'x'"]),
    (["explain", "--mesh", "b0:2;b1", "--input-shape", SHAPE2], ["'b0:2;b1'", "'b1'"]),
    (["explain", "--mesh", "b0:2", "--layout", "batch", "--input-shape", SHAPE2],
     ["'batch'"]),
    (["explain", "--mesh", "b0:3", "--layout", "batch:b0", "--input-shape", SHAPE2],
     ["mesh_dim_size=3"]),
    (["explain", "--mesh", "b0:2", "--input-shape", "d_model:8"], ["[d_model:8]"]),
    (["explain", "--mesh", "b0:2", "--input-shape", "a b:2;d_model:8"], ["'a b:2;d_model:8'"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "-p", "expert_x"],
     ["-p", "'expert_x'"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "-p", "expert_x=0"],
     ["expert_x", "0"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "-p", "expert_z=4"],
     ["'expert_z'"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "-p", "capacity_factor_train=nan"],
     ["capacity_factor_train", "'nan'"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "-p", "loss_coef=-1"],
     ["loss_coef", "-1"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "--hparams", "/nonexistent.json"],
     ["'/nonexistent.json'"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "--hparams", "{d}/tr.json"],
     ["{d}/tr.json", "not JSON"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "--hparams", "{d}/latin1.json"],
     ["{d}/latin1.json"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "--hparams", "{d}"], ["{d}"]),
    (["explain", "--mesh", "b0:2", "--input-shape", SHAPE2, "--format", "yaml"],
     ["namedmesh explain: error:", "'yaml'"]),
    (["explain", "--layer", "MoE3D", "--mesh", "b0:2", "--input-shape", SHAPE2], ["'MoE3D'"]),
    # port
    (["port"], ["namedmesh port: error:", "give a config"]),
    (["port", "/nonexistent.gin"], ["'/nonexistent.gin'", "not found"]),
    (["port", "{d}/ub.gin"], ["{d}/ub.gin:2", "'['", "never closed"]),
    (["port", "{d}/latin1.gin"], ["{d}/latin1.gin", "not UTF-8", "line 2"]),
    (["port", "{d}/tr.json"], ["{d}/tr.json", "not valid JSON"]),
    (["port", "{d}/latin1.json"], ["{d}/latin1.json", "not UTF-8"]),
    (["port", "{d}/list.json"], ["{d}/list.json", "list"]),
    (["port", "{d}"], ["'{d}'", ".gin"]),
    (["port", "x.txt"], ["'x.txt'"]),
    (["port", GIN, "--checkpoint", "/nonexistent/ck"], ["'/nonexistent/ck'"]),
    (["port", GIN, "--checkpoint", "{d}/cut.ckpt"], ["{d}/cut.ckpt", "truncated or corrupt"]),
    (["port", GIN, "--checkpoint", "{d}/empty.ckpt"], ["{d}/empty.ckpt"]),
    (["port", GIN, "--checkpoint", "{d}"], ["{d}"]),
    (["port", GIN, "--mesh", "b0:2;b1"], ["--mesh", "'b1'"]),
    (["port", GIN, "--layout", "batch"], ["--layout", "'batch'"]),
    (["port", GIN, "--input-shape", "x"], ["'x'"]),
    (["port", GIN, "--check", "--input-shape", "outer_batch:2;batch:4;length:8;d_model:0"],
     ["'d_model'", "0"]),
    (["port", GIN, "--gin_param", "MoE2D.expert_x = ["], ["--gin_param[1]", "'['"]),
    (["port", GIN, "--gin_param", "MoE2D.expert_x = -1"], ["--gin_param[1]", "-1"]),
    (["port", GIN, "--gin_param", "MoE2D.expert_z = 1"], ["'expert_z'"]),
    (["port", GIN, "--tpu-topology", "v9-0"], ["--tpu-topology", "'v9-0'"]),
    (["port", GIN, "--tpu-topology", "4x"], ["'4x'"]),
    (["port", GIN, "--logical-cores-per-chip", "x"], ["namedmesh port: error:", "'x'"]),
    (["port", GIN, "--format", "yaml"], ["namedmesh port: error:", "'yaml'"]),
    (["port", GIN, "--hparams", "a=1"], ["--hparams", "JSON"]),
    (["port", HPARAMS, "--hparams", "a"], ["--hparams", "'a'"]),
    (["port", HPARAMS, "--hparams", "moe_num_experts=["], ["--hparams", "never closed"]),
    (["port", HPARAMS, "--hparams", "moe_num_experts=4]"], ["--hparams", "closing bracket"]),
    (["port", HPARAMS, "--t2t-model", "foo"], ["'foo'"]),
    (["port", HPARAMS, "--gin_param", "a=1"], ["--gin_param", "gin configs"]),
    (["port", GIN, HPARAMS], ["gin files", "one JSON"]),
    # glossary
    (["glossary", "extra"], ["namedmesh glossary: error:", "extra"]),
    # demo
    (["demo", "--steps", "0"], ["namedmesh demo: error:", "--steps", "0"]),
    (["demo", "--steps", "x"], ["namedmesh demo: error:", "'x'"]),
    (["demo", "--seed", "1.5"], ["'1.5'"]),
    (["demo", "--config", "/nonexistent/legacy.gin"], ["'/nonexistent/legacy.gin'"]),
    (["demo", "--config", "{d}/ub.gin"], ["{d}/ub.gin:2", "'['"]),
    (["demo", "--config", "{d}/moe1d.gin"], ["defaults.gin", "tpu_mesh_shape", "--mesh"]),
    (["demo", "--config", "{d}/moe1d.gin", "--mesh", "batch:2,model:4"],
     ["{d}/moe1d.gin", "Unitransformer", "Bitransformer"]),
    (["demo", "--mesh", "b0:3"], ["'b0:3'", "3 processors"]),
    (["demo", "--mesh", "b0:2;b1"], ["'b0:2;b1'"]),
    (["demo", "--layout", "batch"], ["'batch'"]),
    (["demo", "--executor", "gpu"], ["'gpu'"]),
    (["demo", "--out", "{d}/afile", "--steps", "1"], ["--out", "{d}/afile", "not a directory"]),
    (["demo", "--out", "{d}/afile/sub", "--steps", "1"], ["--out", "{d}/afile/sub"]),
    # check
    (["check"], ["namedmesh check: error:", "--mesh"]),
    (["check", "--mesh", "b0:2;b1"], ["'b0:2;b1'"]),
    (["check", "--mesh", "b0:2", "--strategy", "foo"], ["'foo'"]),
    (["check", "--mesh", "b0:2", "--devices", "/cpu:0,/cpu:99"], ["/cpu:99", "does not exist"]),
    (["check", "--mesh", "b0:2", "--devices", "/gpu:0,/gpu:1"], ["GPU:0"]),
    (["check", "--mesh", "b0:2", "--devices", "foo,bar"], ["'foo'"]),
    (["check", "--mesh", "b0:2", "--devices", "/cpu:0"], ["2 processors", "1 devices"]),
    (["check", "--mesh", "b0:2", "--logical-to-physical", "x"], ["--logical-to-physical", "'x'"]),
    (["check", "--mesh", "b0:2", "--logical-to-physical", "0,0"], ["[0, 0]"]),
    (["check", "--mesh", "b0:2", "--timeout", "-1"], ["collective_timeout", "-1"]),
    (["check", "--mesh", "b0:2", "--timeout", "nan"], ["collective_timeout", "nan"]),
    (["check", "--mesh", "b0:2", "--timeout", "x"], ["namedmesh check: error:", "'x'"]),
    (["check", "--mesh", "b0:64", "--strategy", "placement"], ["/cpu:63", "does not exist"]),
]


@pytest.mark.parametrize("args,words", CASES, ids=[" ".join(c[0]) or "<nothing>"
                                                    for c in CASES])
def test_bad_arguments_and_files_exit_2_with_one_line(files, capsys, args, words):
    args = [a.replace("{d}", str(files)) for a in args]
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("namedmesh"), err
    for w in words:
        w = w.replace("{d}", str(files))
        assert w in lines[0], "%r not in %r" % (w, lines[0])
    assert out == "", out   # nothing half-done on stdout


def test_the_cli_table_covers_every_subcommand():
    commands = {c[0][0] for c in CASES if c[0] and not c[0][0].startswith("-")}
    assert {"explain", "port", "glossary", "demo", "check"} <= commands
    assert len(CASES) >= 70


def test_demo_out_is_checked_before_any_training(files, capsys):
    """A bad --out fails at once: nothing of the demo ran (no port, no training lines)."""
    assert main(["demo", "--out", os.path.join(str(files), "afile", "x")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "--out" in err


def test_an_unexpected_failure_is_one_line_with_status_1(capsys, monkeypatch):
    """Not bad input but a bug: still one line (and the hint to rerun with --debug)."""
    def broken(args):
        raise RuntimeError("something inside broke")
    monkeypatch.setattr(cli_main, "_cmd_glossary", broken)
    assert main(["glossary"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: something inside broke" in err[0]
    assert "--debug" in err[0]
    with pytest.raises(RuntimeError):   # --debug: the traceback, before or after the command
        main(["glossary", "--debug"])
    with pytest.raises(RuntimeError):
        main(["--debug", "glossary"])


def test_debug_shows_the_error_itself(capsys):
    with pytest.raises(ValueError, match="'b1'"):
        main(["--debug", "explain", "--mesh", "b0:2;b1", "--input-shape", SHAPE2])


def _run(*args, console=False):
    """The command in a new process: ``python -m namedmesh`` or the console script."""
    command = ([os.path.join(os.path.dirname(sys.executable), "namedmesh")] if console
               else [sys.executable, "-m", "namedmesh"])
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)   # as a user runs it: TensorFlow's logs are on
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env)


def test_help_shows_the_program_name(capsys):
    out = _run("--help")   # python -m namedmesh: the program is still "namedmesh"
    assert out.returncode == 0 and out.stdout.startswith("usage: namedmesh ")
    assert "explain" in out.stdout and "--debug" in out.stdout and out.stderr == ""
    for command in ("explain", "port", "glossary", "demo", "check"):
        with pytest.raises(SystemExit) as stop:
            main([command, "--help"])
        assert stop.value.code == 0
        assert capsys.readouterr().out.startswith("usage: namedmesh %s " % command)


def test_a_real_process_gives_one_line_and_status_2():
    out = _run("port", GIN, "--mesh", "b0:2;b1", console=True)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr
    assert out.stderr.startswith("namedmesh port: error:") and "'b1'" in out.stderr


def test_a_real_process_with_debug_shows_the_traceback():
    out = _run("--debug", "port", GIN, "--mesh", "b0:2;b1")
    assert out.returncode != 0 and "Traceback (most recent call last)" in out.stderr
    assert "MeshError" in out.stderr or "ConfigError" in out.stderr


def test_no_third_party_warning_reaches_a_normal_run():
    """A run that builds and runs MoE layers on TensorFlow writes nothing to stderr:
    TensorFlow's native logs and Python warnings of other libraries stay out."""
    out = _run("port", GIN_V1, "--check")
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr
    assert "routed" in out.stdout or "check" in out.stdout
