"""List the public functions and classes of mtf 0.1.21's ``layers.py`` (read from its source).

Writes ``tests/data/layers/public_api.json``: module-level ``def``s and ``class``es whose names do
not start with ``_``, in source order, with line numbers and signatures.  The table of
docs/layers.md (``namedmesh/layers/mtf_layers_table.py``) has one row per function listed here,
which ``tests/test_layers_table.py`` checks.  Needs only the source file (any Python 3):

    python3 tools/oracle/list_mtf_layers.py \\
        --source /tmp/mtf-oracle/lib/python3.11/site-packages/mesh_tensorflow/layers.py \\
        --out tests/data/layers/public_api.json
"""
import argparse
import ast
import json


def signature(node: ast.FunctionDef) -> str:
    return "(%s)" % ast.unparse(node.args)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", required=True, help="mesh_tensorflow/layers.py of mtf 0.1.21")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    tree = ast.parse(open(a.source).read())
    functions = [{"name": n.name, "line": n.lineno, "signature": signature(n)}
                 for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]
    classes = [n.name for n in tree.body
               if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
    with open(a.out, "w") as f:
        json.dump({"source": "mesh_tensorflow 0.1.21 mesh_tensorflow/layers.py",
                   "functions": functions, "classes": classes}, f, indent=1)
        f.write("\n")
    print("%d functions, %d classes" % (len(functions), len(classes)))


if __name__ == "__main__":
    main()
