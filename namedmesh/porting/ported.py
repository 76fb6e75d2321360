"""What a legacy config ports to: MoE layers, a mesh, a layout, and what was left out.

Readers (``gin_reader``, ``hparams_reader``) produce a ``PortedConfig``;
``build_mesh`` / ``build_layers`` turn it into namedmesh objects and
``python_snippet`` prints the equivalent namedmesh code.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.mesh.mesh import parse_mesh_shape


@dataclass(frozen=True)
class Source:
    """Where a value came from: a file and line (line 0: not from a file)."""

    file: str
    line: int
    key: str = ""

    def __str__(self):
        where = "%s:%d" % (self.file, self.line) if self.line else self.file
        return "%s (%s)" % (where, self.key) if self.key else where


@dataclass
class PortedLayer:
    """One MoE layer of the legacy config."""

    kind: str                     # "MoE1D" or "MoE2D"
    kwargs: Dict[str, Any]        # namedmesh / mtf gin keywords
    scope: str = ""               # gin scope it was configured in, e.g. "decoder"
    sources: Dict[str, Source] = field(default_factory=dict)  # keyword -> where it was set

    def build(self):
        from namedmesh import moe
        return getattr(moe, self.kind)(**self.kwargs)

    @property
    def label(self) -> str:
        return "%s%s" % (self.kind, " in scope %r" % self.scope if self.scope else "")


@dataclass
class Ignored:
    """A binding or key that does not concern MoE, mesh or layout."""

    source: Source
    text: str


@dataclass
class PortedConfig:
    path: str
    layers: List[PortedLayer]
    mesh_shape: Optional[str] = None
    layout: Optional[str] = None
    mesh_devices: Optional[List[str]] = None
    ignored: List[Ignored] = field(default_factory=list)
    used: List[tuple] = field(default_factory=list)  # (Source, what): e.g. layer stacks
    reports: List[str] = field(default_factory=list)
    sources: Dict[str, Source] = field(default_factory=dict)

    def _layout_only_mesh(self):
        """The config's Mesh without devices (for layouts, not for running); its
        LayoutWarnings (rules naming absent mesh dims) come back as a list."""
        from namedmesh.mesh.mesh import Mesh
        try:
            size = parse_mesh_shape(self.mesh_shape or "").size
        except NamedMeshError as e:
            raise ConfigError("%s: %s" % (self.sources.get("mesh_shape", self.path), e)) from None
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                mesh = Mesh(self.mesh_shape or "", self.layout or "", devices=[""] * size)
        except NamedMeshError as e:
            raise ConfigError("%s: %s" % (self.sources.get("layout", self.path), e)) from None
        return mesh, [str(w.message) for w in caught]

    def check_mesh_and_layout(self):
        """Validate the mesh and layout strings; report layout rules whose mesh dim is
        absent (mtf ignores them silently; the Mesh names them and the dims that exist)."""
        self.reports += self._layout_only_mesh()[1]

    def build_mesh(self, **kwargs):
        from namedmesh.mesh.mesh import LayoutWarning, Mesh
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayoutWarning)  # reported in self.reports
            return Mesh(self.mesh_shape or "", self.layout or "", **kwargs)

    def build_layers(self):
        return [layer.build() for layer in self.layers]

    def default_input_shape(self, layer: PortedLayer, d_model: int = 64) -> str:
        """A small input the mesh can lay out: batch dims sized by their mesh dims."""
        from namedmesh.core.dims import Dimension
        from namedmesh.moe.dims import mesh_dim_size_of
        mesh = self._layout_only_mesh()[0]
        outer = mesh_dim_size_of(mesh, Dimension("outer_batch", 1))
        batch_name = "batch"
        for candidate in ("batch", "inner_batch"):
            if mesh.layout_rules.mesh_dim_name(candidate) in mesh.shape:
                batch_name = candidate
                break
        batch = max(2, mesh_dim_size_of(mesh, Dimension(batch_name, 1)))
        return "outer_batch:%d;%s:%d;length:8;d_model:%d" % (outer, batch_name, batch, d_model)

    def python_snippet(self, checkpoint: Optional[str] = None,
                       scopes: Optional[List[str]] = None) -> str:
        """Namedmesh code equivalent to the config (it runs as printed)."""
        lines = ["import namedmesh as nm", ""]
        lines.append("mesh = nm.Mesh(%r, %r)" % (self.mesh_shape or "", self.layout or ""))
        for i, layer in enumerate(self.layers):
            args = ",\n        ".join("%s=%r" % kv for kv in sorted(layer.kwargs.items()))
            name = "layer" if len(self.layers) == 1 else "layer_%d" % i
            comment = "  # %s" % layer.label if layer.scope else ""
            lines.append("%s = nm.moe.%s(%s)%s" % (name, layer.kind,
                                                   ("\n        " + args) if args else "", comment))
            if checkpoint is not None and scopes and i < len(scopes):
                lines.append("%s.load_mtf_variables(nm.porting.read_moe_variables(%r, %r))"
                             % (name, checkpoint, scopes[i]))
        return "\n".join(lines) + "\n"
