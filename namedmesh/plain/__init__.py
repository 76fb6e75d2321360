"""Plain tensors in and out of named programs: a tensor's axes are named once.

``PlainAxes`` names the axes of plain tensors; ``PlainCall`` runs a named program
on them on any mesh and in any context (one device, devices, inside or outside
``strategy.run``).  The Keras wrappers (``namedmesh.keras``) and the SavedModel
export (``namedmesh.plain.serving``) are built on them.
"""
from namedmesh.plain.axes import PlainAxes
from namedmesh.plain.call import CROSS_REPLICA, PLACEMENT, REPLICA, PlainCall, call_context

__all__ = ["PlainAxes", "PlainCall", "call_context", "PLACEMENT", "REPLICA", "CROSS_REPLICA"]
