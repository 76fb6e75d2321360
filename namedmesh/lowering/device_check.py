"""Check a mesh's collectives on the machine: the first thing to run on a new cluster.

``check_collectives(mesh)`` runs, along every mesh dim of size > 1, one
all-gather (an export), one all-to-all (a reshape that moves a split) and one
all-reduce (a sum over a split dim), on the mesh's executor
(placement, MirroredStrategy, MultiWorkerMirroredStrategy or TPUStrategy),
and compares each result with the same program on a single device.  The
inputs are distinct small integers, so every result must be *equal*: a
processor map that put a piece on the wrong processor shows as a mismatch.

    report = namedmesh.check_collectives(mesh)
    print(report.render())        # the processor map, then one line per check
    assert report.ok

``namedmesh check --mesh ... --strategy ...`` is the same from the shell.
"""

import time
from dataclasses import dataclass, field
from typing import List

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class CheckResult:
    """One collective along one mesh dim: kind, mesh dim, group size, largest
    absolute difference from the single-device result, seconds of the run."""

    kind: str
    mesh_dim: str
    group_size: int
    max_abs_diff: float
    seconds: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff == 0.0

    def describe(self) -> str:
        return "%-10s along %-8s groups of %-3d %s (max |diff| %g, %.2f s)" % (
            self.kind, self.mesh_dim, self.group_size, "ok      " if self.ok else "MISMATCH",
            self.max_abs_diff, self.seconds)


@dataclass
class CheckReport:
    """The processor map and the results of ``check_collectives``."""

    processor_map: str
    results: List[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def render(self) -> str:
        lines = [self.processor_map, "collectives (each compared with one device):"]
        lines += ["  " + r.describe() for r in self.results]
        if not self.results:
            lines.append("  (no mesh dim of size > 1: nothing to communicate)")
        lines.append("all collectives agree with the single-device result" if self.ok else
                     "MISMATCH: a collective does not reproduce the single-device result")
        return "\n".join(lines)


def _program(mesh, n: int):
    """Along one mesh dim of size ``n`` (``grp`` and ``src`` split over it):
    (all-gather: the input exported as it is;
     all-to-all: the input with its split moved, each piece weighted by where it
       landed and summed (a sum of weighted pieces is order-free, so only
       pieces that arrive at the wrong processor change it);
     all-reduce: the sum over the split dim)."""
    import namedmesh as nm
    old = "src_unsplit:%d;grp:%d;c:3" % (n, n)
    new = "src:%d;grp_unsplit:%d;c:3" % (n, n)

    def fn(x, weights):
        t = nm.import_tf_tensor(mesh, x, old)
        moved = nm.reshape(t, new)                        # the split moves: one all-to-all
        w = nm.import_tf_tensor(mesh, weights, "src:%d" % n)
        landed = nm.reduce_sum(moved * w, output_shape="grp_unsplit:%d;c:3" % n)
        total = nm.reduce_sum(t, reduced_dim="grp")       # a sum over the split dim
        return (nm.export_to_tf_tensor(t), nm.export_to_tf_tensor(landed),
                nm.export_to_tf_tensor(total))

    return fn


def check_collectives(mesh) -> CheckReport:
    """Run and compare one all-to-all and one all-reduce along each mesh dim of ``mesh``."""
    import namedmesh as nm
    from namedmesh.core.checks import check_mesh
    check_mesh(mesh, "check_collectives")
    report = CheckReport(mesh.describe_processors())
    single = nm.Mesh()
    for d in mesh.shape.dims:
        if d.size == 1:
            continue
        layout = "grp:%s;src:%s" % (d.name, d.name)
        if mesh.strategy is not None:
            on_mesh = nm.Mesh(mesh.shape, layout, strategy=mesh.strategy, name="check",
                              logical_to_physical=mesh.logical_to_physical,
                              collective_timeout=mesh.collective_timeout)
            on_mesh.impl.processor_map = mesh.processor_map  # check this mesh's own map
        else:
            on_mesh = nm.Mesh(mesh.shape, layout, devices=mesh.impl.devices, name="check")
        x = tf.constant(np.arange(d.size * d.size * 3, dtype=np.float32).reshape(d.size, d.size, 3))
        weights = tf.constant(np.arange(1, d.size + 1, dtype=np.float32) ** 2)
        start = time.time()
        got = on_mesh.run(_program(on_mesh, d.size), x, weights)
        seconds = time.time() - start
        want = _program(single, d.size)(x, weights)
        for kind, g, w in zip(("all_gather", "all_to_all", "all_reduce"), got, want):
            diff = float(np.max(np.abs(np.asarray(g) - np.asarray(w))))
            report.results.append(CheckResult(kind, d.name, d.size, diff, seconds))
    return report
