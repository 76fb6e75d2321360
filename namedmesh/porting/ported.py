"""What a legacy config ports to: the model, its MoE layers, a mesh, a layout, and an account
of every value (read from where, ignored why, taken from which default).

Readers (``gin_reader``, ``t2t_reader``, ``json_reader``) produce a
``PortedConfig``.  ``model`` is the typed ``namedmesh.transformer.ModelSpec``
(None when the config does not describe a whole model); ``layers`` are its MoE
layers as ``PortedLayer`` s (``build()`` gives the namedmesh layer);
``build_mesh`` builds the mesh and ``python_snippet`` prints equivalent code.
"""

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.mesh.mesh import parse_mesh_shape


@dataclass(frozen=True)
class Source:
    """Where a value came from: a file and line (line 0: not from a line of a file, e.g.
    ``--gin_param[2]`` or a key of a dict), and the key written there."""

    file: str
    line: int
    key: str = ""

    @property
    def where(self) -> str:
        return "%s:%d" % (self.file, self.line) if self.line else self.file

    def with_key(self, key: str) -> "Source":
        return Source(self.file, self.line, key)

    def __str__(self):
        return "%s (%s)" % (self.where, self.key) if self.key else self.where


@dataclass
class Ignored:
    """A binding or key the ported model does not use, and why."""

    source: Source
    text: str
    reason: str = ""


@dataclass
class ReadValue:
    """One value the ported model takes: ``key`` names the parameter where it is used
    (``decoder/block_000/layer_001 MoE1D.group_size``); ``source`` is where the config set
    it, None when it is a default (``default`` says whose)."""

    key: str
    value: Any
    source: Optional[Source] = None
    default: str = ""


@dataclass
class PortedLayer:
    """One MoE layer of the legacy config.

    ``kwargs`` are the keywords the config set (the rest are the layer's defaults);
    ``scope`` is its place in the model (``decoder/block_003/layer_001``; a gin scope
    such as ``decoder`` when the config configures layers without a layer stack);
    ``variable_scope`` the prefix of its variables in the source model's checkpoints;
    ``input_shape`` the input the config's own sizes give it (None: not in the config).
    """

    kind: str                     # "MoE1D" or "MoE2D"
    kwargs: Dict[str, Any]        # namedmesh / mtf gin keywords
    scope: str = ""
    sources: Dict[str, Source] = field(default_factory=dict)  # keyword -> where it was set
    variable_scope: str = ""
    input_shape: Optional[str] = None
    implementation: str = ""

    def build(self):
        from namedmesh import moe
        if self.kind not in ("MoE1D", "MoE2D"):
            raise ConfigError("PortedLayer %s: kind must be 'MoE1D' or 'MoE2D', got %r"
                              % (self.scope or "<root>", self.kind))
        return getattr(moe, self.kind)(**self.kwargs)

    @property
    def label(self) -> str:
        return "%s%s" % (self.kind, " in %s" % self.scope if self.scope else "")


@dataclass
class PortedConfig:
    path: str
    layers: List[PortedLayer]
    mesh_shape: Optional[str] = None
    layout: Optional[str] = None
    mesh_devices: Optional[List[str]] = None
    ignored: List[Ignored] = field(default_factory=list)
    used: List[tuple] = field(default_factory=list)  # (Source, what): bindings read
    reports: List[str] = field(default_factory=list)
    sources: Dict[str, Source] = field(default_factory=dict)
    model: Any = None                                  # namedmesh.transformer.ModelSpec
    values: List[ReadValue] = field(default_factory=list)
    source_format: str = ""                            # "gin", "t2t hparams", "GPT-Neo JSON" ...

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
        absent (mtf ignores them silently; the Mesh names them and the dims that exist),
        and device lists that do not match the mesh."""
        self.reports += self._layout_only_mesh()[1]
        size = parse_mesh_shape(self.mesh_shape or "").size
        if self.mesh_devices and len(self.mesh_devices) != size:
            self.reports.append(
                "mesh_devices lists %d devices but mesh %r has %d processors (set at %s); mtf's "
                "placement mesh needs one device per processor, namedmesh uses the devices you "
                "give Mesh" % (len(self.mesh_devices), self.mesh_shape, size,
                               self.sources.get("mesh_devices", self.path)))

    def build_mesh(self, **kwargs):
        from namedmesh.mesh.mesh import LayoutWarning, Mesh
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayoutWarning)  # reported in self.reports
            return Mesh(self.mesh_shape or "", self.layout or "", **kwargs)

    def build_layers(self):
        return [layer.build() for layer in self.layers]

    def build_model(self, vocab_size: Optional[int] = None,
                    input_vocab_size: Optional[int] = None,
                    output_vocab_size: Optional[int] = None, seed: int = 0):
        """The whole model the config describes, a ``namedmesh.transformer.TransformerModel``
        (vocab sizes: the run's vocabulary's, which configs rarely hold)."""
        if self.model is None:
            why = [r for r in self.reports if r.startswith("not a whole")]
            raise ConfigError("%s does not describe a whole model%s" % (
                self.path, ": " + why[0] if why else " (only MoE layers; build_layers() "
                                                       "builds them)"))
        from namedmesh.transformer.build import build_model
        return build_model(self.model, vocab_size=vocab_size, input_vocab_size=input_vocab_size,
                           output_vocab_size=output_vocab_size, seed=seed)

    def default_input_shape(self, layer: PortedLayer, d_model: int = 64) -> str:
        """The layer's input as the config sizes it (its batch, length and d_model); for a
        config without those sizes, a small input the mesh can lay out."""
        if layer.input_shape:
            return layer.input_shape
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

    def distinct_layers(self) -> List[Tuple[PortedLayer, List[PortedLayer]]]:
        """The MoE layers grouped by (kind, keywords, input): one entry per distinct layer."""
        groups: Dict[tuple, List[PortedLayer]] = {}
        for layer in self.layers:
            key = (layer.kind, repr(sorted(layer.kwargs.items())), layer.input_shape)
            groups.setdefault(key, []).append(layer)
        return [(members[0], members) for members in groups.values()]

    def defaults(self) -> List[ReadValue]:
        return [v for v in self.values if v.source is None]

    def python_snippet(self, checkpoint: Optional[str] = None,
                       scopes: Optional[List[str]] = None) -> str:
        """Namedmesh code equivalent to the config's MoE layers (it runs as printed)."""
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
