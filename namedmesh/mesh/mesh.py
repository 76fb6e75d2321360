"""The ``Mesh``: named processor dims, layout rules and the executor that runs slices.

Processors are numbered row-major over the mesh dims (the last dim fastest),
as in mtf.  The groups along a set of mesh dims are the processors that agree
on every other coordinate; members are listed in increasing processor number.
"""

import math
import numbers
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from namedmesh.core.checks import check_flag
from namedmesh.core.dims import Shape, convert_to_shape
from namedmesh.core.mesh_math import (pnum_to_processor_coordinates, processor_coordinates_to_pnum,
                                      processor_groups)
from namedmesh.errors import LayoutError, MeshError, ShapeError, WrongTypeError
from namedmesh.mesh.layout import TensorLayout, compute_tensor_layout
from namedmesh.mesh.layout_rules import convert_to_layout_rules
from namedmesh.mesh.processor_map import ProcessorMap, check_permutation, processor_map_for_devices

DEFAULT_COLLECTIVE_TIMEOUT = 600.0
"""Seconds a tf.distribute collective waits for the other members of its group
before it fails with a ``CollectiveError`` (``Mesh(collective_timeout=...)``)."""


def parse_mesh_shape(mesh_shape) -> Shape:
    """The mesh shape (mtf string, Shape or list), errors naming the mesh string."""
    try:
        return convert_to_shape(mesh_shape) if mesh_shape is not None else Shape([])
    except (ShapeError, WrongTypeError) as e:
        raise MeshError("mesh shape %r: %s" % (mesh_shape, str(e).replace(
            "shape string %r: " % (mesh_shape,), ""))) from None


class LayoutWarning(UserWarning):
    """A layout rule that has no effect on this mesh (mtf ignores such rules silently)."""


class Mesh:
    """A mesh of processors with named dims and layout rules.

    Args:
      mesh_shape: mtf string ``"b0:2;b1:4"``, a Shape or a list of Dimensions.
        ``""`` is a single processor.
      layout: layout rules, mtf string ``"batch:b0;experts:b1"`` or pairs.
      devices: device names, one per processor (placement executor).  Default:
        logical CPU devices ``/CPU:0 ..``, configured on first use.
      strategy: a ``tf.distribute`` strategy (MirroredStrategy,
        MultiWorkerMirroredStrategy or TPUStrategy) instead of devices: the
        program runs per replica inside ``strategy.run``; replica ``i`` is
        processor ``i`` unless ``logical_to_physical`` says otherwise.  Use
        ``mesh.run(fn, ...)``.
      name: a label used in messages.
      logical_to_physical: where processor ``p`` runs: None (replica / device
        ``p``), a permutation (replica / device ``logical_to_physical[p]``; on
        TPU the core ``logical_to_physical[p]`` in mtf's physical order), or
        ``"auto"`` on TPU (mtf's ``auto_logical_to_physical_tpu``).  See
        ``mesh.processor_map`` and docs/distributed.md.
      collective_timeout: seconds a tf.distribute collective waits for the rest
        of its group before failing with a ``CollectiveError`` (default
        ``DEFAULT_COLLECTIVE_TIMEOUT``, 600).  ``None``: no timeout.  TensorFlow
        keeps one sleeping thread per collective *execution* for the whole
        timeout, so long training loops need ``None`` (see docs/distributed.md).
      alltoall_in_bfloat16: send float32 all-to-alls as bfloat16 and cast back, as mtf
        does on TPU (simd_mesh_impl.py ``alltoall``): for exact parity with mtf runs on
        TPU.  Lossy (8 mantissa bits), so off by default.
      spmd: MirroredStrategy / MultiWorkerMirroredStrategy: ``mesh.run`` traces its
        program once for every replica, with the replica id as a tensor (default), or,
        with ``spmd=False``, once per replica as ``strategy.run`` does.

    A layout rule naming a mesh dim that the mesh lacks has no effect; it is
    reported with a ``LayoutWarning`` and listed in ``mesh.ignored_rules``.
    """

    def __init__(self, mesh_shape="", layout="", devices: Optional[Sequence[str]] = None,
                 strategy=None, name: str = "mesh", logical_to_physical=None,
                 collective_timeout: Optional[float] = DEFAULT_COLLECTIVE_TIMEOUT,
                 alltoall_in_bfloat16: bool = False, spmd: bool = True):
        self.shape: Shape = parse_mesh_shape(mesh_shape)
        self.alltoall_in_bfloat16 = check_flag(alltoall_in_bfloat16, "Mesh alltoall_in_bfloat16",
                                               error=MeshError)
        self.spmd = check_flag(spmd, "Mesh spmd", error=MeshError)
        self.layout_rules = convert_to_layout_rules(layout)
        self.name = name
        self._layouts = {}
        self._groups = {}
        mesh_names = set(self.shape.names)
        self.ignored_rules: Tuple[Tuple[str, str], ...] = tuple(
            (t, m) for t, m in self.layout_rules if m not in mesh_names)
        for t, m in self.ignored_rules:
            warnings.warn(
                "layout rule %s:%s names mesh dim %r, which mesh %s does not have (its dims: %s); "
                "the rule is ignored and %r stays replicated"
                % (t, m, m, self.shape.to_string() or "''", list(self.shape.names) or "none", t),
                LayoutWarning, stacklevel=2)
        if devices is not None and strategy is not None:
            raise MeshError("give a mesh either devices (placement executor) or a strategy "
                            "(tf.distribute executor), not both")
        if not isinstance(name, str):
            raise MeshError("Mesh name must be a string, got %r" % (name,))
        if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
            raise MeshError("strategy=%r (%s) is not a tf.distribute strategy; pass one such as "
                            "tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])"
                            % (strategy, type(strategy).__name__))
        if devices is not None and (isinstance(devices, str) or
                                    not isinstance(devices, (list, tuple))):
            raise MeshError("devices must be a list of device names, one per processor, got %r"
                            % (devices,))
        if collective_timeout is not None and (
                isinstance(collective_timeout, bool) or
                not isinstance(collective_timeout, numbers.Real) or not collective_timeout > 0
                or not math.isfinite(collective_timeout)):
            raise MeshError("collective_timeout must be a positive number of seconds (finite) or "
                            "None (no timeout), got %r" % (collective_timeout,))
        self.collective_timeout = None if collective_timeout is None else float(collective_timeout)
        self.logical_to_physical = logical_to_physical
        self.strategy = strategy
        self._functions = {}
        self.spmd_fallback: Optional[str] = None   # why the last traced program ran per replica
        if strategy is not None:
            from namedmesh.lowering.replica import make_replica_impl
            self.impl = make_replica_impl(self, strategy)
        else:
            if devices is None:
                from namedmesh.lowering.devices import default_devices
                devices = default_devices(self.size)
            else:
                from namedmesh.lowering.devices import check_devices_exist
                check_devices_exist(devices)
            devices = list(devices)
            if len(devices) != self.size:
                raise MeshError("mesh %s has %d processors but %d devices were given: %s"
                                % (self.shape.to_string(), self.size, len(devices), devices))
            if logical_to_physical is not None:
                if isinstance(logical_to_physical, str):
                    raise MeshError("logical_to_physical=%r needs a TPU topology; with devices "
                                    "give a permutation of device positions or None"
                                    % (logical_to_physical,))
                order = check_permutation(logical_to_physical, self.size, "device position")
                devices = [devices[i] for i in order]
            from namedmesh.lowering.placement import PlacementImpl
            self.impl = PlacementImpl(self, devices)

    # -- running a program ------------------------------------------------------------
    def run(self, fn, *args, reduce: str = "first", function: Optional[bool] = None):
        """Run the SPMD program ``fn(*args)`` on this mesh and return its result.

        ``fn`` takes and returns TF values (nests of tensors); inside, it imports
        them with ``import_tf_tensor`` and exports results with ``export_to_tf_tensor``.

        * placement executor: calls ``fn`` (inside a cached ``tf.function`` when
          ``function=True``; default: as it is, eagerly or in your own tf.function).
        * tf.distribute executor: ``strategy.run`` inside a ``tf.function`` cached per
          ``fn`` (pass the same ``fn`` to avoid retracing).  On MirroredStrategy and
          MultiWorkerMirroredStrategy ``fn`` is traced once for all replicas, with the
          replica id as a tensor (``namedmesh.lowering.spmd``), unless it needs
          per-replica traces (``mesh.spmd_fallback`` then says why).  With
          ``reduce="first"`` the result of replica 0 is returned (exports are the same
          on every replica); with ``reduce="sum"`` the per-replica results are summed,
          which is how per-replica gradients combine.
        """
        if reduce not in ("first", "sum"):
            raise MeshError("mesh.run: reduce must be 'first' or 'sum', got %r" % (reduce,))
        if not callable(fn):
            raise WrongTypeError("mesh.run: fn must be a function, got %r (%s)"
                                 % (fn, type(fn).__name__))
        if function is not None and not isinstance(function, bool):
            raise WrongTypeError("mesh.run: function must be True, False or None, got %r"
                                 % (function,))
        if self.strategy is None and not function:
            return fn(*args)
        compiled = self.function(fn, reduce=reduce)
        if self.strategy is None:
            return compiled(*args)
        from namedmesh.lowering.collective_keys import collective_failure
        try:
            return compiled(*args)
        except tf.errors.OpError as e:
            failure = collective_failure(e, self.collective_timeout)
            if failure is None:
                raise
            failure.tensorflow_error = e  # TensorFlow's own error, for debugging
            raise failure from None

    def function(self, fn, reduce: str = "first"):
        """The ``tf.function`` that ``mesh.run(fn, ..., reduce=reduce)`` calls (cached per
        ``fn``): ``mesh.function(fn).get_concrete_function(*args)`` traces it without
        running it.  Placement executor: ``fn`` itself in a ``tf.function``."""
        if reduce not in ("first", "sum"):
            raise MeshError("mesh.run: reduce must be 'first' or 'sum', got %r" % (reduce,))
        if self.strategy is None:
            compiled = self._functions.get(fn)
            if compiled is None:
                compiled = self._functions[fn] = tf.function(fn, autograph=False)
            return compiled
        compiled = self._functions.get((fn, reduce))
        if compiled is None:
            compiled = self._functions[(fn, reduce)] = self._strategy_function(fn, reduce)
        return compiled

    def _strategy_function(self, fn, reduce):
        strategy = self.strategy
        name = getattr(fn, "__name__", "program")
        spmd = self.spmd and type(self.impl).__name__ == "CollectiveReplicaImpl"
        mesh = self

        def step(*a):
            if spmd:
                from namedmesh.lowering.spmd import SpmdProgram
                program = SpmdProgram(mesh, fn, name)
                replica_fn = tf.autograph.experimental.do_not_convert(program)
            else:
                # no autograph: a namedmesh program is plain Python building TF ops, and
                # autograph would re-wrap namedmesh's errors into StagingError
                replica_fn = tf.autograph.experimental.do_not_convert(fn)
            out = strategy.run(replica_fn, args=a)
            if spmd:
                mesh.spmd_fallback = program.fallback
            if reduce == "sum":
                return tf.nest.map_structure(
                    lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None), out)
            return tf.nest.map_structure(
                lambda v: strategy.experimental_local_results(v)[0], out)

        step.__name__ = name  # the program's name in its keys
        return tf.function(step, autograph=False)

    # -- where processors run -------------------------------------------------------
    @property
    def processor_map(self) -> ProcessorMap:
        """Processor <-> replica id <-> device (see ``namedmesh.mesh.processor_map``)."""
        pmap = getattr(self.impl, "processor_map", None)
        if pmap is None:
            pmap = self.impl.processor_map = processor_map_for_devices(self.shape,
                                                                       self.impl.devices)
        return pmap

    def describe_processors(self) -> str:
        """The processor map as a table, with the collective rank order of each mesh dim."""
        groups = {d.name: self.groups([d.name]) for d in self.shape.dims if d.size > 1}
        return self.processor_map.describe(groups)

    # -- geometry -----------------------------------------------------------------
    @property
    def size(self) -> int:
        return self.shape.size

    @property
    def ndims(self) -> int:
        return self.shape.ndims

    @property
    def executor(self) -> str:
        """``"placement"`` or ``"strategy"``."""
        return "strategy" if self.strategy is not None else "placement"

    def mesh_axis(self, name: str) -> int:
        if name not in self.shape:
            raise MeshError("mesh %s has no dim %r (its dims: %s)"
                            % (self.shape.to_string(), name, list(self.shape.names)))
        return self.shape.index(name)

    def coordinates(self, pnum: int) -> Tuple[int, ...]:
        """Coordinates of processor ``pnum`` (row-major, last mesh dim fastest)."""
        if isinstance(pnum, bool) or not isinstance(pnum, (numbers.Integral, np.integer)):
            raise MeshError("processor number must be an integer, got %r (%s)"
                            % (pnum, type(pnum).__name__))
        if not 0 <= pnum < self.size:
            raise MeshError("processor %d is outside mesh %s (%d processors)"
                            % (pnum, self.shape.to_string(), self.size))
        return tuple(pnum_to_processor_coordinates(self.shape, pnum))

    def pnum(self, coordinates: Sequence[int]) -> int:
        return processor_coordinates_to_pnum(self.shape, coordinates)

    def groups(self, mesh_dims) -> List[List[int]]:
        """Processor groups along ``mesh_dims`` (names or axes): processors that agree
        on all other coordinates, members in increasing processor number.

        Mesh ``x:2;y:3``: ``groups(["x"]) == [[0, 3], [1, 4], [2, 5]]``.
        """
        if isinstance(mesh_dims, (str, int)):
            mesh_dims = [mesh_dims]   # one mesh dim, not the characters of its name
        axes = tuple(sorted(self._as_axis(d) for d in mesh_dims))
        groups = self._groups.get(axes)
        if groups is None:
            groups = self._groups[axes] = processor_groups(self.shape, list(axes))
        return [list(g) for g in groups]

    def _as_axis(self, d) -> int:
        if isinstance(d, int):
            if not 0 <= d < self.ndims:
                raise MeshError("mesh axis %d is outside mesh %s" % (d, self.shape.to_string()))
            return d
        return self.mesh_axis(d)

    # -- layouts ---------------------------------------------------------------
    def tensor_layout(self, shape) -> TensorLayout:
        """Which dims of ``shape`` are split over which mesh dims (cached by shape)."""
        shape = convert_to_shape(shape)
        if shape is None:
            raise ShapeError("tensor_layout: a shape is required, got None")
        layout = self._layouts.get(shape)
        if layout is None:
            layout = compute_tensor_layout(shape, self.shape, self.layout_rules)
            self._layouts[shape] = layout
        return layout

    def describe_layout(self, shape) -> str:
        """``[experts:4(b1), batch:8]``: dims with the mesh dim splitting each."""
        layout = self.tensor_layout(shape)
        parts = []
        for d, a in zip(layout.shape.dims, layout.mesh_axes):
            parts.append(str(d) if a is None else "%s(%s)" % (d, self.shape.dims[a].name))
        return "[%s]" % ", ".join(parts)

    def describe(self) -> str:
        rules = self.layout_rules.to_string()
        return "Mesh(%r, %r, %s)" % (self.shape.to_string(), rules, self.executor)

    def __repr__(self):
        return self.describe()

