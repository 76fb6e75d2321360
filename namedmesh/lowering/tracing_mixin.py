"""Shared by executors: turn a collective call into a trace record."""

from namedmesh.lowering import trace


class TracingMixin:
    """Adds ``record_collective`` to a MeshImpl."""

    def should_record(self) -> bool:
        return True

    def record_collective(self, kind, mesh_axes, x, shape=None, reduction=None, split_axis=None,
                          concat_axis=None, new_shape=None):
        if not trace.active() or not self.should_record():
            return
        mesh = self.mesh
        first = x[0]
        size = first.dtype.size
        for n in first.shape.as_list():
            size *= n if n is not None else 1
        group_size = 1
        for a in mesh_axes:
            group_size *= mesh.shape.dims[a].size
        trace.record(
            kind=kind,
            mesh_dims=tuple(mesh.shape.dims[a].name for a in mesh_axes),
            shape=mesh.describe_layout(shape) if shape is not None else str(first.shape),
            group_size=group_size,
            num_groups=mesh.size // group_size,
            bytes_per_processor=int(size),
            dtype=first.dtype.name,
            reduction=reduction,
            split_axis=split_axis,
            concat_axis=concat_axis,
            new_shape=mesh.describe_layout(new_shape) if new_shape is not None else None,
        )
