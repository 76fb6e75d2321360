"""gin's semantics for reading a legacy config, on gin's own parser and selector matching.

What gin does, and this module does the same way (``gin/config.py`` of
gin-config 0.5, the version mtf and T5 ran with):

* statements come from ``gin.config_parser`` (files, ``include``, and the
  ``--gin_param`` strings of a command line, parsed after the files);
* a file name that is not absolute is looked up in the working directory and
  then in each search path (``gin.add_config_file_search_path``, mtf's and
  T5's ``--gin_location_prefix``), for top-level files and ``include`` alike:
  never beside the including file;
* a binding is keyed by (scope, configurable, parameter) and the last one wins;
  the earlier ones are kept only to be reported as overridden;
* selectors match the complete names of configurables as gin's ``SelectorMap``
  matches them (``moe.MoE1D`` is ``mesh_tensorflow.transformer.moe.MoE1D``);
  a parameter the configurable does not have is an error, as in gin;
* values stay unevaluated until the model reads them: a macro (``%d_model``)
  or a reference (``@fn``, ``@scope/fn``, ``@fn()``) is evaluated at the use,
  in the scope of the use (``@scope/fn`` replaces the active scopes); a
  configurable called in scopes ``[a, b]`` takes the bindings of scope ``""``,
  then ``a``, then ``a/b``, and explicit arguments of its caller win.

Every binding records who read it, so the report can list what was read,
what was ignored (with file and line) and which values came from defaults.
"""

import os
import tokenize
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from gin import config_parser

from namedmesh.errors import ConfigError, FileError, WrongTypeError
from namedmesh.porting.mtf_catalog import MTF, REQUIRED, Catalog, Configurable
from namedmesh.porting.ported import Source

MACRO = "gin.macro"


class Macro:
    """``%name`` in a gin value (``%scope/name`` for a scoped macro)."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "%" + self.name


class Reference:
    """``@name`` or ``@name()`` in a gin value, as written."""

    def __init__(self, name, evaluate):
        self.name = name
        self.evaluate = evaluate

    @property
    def scopes(self) -> List[str]:
        return self.name.split("/")[:-1]

    @property
    def selector(self) -> str:
        return self.name.rpartition("/")[2]

    def __repr__(self):
        return "@" + self.name + ("()" if self.evaluate else "")


class _Delegate(config_parser.ParserDelegate):
    def configurable_reference(self, scoped_configurable_name, evaluate):
        return Reference(scoped_configurable_name, evaluate)

    def macro(self, macro_name):
        return Macro(macro_name)


@dataclass
class Binding:
    """``scope/selector.arg = value`` at ``source``; ``configurable`` is None when the
    selector names nothing namedmesh reads (an optimizer, a dataset, ...)."""

    scope: str
    selector: str
    arg: str
    value: Any
    source: Source
    configurable: Optional[Configurable]
    overridden_by: Optional["Binding"] = None
    read_by: List[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        if self.selector == MACRO:
            return "%s = %r" % (self.scope, self.value)
        return "%s%s.%s = %r" % (self.scope + "/" if self.scope else "", self.selector,
                                 self.arg, self.value)

    @property
    def key(self) -> Tuple[str, str, str]:
        name = self.configurable.name if self.configurable is not None else self.selector
        return self.scope, name, self.arg


@dataclass
class RefValue:
    """An unevaluated reference as a value: a configurable (or an unknown name), with the
    scopes it was written with."""

    configurable: Optional[Configurable]
    name: str
    scopes: List[str]
    source: Source

    @property
    def short(self) -> str:
        return self.configurable.short if self.configurable else self.name.rpartition(".")[2]

    def __repr__(self):
        return "@" + "/".join(self.scopes + [self.name])


@dataclass
class Value:
    """A value read for a parameter, and where it came from: a binding, the caller's
    explicit argument (``explicit`` says who), or the configurable's default."""

    value: Any
    binding: Optional[Binding] = None
    explicit: Optional[str] = None

    @property
    def is_default(self) -> bool:
        return self.binding is None and self.explicit is None

    @property
    def origin(self) -> str:
        if self.binding is not None:
            return str(self.binding.source.where)
        return self.explicit if self.explicit is not None else "default"


class MissingValue(ConfigError):
    """A parameter gin marks REQUIRED has no binding and no caller argument."""

    def __init__(self, configurable: str, arg: str, scope: Sequence[str]):
        self.configurable, self.arg, self.scope = configurable, arg, list(scope)
        where = "/".join(self.scope)
        super().__init__("%s%s.%s is required and no binding sets it"
                         % (where + "/" if where else "", configurable, arg))


def text_line_of(path: str, offset: int) -> int:
    """The 1-based line of byte ``offset`` in the file ``path``."""
    with open(path, "rb") as f:
        return f.read(offset).count(b"\n") + 1


def unclosed_bracket(text: str):
    """``(bracket, line)`` of the first bracket of ``text`` that is never closed, skipping
    strings and comments; None if every bracket closes."""
    stack, quote = [], None
    for number, line in enumerate(text.splitlines(), 1):
        i = 0
        while i < len(line):
            ch = line[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                break
            elif ch in "([{":
                stack.append((ch, number))
            elif ch in ")]}" and stack:
                stack.pop()
            i += 1
        quote = None   # gin strings do not span lines
    return stack[0] if stack else None


class GinConfig:
    """The bindings of gin files and ``--gin_param`` strings, read lazily as gin does."""

    def __init__(self, search_paths: Sequence[str] = (), catalog: Catalog = MTF,
                 evaluators: Optional[Dict[str, Callable]] = None):
        self.catalog = catalog
        self.search_paths = [""] + [p for p in search_paths]
        self.evaluators = dict(evaluators or {})   # complete name -> fn(config, scope, source)
        self.history: List[Binding] = []
        self.imports: List[Tuple[Source, str]] = []
        self.files: List[str] = []
        self._current: Dict[Tuple[str, str, str], Binding] = {}
        self._by_scope: Dict[Tuple[str, str], Dict[str, Binding]] = {}

    # -- reading ---------------------------------------------------------------------------
    def find_file(self, name: str, include_from: Optional[Source] = None) -> str:
        """The path gin opens for ``name``: absolute as is, else the first of the working
        directory and the search paths that has it."""
        if not isinstance(name, str) or not name:
            raise WrongTypeError("a gin file name must be a non-empty string, got %r" % (name,))
        prefixes = [""] if os.path.isabs(name) else self.search_paths
        where = "%s: " % include_from if include_from else ""
        for prefix in prefixes:
            path = os.path.join(prefix, name)
            if os.path.isfile(path):
                return path
            if os.path.isdir(path):
                raise FileError("%sgin file %r is a directory, not a file" % (where, path))
        searched = ", ".join(repr(p or ".") for p in prefixes)
        raise FileError("%sgin file %r not found (gin looks in the working directory and "
                          "the search paths, not beside the including file; searched %s; add "
                          "one with --gin_location_prefix)" % (where, name, searched))

    def parse_file(self, name: str, include_from: Optional[Source] = None,
                   _stack: Tuple[str, ...] = ()):
        path = self.find_file(name, include_from)
        real = os.path.realpath(path)
        if real in _stack:
            raise ConfigError("%s: include cycle through %r" % (include_from, name))
        self.files.append(path)
        try:
            with open(path) as f:
                text = f.read()
        except UnicodeDecodeError as e:
            line = text_line_of(path, e.start)
            raise FileError("%s: cannot read gin file %r: it is not UTF-8 text (byte 0x%02x at "
                            "line %d)" % (include_from or path, name, e.object[e.start], line)
                            ) from None
        except OSError as e:
            raise FileError("%s: cannot read gin file %r: %s"
                            % (include_from or path, name, e.strerror or e)) from None
        for stmt in self._statements(text, path):
            source = Source(path, stmt.location.line_num)
            if isinstance(stmt, config_parser.IncludeStatement):
                self.parse_file(stmt.filename, Source(path, stmt.location.line_num,
                                                      "include %r" % stmt.filename),
                                _stack + (real,))
            else:
                self._add(stmt, source)

    def parse_param(self, text: str, origin: str):
        """One ``--gin_param`` string; ``origin`` names it in messages (``--gin_param[2]``)."""
        for stmt in self._statements(text, origin):
            source = Source(origin, 0, text.strip())
            if isinstance(stmt, config_parser.IncludeStatement):
                self.parse_file(stmt.filename, source)
            else:
                self._add(stmt, source)

    def _statements(self, text: str, origin: str):
        def where(line):
            return "%s:%d" % (origin, line) if line and not origin.startswith("--") else origin

        try:
            return list(config_parser.ConfigParser(text, _Delegate()))
        except SyntaxError as e:
            line = getattr(e, "lineno", 0) or 0
            detail = (e.msg or "").splitlines()[0] if e.msg else "invalid syntax"
            if "malformed node or string" in detail:
                lines = text.splitlines()
                statement = lines[line - 1].strip() if 0 < line <= len(lines) else text.strip()
                detail = ("the value of %r is not a Python literal (number, string, list, dict, "
                          "True/False/None), a @reference or a %%MACRO" % statement)
            raise ConfigError("%s: gin syntax error: %s" % (where(line), detail)) from None
        except tokenize.TokenError as e:   # gin's tokenizer: an unclosed bracket or string
            opened = unclosed_bracket(text)
            if opened is None:
                raise ConfigError("%s: gin syntax error: %s" % (where(0), e.args[0])) from None
            char, line = opened
            raise ConfigError("%s: gin syntax error: %r opened here is never closed (the end of "
                              "the %s came first)" % (where(line), char, "parameter" if
                                                      origin.startswith("--") else "file")
                              ) from None

    def _add(self, stmt, source: Source):
        if isinstance(stmt, config_parser.ImportStatement):
            self.imports.append((source, stmt.format()))
            return
        if isinstance(stmt, config_parser.BlockDeclaration):
            return
        if not stmt.arg_name:   # a macro: gin binds it as gin.macro.value in its own scope
            name = (stmt.scope + "/" if stmt.scope else "") + stmt.selector
            binding = Binding(name, MACRO, "value", stmt.value, source.with_key(name), None)
        else:
            configurable, matches = self.catalog.resolve(stmt.selector)
            key = "%s%s.%s" % (stmt.scope + "/" if stmt.scope else "", stmt.selector,
                               stmt.arg_name)
            if configurable is None and len(matches) > 1:
                raise ConfigError("%s: ambiguous selector %r in %s (it matches %s)"
                                  % (source, stmt.selector, key, ", ".join(matches)))
            if configurable is not None and configurable.params is not None and \
                    stmt.arg_name not in configurable.params and not configurable.accepts_kwargs:
                raise ConfigError("%s: unknown parameter %r of %s (it has: %s)"
                                  % (source.with_key(key), stmt.arg_name, configurable.short,
                                     ", ".join(configurable.params)))
            binding = Binding(stmt.scope, stmt.selector, stmt.arg_name, stmt.value,
                              source.with_key(key), configurable)
        previous = self._current.get(binding.key)
        if previous is not None:
            previous.overridden_by = binding
        self._current[binding.key] = binding
        scope, name, arg = binding.key
        self._by_scope.setdefault((scope, name), {})[arg] = binding
        self.history.append(binding)

    # -- evaluating ------------------------------------------------------------------------
    def bindings_for(self, name: str, scope: Sequence[str]) -> Dict[str, Binding]:
        """gin's ``_get_bindings``: scope ``""``, then each prefix of ``scope``."""
        out: Dict[str, Binding] = {}
        for i in range(len(scope) + 1):
            out.update(self._by_scope.get(("/".join(scope[:i]), name), {}))
        return out

    def call(self, configurable: Configurable, scope: Sequence[str],
             explicit: Optional[Dict[str, Value]] = None, only: Optional[Sequence[str]] = None,
             who: str = "", required: bool = True) -> Dict[str, Value]:
        """The parameter values a call of ``configurable`` in ``scope`` receives: the caller's
        ``explicit`` ones, then bindings, then defaults.  ``only`` limits evaluation to the
        parameters the model needs (gin would evaluate all; the others stay unread)."""
        explicit = dict(explicit or {})
        bound = self.bindings_for(configurable.name, scope)
        if only is not None:
            names = list(only)
        else:
            names = list(configurable.params or {})
            names += [a for a in list(bound) + list(explicit) if a not in names]
        who = who or "/".join(list(scope) + [configurable.short])
        out: Dict[str, Value] = {}
        for arg in names:
            if arg in explicit:
                out[arg] = explicit[arg]
            elif arg in bound:
                b = bound[arg]
                b.read_by.append(who)
                out[arg] = Value(self.evaluate(b.value, scope, b.source), b)
            else:
                default = (configurable.params or {}).get(arg, REQUIRED)
                if default is REQUIRED:
                    if not required:
                        continue
                    raise MissingValue(configurable.short, arg, scope)
                out[arg] = Value(default)
        return out

    def evaluate(self, value, scope: Sequence[str], source: Source, depth: int = 0):
        """A gin value with its macros and evaluated references resolved now, in ``scope``."""
        if depth > 50:
            raise ConfigError("%s: macro or reference cycle" % source)
        if isinstance(value, Macro):
            scopes = value.name.split("/")
            binding = self.bindings_for(MACRO, scopes).get("value")
            if binding is None:
                raise ConfigError("%s: macro %%%s is not defined" % (source, value.name))
            binding.read_by.append("%%%s at %s" % (value.name, source.where))
            return self.evaluate(binding.value, scopes, binding.source, depth + 1)
        if isinstance(value, Reference):
            configurable, matches = self.catalog.resolve(value.selector)
            if configurable is None and len(matches) > 1:
                raise ConfigError("%s: ambiguous reference %r (it matches %s)"
                                  % (source, value, ", ".join(matches)))
            if not value.evaluate:
                return RefValue(configurable, configurable.name if configurable else
                                value.selector, value.scopes, source)
            fn = self.evaluators.get(configurable.name) if configurable else None
            if fn is None:
                raise ConfigError("%s: %r is computed by code namedmesh does not run; expected "
                                  "a literal value here" % (source, value))
            return fn(self, value.scopes or list(scope), source)
        if isinstance(value, list):
            return [self.evaluate(v, scope, source, depth) for v in value]
        if isinstance(value, tuple):
            return tuple(self.evaluate(v, scope, source, depth) for v in value)
        if isinstance(value, dict):
            return {k: self.evaluate(v, scope, source, depth) for k, v in value.items()}
        return value

    # -- reporting -------------------------------------------------------------------------
    def read_bindings(self) -> List[Binding]:
        return [b for b in self.history if b.read_by]

    def unread_bindings(self) -> List[Binding]:
        return [b for b in self.history if not b.read_by]
