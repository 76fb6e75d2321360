"""The dimensions inside the MoE layers, computed once from config, input shape and mesh.

The layers build their tensors from these, and the glossary and ``namedmesh
explain`` read the same values, so the documentation cannot drift from the code.
Names are mtf's (layout rules name them); mtf's cheat-sheet letters are kept in
``namedmesh.moe.glossary`` only.
"""

from dataclasses import dataclass, fields
from typing import Dict

from namedmesh.core.dims import Dimension, Shape, convert_to_shape
from namedmesh.errors import ConfigError
from namedmesh.moe.groups import expert_capacity, split_into_groups


def mesh_dim_size_of(mesh, dim: Dimension) -> int:
    """How many ways the layout splits ``dim`` (1 if it is not split): mtf's
    ``tensor_dim_to_mesh_dim_size``, the one place the layers read the layout."""
    name = mesh.layout_rules.mesh_dim_name(dim.name)
    found = mesh.shape.get(name) if name is not None else None
    return found.size if found is not None else 1


@dataclass(frozen=True)
class MoE1DDims:
    """transformer_moe_layer_v1: letters O B L M N G S E C H of mtf's cheat sheet."""

    outer_batch: Dimension      # O
    batch: Dimension            # B (the input's batch dim)
    length: Dimension           # L (the product of the input's other batch/length dims)
    d_model: Dimension          # M
    output: Dimension           # N
    groups: Dimension           # G (named like the batch dim)
    groups_unsplit: Dimension   # G, unsplit copy ("batch_unsplit")
    group_size: Dimension       # S ("group")
    experts: Dimension          # E ("experts", split)
    experts_unsplit: Dimension  # E ("expert_unsplit")
    capacity: Dimension         # C ("expert_capacity")
    hidden: Dimension           # H ("expert_hidden")

    def as_dict(self) -> Dict[str, Dimension]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class MoE2DDims:
    """transformer_moe_layer_v2: letters a b l m n g h s t x y c d of mtf's cheat sheet."""

    outer_batch: Dimension        # a
    batch: Dimension              # b
    length: Dimension             # l
    d_model: Dimension            # m
    output: Dimension             # n
    groups_x: Dimension           # g (split: g1, named like b)
    groups_x_unsplit: Dimension   # g ("<b>_unsplit")
    group_size_x: Dimension       # s
    experts_x: Dimension          # x (split: x1, "expert_x")
    experts_x_unsplit: Dimension  # x ("expert_x_unsplit")
    capacity_x: Dimension         # c
    groups_y: Dimension           # h (split: h0, named like a)
    groups_y_unsplit: Dimension   # h ("<a>_unsplit")
    group_size_y: Dimension       # t
    experts_y: Dimension          # y (split: y0, "expert_y")
    experts_y_unsplit: Dimension  # y ("expert_y_unsplit")
    capacity_y: Dimension         # d
    hidden: Dimension             # expert_hidden

    def as_dict(self) -> Dict[str, Dimension]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def moe1d_dims(config, input_shape, mesh, train: bool) -> MoE1DDims:
    shape = convert_to_shape(input_shape)
    if shape.ndims < 2:
        raise ConfigError("MoE1D: input must have a batch dim and d_model, got %s" % shape)
    if shape.ndims == 2:
        shape = Shape([shape.dims[0], Dimension("length", 1), shape.dims[1]])
    dims = shape.dims
    d_model = dims[-1]
    if dims[0].name == "outer_batch":
        outer, batch = dims[0], dims[1]
    else:
        outer, batch = Dimension("outer_batch", 1), dims[0]
    n = shape.size // d_model.size // outer.size
    num_groups, group_size = split_into_groups(
        n, config.group_size, mesh_dim_size_of(mesh, batch), "MoE1D groups of %r" % batch.name)
    cf = config.capacity_factor_train if train else config.capacity_factor_eval
    out = config.output_dim
    return MoE1DDims(
        outer_batch=outer, batch=batch, length=Dimension("length", n // batch.size),
        d_model=d_model,
        output=d_model if out is None or out == d_model.size else Dimension(d_model.name, out),
        groups=Dimension(batch.name, num_groups),
        groups_unsplit=Dimension("batch_unsplit", num_groups),
        group_size=Dimension("group", group_size),
        experts=Dimension("experts", config.num_experts),
        experts_unsplit=Dimension("expert_unsplit", config.num_experts),
        capacity=Dimension("expert_capacity", expert_capacity(
            group_size, cf, config.num_experts, config.min_expert_capacity)),
        hidden=Dimension("expert_hidden", config.hidden_size))


def moe2d_dims(config, input_shape, mesh, train: bool) -> MoE2DDims:
    shape = convert_to_shape(input_shape)
    if shape.ndims == 3:
        shape = Shape([Dimension("outer_batch", 1)] + list(shape.dims))
    if shape.ndims != 4:
        raise ConfigError("MoE2D: input must be [outer_batch, batch, length, d_model] or "
                          "[batch, length, d_model], got %s" % (input_shape,))
    a0, b1, l, m = shape.dims
    num_groups, group_size = split_into_groups(
        b1.size * l.size, config.group_size, mesh_dim_size_of(mesh, b1),
        "MoE2D first-level groups of %r" % b1.name)
    cf = config.capacity_factor_train if train else config.capacity_factor_eval
    cap_x = expert_capacity(group_size, cf, config.expert_x, config.min_expert_capacity)
    num_groups_y, group_size_y = split_into_groups(
        a0.size * num_groups * cap_x, config.group_size, mesh_dim_size_of(mesh, a0),
        "MoE2D second-level groups of %r" % a0.name)
    cap_y = expert_capacity(group_size_y, config.capacity_factor_second_level, config.expert_y,
                            config.min_expert_capacity)
    return MoE2DDims(
        outer_batch=a0, batch=b1, length=l, d_model=m, output=m,
        groups_x=Dimension(b1.name, num_groups),
        groups_x_unsplit=Dimension(b1.name + "_unsplit", num_groups),
        group_size_x=Dimension("group_size_x", group_size),
        experts_x=Dimension("expert_x", config.expert_x),
        experts_x_unsplit=Dimension("expert_x_unsplit", config.expert_x),
        capacity_x=Dimension("expert_capacity_x", cap_x),
        groups_y=Dimension(a0.name, num_groups_y),
        groups_y_unsplit=Dimension(a0.name + "_unsplit", num_groups_y),
        group_size_y=Dimension("group_size_y", group_size_y),
        experts_y=Dimension("expert_y", config.expert_y),
        experts_y_unsplit=Dimension("expert_y_unsplit", config.expert_y),
        capacity_y=Dimension("expert_capacity_y", cap_y),
        hidden=Dimension("expert_hidden", config.hidden_size))
