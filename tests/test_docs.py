"""Every code example of README.md and docs/*.md runs.

Python blocks run in order (the blocks of one file share a namespace); shell
blocks' ``namedmesh`` commands run through ``python -m namedmesh`` and must
exit 0.  ``make`` commands are what CI itself runs (``make test``) and what the
demo test covers (``make demo``).
"""
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.S | re.M)


def python_blocks(path):
    return PYTHON_BLOCK.findall(path.read_text())


def namedmesh_commands(path):
    """The namedmesh commands of a file's shell blocks (continuation lines joined)."""
    out = []
    for block in SHELL_BLOCK.findall(path.read_text()):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("#")[0].strip()
            words = shlex.split(command) if command else []
            if words and words[0].endswith("namedmesh"):
                out.append(words[1:])
    return out


@pytest.mark.parametrize("path", [f for f in FILES if f.exists()], ids=lambda p: p.name)
def test_python_blocks_run(path, monkeypatch):
    monkeypatch.chdir(ROOT)  # examples use paths relative to the repository
    namespace = {"__name__": "__doc_example__"}
    for i, block in enumerate(python_blocks(path)):
        code = compile(block, "%s[block %d]" % (path.name, i), "exec")
        exec(code, namespace)


@pytest.mark.parametrize("path", [f for f in FILES if namedmesh_commands(f)], ids=lambda p: p.name)
def test_shell_examples_run(path):
    for args in namedmesh_commands(path):
        out = subprocess.run([sys.executable, "-m", "namedmesh"] + args, capture_output=True,
                             text=True, timeout=600, cwd=ROOT)
        assert out.returncode == 0, (args, out.stderr)


def test_docs_have_examples():
    for name in ("named_dims.md", "concepts.md", "moe.md", "index.md"):
        assert python_blocks(ROOT / "docs" / name), name
