"""Expected TPU processor orders from mesh-tensorflow 0.1.21's auto_logical_to_physical_tpu.

Runs mtf's own function (mesh_tensorflow/simd_mesh_impl.py) for every 1-, 2- and 3-D logical
mesh of power-of-2 sizes on the physical shapes mtf handles ([2^a, 2^b, 2]: rows, columns of
chips, 2 cores per chip; also given as TPU topology 4-D shapes [x, y, 1, 2], which mtf folds
to [y, x, 2]) and writes them as JSON: {"mtf_version", "cases": [{"physical_shape",
"logical_shape", "logical_to_physical"}], "not_handled": [...]}.  "not_handled" records what
mtf returns for shapes outside [2^a, 2^b, 2]: its lexicographic fallback, or for one core per
chip its inner function object ("mtf_returns": "function"), a bug.

    /tmp/mtf-oracle/bin/python tools/oracle/mtf_logical_to_physical.py \
        --out tests/data/tpu/mtf_logical_to_physical.json
"""
import argparse
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtf_shim  # noqa: E402,F401  (mtf 0.1.21 on TF >= 2.16)
import tensorflow.compat.v1 as tf  # noqa: E402
from mesh_tensorflow import simd_mesh_impl  # noqa: E402

PHYSICAL_3D = [[1, 1, 2], [1, 2, 2], [2, 1, 2], [2, 2, 2], [2, 4, 2], [4, 2, 2], [4, 4, 2],
               [4, 8, 2], [8, 4, 2], [8, 8, 2], [8, 16, 2]]
PHYSICAL_4D = [[2, 2, 1, 2], [4, 2, 1, 2], [4, 4, 1, 2], [8, 8, 1, 2], [16, 8, 1, 2]]
# shapes mtf does not handle: not powers of 2 (it falls back to lexicographic order), and one
# core per chip (it returns its inner function object instead of a permutation)
NOT_HANDLED = [([3, 2, 2], [12]), ([3, 2, 2], [2, 6]), ([6, 4, 2], [4, 12]),
               ([2, 2, 1], [4]), ([4, 4, 1], [4, 4]), ([2, 2, 4, 1], [4, 4])]


def factorizations(n, ndims):
    """Logical shapes of ``ndims`` power-of-2 sizes >= 2 (plus a size-1 dim, which mtf drops)."""
    powers = [2 ** k for k in range(1, n.bit_length()) if n % (2 ** k) == 0]
    out = []
    for shape in itertools.product(powers, repeat=ndims):
        if _product(shape) == n:
            out.append(list(shape))
    return out


def _product(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--max_3d_per_shape", type=int, default=6)
    args = parser.parse_args()
    tf.flags.FLAGS(["mtf_logical_to_physical"])  # mtf reads FLAGS.logical_cores_per_chip (2)
    cases = []
    for physical in PHYSICAL_3D + PHYSICAL_4D:
        n = _product(physical)
        logical_shapes = factorizations(n, 1) + factorizations(n, 2)
        logical_shapes += factorizations(n, 3)[:args.max_3d_per_shape]
        if n >= 4:
            logical_shapes.append([1] + factorizations(n, 2)[0])  # a size-1 dim
        for logical in logical_shapes:
            result = simd_mesh_impl.auto_logical_to_physical_tpu(logical, list(physical))
            cases.append({"physical_shape": list(physical), "logical_shape": logical,
                          "logical_to_physical": [int(v) for v in result]})
    not_handled = []
    for physical, logical in NOT_HANDLED:
        result = simd_mesh_impl.auto_logical_to_physical_tpu(logical, list(physical))
        entry = {"physical_shape": physical, "logical_shape": logical}
        if isinstance(result, list):
            entry["logical_to_physical"] = [int(v) for v in result]
        else:
            entry["mtf_returns"] = type(result).__name__
        not_handled.append(entry)
    with open(args.out, "w") as f:
        json.dump({"mtf_version": "0.1.21",
                   "function": "mesh_tensorflow.simd_mesh_impl.auto_logical_to_physical_tpu",
                   "made_by": "tools/oracle/mtf_logical_to_physical.py",
                   "cases": cases, "not_handled": not_handled},
                  f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("%d cases -> %s" % (len(cases), args.out))


if __name__ == "__main__":
    main()
