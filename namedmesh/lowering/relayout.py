"""Lowering of reshapes: execute a ``ReshapePlan`` on laid-out slices."""

import tensorflow as tf

from namedmesh.core.tensor import Tensor
from namedmesh.lowering.reshape_plan import plan_reshape


def lower_reshape(x: Tensor, new_shape) -> Tensor:
    mesh = x.mesh
    impl = mesh.impl
    new_layout = mesh.tensor_layout(new_shape)
    plan = plan_reshape(x.shape, new_shape, mesh.shape, x.layout.mesh_axes, new_layout.mesh_axes)
    slices = x.slices
    for step in plan.before:
        if step.kind == "allsplit":
            slices = impl.allsplit(slices, step.mesh_axis, step.split_axis)
        elif step.kind == "allconcat":
            slices = impl.allconcat(slices, step.mesh_axis, step.concat_axis, shape=x.shape)
        else:
            slices = impl.alltoall(slices, step.mesh_axis, step.split_axis, step.concat_axis,
                                   shape=x.shape, new_shape=new_shape)
    local_shape = list(plan.local_shape)
    slices = impl.slicewise(lambda v: tf.reshape(v, local_shape), slices)
    for step in plan.after:
        slices = impl.allsplit(slices, step.mesh_axis, step.split_axis)
    return Tensor(mesh, new_shape, slices, x.dtype)
