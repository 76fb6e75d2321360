"""Every python code block of README.md and docs/*.md runs (blocks of one file share a namespace)."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(path):
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize("path", [f for f in FILES if f.exists()], ids=lambda p: p.name)
def test_code_blocks_run(path):
    namespace = {"__name__": "__doc_example__"}
    for i, block in enumerate(python_blocks(path)):
        code = compile(block, "%s[block %d]" % (path.name, i), "exec")
        exec(code, namespace)


def test_docs_have_examples():
    assert python_blocks(ROOT / "docs" / "named_dims.md")
