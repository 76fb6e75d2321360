"""Group sizes and expert capacity: how tokens are batched for routing.

Tokens are routed in *groups*: each group sends at most ``expert_capacity``
tokens to each expert.  The number of groups must be a multiple of the mesh
dim that splits them, so that every processor holds whole groups.
"""

from namedmesh.core.checks import check_number
from namedmesh.errors import ConfigError


def split_into_groups(n: int, max_group_size: int, mesh_dim_size: int, what: str = "tokens"):
    """``(num_groups, group_size)`` with ``num_groups * group_size == n``: the largest
    group size <= ``max_group_size`` whose group count is a multiple of ``mesh_dim_size``
    (mtf's ``_split_into_groups``)."""
    check_number(n, "split_into_groups: n", 1, integer=True)
    check_number(max_group_size, "split_into_groups: max_group_size", 1, integer=True)
    check_number(mesh_dim_size, "split_into_groups: mesh_dim_size", 1, integer=True)
    if n % mesh_dim_size != 0:
        raise ConfigError(
            "%s: n=%d is not a multiple of mesh_dim_size=%d (the mesh dim that splits the "
            "groups); change the batch size or the layout" % (what, n, mesh_dim_size))
    num_groups = max(1, n // max_group_size)
    while num_groups % mesh_dim_size != 0 or n % num_groups != 0:
        num_groups += 1
    return num_groups, n // num_groups


def expert_capacity(group_size: int, capacity_factor: float, num_experts: int,
                    min_capacity: int) -> int:
    """Slots per expert per group: ``max(min(S, int(S * cf / E)), min_capacity)`` (mtf)."""
    check_number(group_size, "expert_capacity: group_size", 1, integer=True)
    check_number(capacity_factor, "expert_capacity: capacity_factor", 0, above=True)
    check_number(num_experts, "expert_capacity: num_experts", 1, integer=True)
    check_number(min_capacity, "expert_capacity: min_capacity", 1, integer=True)
    return max(min(group_size, int((group_size * capacity_factor) / num_experts)), min_capacity)
