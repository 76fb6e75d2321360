"""Read legacy mtf / T5 gin files that configure MoE layers, with gin-config's own parser.

Understood (everything else is listed as ignored, with file and line):

* MoE bindings: ``MoE1D.num_experts = 16``, ``moe.MoE1D.hidden_size = 512``,
  ``mesh_tensorflow.transformer.moe.MoE1D.group_size = 1024``, scoped
  (``decoder/MoE1D.num_experts``), and ``MoE2D.*`` in namedmesh's names (new:
  mtf never made MoE2D gin-configurable);
* layer stacks that list ``@mesh_tensorflow.transformer.moe.MoE1D`` (each
  reference is one layer; it takes the class bindings plus those of its scope);
* the mesh and layout: ``utils.run.mesh_shape``, ``utils.run.layout_rules``,
  ``model.mesh_shape``, ``model.layout``, ``utils.run.mesh_devices``;
* macros (``MESH = "b0:4;b1:8"`` ... ``%MESH``), ``import`` lines (recorded,
  not executed) and ``include 'other.gin'`` (relative to the including file).

Errors name the file, the line and the key.
"""

import os
import re
from typing import Dict, List, Optional

from gin import config_parser

from namedmesh.errors import ConfigError, NamedMeshError
from namedmesh.moe.config import MoE1DConfig, MoE2DConfig
from namedmesh.porting.ported import Ignored, PortedConfig, PortedLayer, Source

_MOE_SELECTOR = re.compile(
    r"^(?:(?:mesh_tensorflow\.)?transformer\.)?(?:moe\.)?(MoE1D|MoE2D)$|^namedmesh\.moe\.(MoE1D|MoE2D)$")
_RUN_SELECTOR = re.compile(r"(^|\.)(run|model|build_model)$")
_MESH_ARGS = {"mesh_shape": "mesh_shape", "layout_rules": "layout", "layout": "layout",
              "mesh_devices": "mesh_devices"}
_CONFIGS = {"MoE1D": MoE1DConfig, "MoE2D": MoE2DConfig}


class Macro:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "%" + self.name


class Reference:
    """``@name`` or ``@name()`` in a gin value."""

    def __init__(self, name, evaluate):
        self.name = name
        self.evaluate = evaluate

    @property
    def scope_and_selector(self):
        scope, _, selector = self.name.rpartition("/")
        return scope, selector

    def __repr__(self):
        return "@" + self.name + ("()" if self.evaluate else "")


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return Reference(scoped_configurable_name, evaluate)

    def macro(self, macro_name):
        return Macro(macro_name)


def moe_kind(selector: str) -> Optional[str]:
    m = _MOE_SELECTOR.match(selector)
    return (m.group(1) or m.group(2)) if m else None


class _Statement:
    def __init__(self, stmt, source: Source):
        self.stmt = stmt
        self.source = source


def _parse_file(path: str, seen: List[str], include_from: Optional[Source] = None):
    """All statements of a gin file, includes expanded in place."""
    path = os.path.normpath(path)
    if not os.path.exists(path):
        where = "%s: " % include_from if include_from else ""
        raise ConfigError("%sgin file %r not found" % (where, path))
    if path in seen:
        raise ConfigError("%s: include cycle through %r" % (include_from, path))
    seen = seen + [path]
    out = []
    with open(path) as f:
        try:
            statements = list(config_parser.ConfigParser(f, _Delegate()))
        except SyntaxError as e:
            line = getattr(e, "lineno", 0) or 0
            raise ConfigError("%s:%d: gin syntax error: %s" % (path, line, e.msg)) from None
    for stmt in statements:
        loc = stmt.location
        source = Source(path, loc.line_num)
        if isinstance(stmt, config_parser.IncludeStatement):
            target = stmt.filename
            if not os.path.isabs(target):
                target = os.path.join(os.path.dirname(path), target)
            out += _parse_file(target, seen, Source(path, loc.line_num, "include %r"
                                                    % stmt.filename))
        else:
            out.append(_Statement(stmt, source))
    return out


def _resolve(value, macros: Dict[str, object], source: Source, depth=0):
    """Replace macros in a gin value (recursively, through lists, tuples and dicts)."""
    if depth > 50:
        raise ConfigError("%s: macro cycle" % source)
    if isinstance(value, Macro):
        name = value.name
        if name not in macros:
            short = name.rpartition("/")[2]
            if short not in macros:
                raise ConfigError("%s: macro %%%s is not defined" % (source, name))
            name = short
        return _resolve(macros[name][0], macros, macros[name][1], depth + 1)
    if isinstance(value, list):
        return [_resolve(v, macros, source, depth) for v in value]
    if isinstance(value, tuple):
        return tuple(_resolve(v, macros, source, depth) for v in value)
    if isinstance(value, dict):
        return {k: _resolve(v, macros, source, depth) for k, v in value.items()}
    return value


def _references(value):
    if isinstance(value, Reference):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _references(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _references(v)


def _check_binding(kind: str, key: str, value, source: Source):
    """The value of one MoE keyword, validated alone so the error names its line."""
    config_cls = _CONFIGS[kind]
    if key not in config_cls.__dataclass_fields__:
        known = ", ".join(config_cls.__dataclass_fields__)
        raise ConfigError("%s: unknown %s key %r (known: %s)" % (source, kind, key, known))
    if isinstance(value, Reference):
        name = value.name.rpartition(".")[2]
        if key == "activation":
            return name
        raise ConfigError("%s: %s.%s = %r: a configurable reference is not a %s value"
                          % (source, kind, key, value, key))
    try:
        config_cls(**{key: value})
    except NamedMeshError as e:
        raise ConfigError("%s: %s" % (source, e)) from None
    return value


def read_gin(path: str) -> PortedConfig:
    """Port a gin file: its MoE layers, mesh, layout, and the bindings it ignores."""
    statements = _parse_file(path, [])
    macros: Dict[str, tuple] = {}
    for s in statements:
        st = s.stmt
        if isinstance(st, config_parser.BindingStatement) and not st.arg_name:
            name = (st.scope + "/" if st.scope else "") + st.selector
            macros[name] = (st.value, s.source)
    ported = PortedConfig(path=path, layers=[])
    class_bindings: Dict[tuple, Dict[str, tuple]] = {}   # (kind, scope) -> key -> (value, src)
    references = []                                      # (kind, scope, source)
    for s in statements:
        st = s.stmt
        if isinstance(st, config_parser.ImportStatement):
            ported.ignored.append(Ignored(s.source, st.format() + " (import: not needed)"))
            continue
        if isinstance(st, config_parser.BlockDeclaration):
            continue
        if not st.arg_name:
            continue  # a macro definition
        value = _resolve(st.value, macros, s.source)
        key = "%s%s.%s" % (st.scope + "/" if st.scope else "", st.selector, st.arg_name)
        source = Source(s.source.file, s.source.line, key)
        kind = moe_kind(st.selector)
        for ref in _references(value):
            ref_scope, ref_selector = ref.scope_and_selector
            ref_kind = moe_kind(ref_selector)
            if ref_kind:
                references.append((ref_kind, ref_scope or st.scope, source))
        if kind:
            checked = _check_binding(kind, st.arg_name, value, source)
            class_bindings.setdefault((kind, st.scope), {})[st.arg_name] = (checked, source)
        elif _RUN_SELECTOR.search(st.selector) and st.arg_name in _MESH_ARGS:
            target = _MESH_ARGS[st.arg_name]
            if isinstance(value, Reference):
                raise ConfigError("%s: %s = %r is computed by mtf at run time; set a literal "
                                  "string (e.g. \"b0:4;b1:8\") or pass --mesh / --layout"
                                  % (source, key, value))
            if target == "mesh_devices":
                if not isinstance(value, (list, tuple)):
                    raise ConfigError("%s: expected a list of device names, got %r"
                                      % (source, value))
                ported.mesh_devices = list(value)
            else:
                if not isinstance(value, str):
                    raise ConfigError("%s: expected a string such as 'b0:4;b1:8', got %r (%s)"
                                      % (source, value, type(value).__name__))
                setattr(ported, target, value)
            ported.sources[target] = source
        elif not any(moe_kind(r.scope_and_selector[1]) for r in _references(value)):
            ported.ignored.append(Ignored(source, "%s = %r" % (key, value)))
        else:
            ported.used.append((source, "layer stack"))
    if not references:  # configured but not listed in a layer stack: one layer per class
        references = [(kind, scope, src) for (kind, scope), b in class_bindings.items()
                      for src in [next(iter(b.values()))[1]]]
    for kind, scope, source in references:
        kwargs, sources = {}, {}
        for s in ("", scope) if scope else ("",):  # class bindings, then the scope's
            for key, (value, src) in class_bindings.get((kind, s), {}).items():
                kwargs[key], sources[key] = value, src
        try:
            _CONFIGS[kind](**kwargs)
        except NamedMeshError as e:
            raise ConfigError("%s: %s" % (source, e)) from None
        ported.layers.append(PortedLayer(kind, kwargs, scope, sources))
    if not ported.layers:
        raise ConfigError("%s: no MoE1D or MoE2D layer is configured (no binding such as "
                          "'MoE1D.num_experts = 16' and no layer stack listing "
                          "@mesh_tensorflow.transformer.moe.MoE1D)" % path)
    ported.check_mesh_and_layout()
    return ported
