"""Build the model of a real gin command line with mtf 0.1.21's own gin code; dump it as JSON.

The oracle for namedmesh's gin reader: for every command of
``tests/data/configs/gin_commands.json`` this parses mtf's defaults.gin, the
``--gin_file`` s and ``--gin_param`` s with gin itself (``parse_config_file`` /
``parse_config_files_and_bindings``, search paths added as main.py adds them),
reads ``utils.run``'s model_type, mesh_shape (evaluating
``@utils.tpu_mesh_shape()`` with mtf's function and ``--logical_cores_per_chip=2``)
and layout_rules, and calls mtf's ``utils.build_model`` exactly as
``tpu_estimator_model_fn`` does.  While the model is built, a profiler hook
records the arguments every layer's (undecorated) ``__init__`` receives, after gin
filled them in.  Nothing is run on a device.

    /tmp/mtf-oracle/bin/python tools/oracle/gin_model_dump.py \
        --commands tests/data/configs/gin_commands.json --out tests/data/configs/oracle

Configurables that only T5 or a fork define (datasets, vocabularies) are registered
as inert stand-ins so gin accepts their bindings; they never take part in the model.
"""

import argparse
import inspect
import json
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mtf_shim  # noqa: E402,F401  (mtf 0.1.21 on TF >= 2.16)

import tensorflow.python.tpu as _tpu  # noqa: E402

for _name in ("tpu_config", "tpu_estimator"):   # utils.py imports them; the dump never uses them
    _m = types.ModuleType("tensorflow.python.tpu." + _name)
    for _attr in ("RunConfig", "TPUConfig", "InputPipelineConfig", "TPUEstimator",
                  "TPUEstimatorSpec"):
        setattr(_m, _attr, type(_attr, (), {}))
    sys.modules["tensorflow.python.tpu." + _name] = _m
    setattr(_tpu, _name, _m)

import importlib  # noqa: E402

import gin  # noqa: E402
from gin import config_parser  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

utils = importlib.import_module("mesh_tensorflow.transformer.utils")
transformer = importlib.import_module("mesh_tensorflow.transformer.transformer")
layers_mod = importlib.import_module("mesh_tensorflow.transformer.transformer_layers")
moe = importlib.import_module("mesh_tensorflow.transformer.moe")
importlib.import_module("mesh_tensorflow.optimize")
importlib.import_module("mesh_tensorflow.transformer.learning_rate_schedules")
importlib.import_module("mesh_tensorflow.transformer.dataset")
importlib.import_module("mesh_tensorflow.transformer.t2t_vocabulary")


def _layer_classes():
    out = {}
    for mod in (layers_mod, moe):
        for name, obj in vars(mod).items():
            if inspect.isclass(obj) and issubclass(obj, transformer.TransformerLayer):
                init = inspect.unwrap(obj.__dict__.get("__init__", object.__init__))
                if hasattr(init, "__code__"):
                    out[init.__code__] = name
    return out


class InitRecorder:
    """Records, per layer object, the arguments each ``__init__`` in its class chain got."""

    def __init__(self):
        self.codes = _layer_classes()
        self.calls = {}

    def __call__(self, frame, event, arg):
        if event == "call" and frame.f_code in self.codes:
            args = inspect.getargvalues(frame)
            values = {a: args.locals[a] for a in args.args if a != "self"}
            if args.keywords:
                values.update(args.locals[args.keywords])
            obj = args.locals.get("self")
            self.calls.setdefault(id(obj), []).append((self.codes[frame.f_code], values))


def _register_unknown(texts):
    """Inert configurables for every selector / reference gin does not know."""
    def known(selector):
        try:
            return bool(gin.config._REGISTRY.matching_selectors(selector))
        except Exception:  # pylint: disable=broad-except
            return False

    class _Delegate(config_parser.ParserDelegate):
        def __init__(self):
            self.refs = []

        def configurable_reference(self, name, evaluate):
            self.refs.append(name.rpartition("/")[2])
            return name

        def macro(self, name):
            return name

    names = []
    for text in texts:
        delegate = _Delegate()
        selectors = []
        for stmt in config_parser.ConfigParser(text, delegate):
            if isinstance(stmt, config_parser.BindingStatement) and stmt.arg_name:
                selectors.append(stmt.selector)
            if isinstance(stmt, config_parser.ImportStatement):
                try:
                    importlib.import_module(stmt.module)
                except ImportError:   # a T5 / fork module: an empty stand-in package chain
                    parts = stmt.module.split(".")
                    for i in range(1, len(parts) + 1):
                        sys.modules.setdefault(".".join(parts[:i]),
                                               types.ModuleType(".".join(parts[:i])))
        names.extend(selectors + delegate.refs)
    # dotted names first, so a short name written elsewhere matches them instead of
    # registering a second configurable
    for selector in sorted(set(names), key=lambda n: -n.count(".")):
        if selector.startswith("gin.") or known(selector):
            continue
        module, _, name = selector.rpartition(".")

        def stand_in(*args, **kwargs):
            return None
        stand_in.__name__ = name
        gin.external_configurable(stand_in, name=name, module=module or None)


def _read(path):
    with open(path) as f:
        return f.read()


def dump_command(cmd, base):
    gin.clear_config(clear_constants=True)
    join = lambda p: p if os.path.isabs(p) else os.path.join(base, p)  # noqa: E731
    search = [join(p) for p in cmd.get("search_paths", [])]
    for prefix in search:
        if prefix not in gin.config._LOCATION_PREFIXES:
            gin.add_config_file_search_path(prefix)
    cwd = os.getcwd()
    os.chdir(base)   # the commands' relative --gin_file paths are relative to the data tree
    try:
        files = [cmd["mtf_defaults"]] + cmd["files"]
        texts = []
        for f in files:
            path = f if os.path.exists(f) else next(os.path.join(p, f) for p in search
                                                     if os.path.exists(os.path.join(p, f)))
            texts.append(_read(path))
            for line in texts[-1].splitlines():   # included files too
                if line.startswith("include "):
                    inc = line.split("'")[1] if "'" in line else line.split('"')[1]
                    texts.append(_read(next(os.path.join(p, inc) for p in [""] + search
                                            if os.path.exists(os.path.join(p, inc)))))
        texts += cmd.get("params", [])
        _register_unknown(texts)
        gin.parse_config_file(cmd["mtf_defaults"])
        gin.parse_config_files_and_bindings(cmd["files"], cmd.get("params", []),
                                            finalize_config=False)
        q = lambda name, default=None: _query("utils.run." + name, default)  # noqa: E731
        model_type = q("model_type", "bitransformer")
        mesh_shape = q("mesh_shape")
        if isinstance(mesh_shape, gin.config.ConfigurableReference):
            mesh_shape = mesh_shape.scoped_configurable_fn()
        layout = q("layout_rules")
        import mesh_tensorflow as mtf
        mesh_shape = mtf.convert_to_shape(mesh_shape)
        recorder = InitRecorder()
        sys.setprofile(recorder)
        try:
            model = utils.build_model(model_type=model_type, input_vocab_size=32128,
                                      output_vocab_size=32128, layout_rules=layout,
                                      mesh_shape=mesh_shape)
        finally:
            sys.setprofile(None)
    finally:
        os.chdir(cwd)
    units = [model.encoder, model.decoder] if hasattr(model, "encoder") else [model]
    out = {"model_type": model_type,
           "mesh_shape": ";".join("%s:%d" % (d.name, d.size) for d in mesh_shape.dims),
           "layout": layout,
           "kind": type(model).__name__,
           "shared_embedding": getattr(model, "shared_embedding", None),
           "stacks": []}
    for unit in units:
        stack = unit.layer_stack
        entry = {
            "name": unit.name, "d_model": unit.model_dim.size,
            "max_length": unit.max_length_dim.size if unit.max_length_dim else None,
            "positional_embedding": unit.max_length_dim is not None,
            "shared_embedding_and_softmax_weights": unit.shared_embedding_and_softmax_weights,
            "autoregressive": unit.autoregressive, "z_loss": unit.z_loss,
            "label_smoothing": unit.label_smoothing,
            "dropout_rate": getattr(stack, "dropout_rate", None),
            "norm_epsilon": getattr(stack, "norm_epsilon", None),
            "sublayers": [[f.__name__ for f in getattr(stack, "_sublayers_" + k)]
                          for k in ("initial", "per_layer", "final")],
            "sublayer_bindings": {f.__name__: gin.get_bindings(f) for k in
                                  ("initial", "per_layer", "final")
                                  for f in getattr(stack, "_sublayers_" + k)},
            "layers": [],
        }
        for layer in stack.layers:
            calls = recorder.calls.get(id(layer), [])
            merged = {}
            for _, values in calls:            # subclass first, base class last: base wins
                merged.update(values)
            entry["layers"].append({"kind": type(layer).__name__, "name": layer.name,
                                    "kwargs": _jsonable(merged)})
        out["stacks"].append(entry)
    return out


def _query(name, default=None):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return default


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (int, float, str, bool)) or x is None:
        return x
    return getattr(x, "__name__", repr(x))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    tf.flags.FLAGS(["gin_model_dump"])   # mtf's tpu_mesh_shape reads logical_cores_per_chip
    with open(args.commands) as f:
        commands = json.load(f)["commands"]
    base = os.path.dirname(os.path.abspath(args.commands))
    os.makedirs(args.out, exist_ok=True)
    for name, cmd in commands.items():
        if args.only and name not in args.only:
            continue
        result = dump_command(cmd, base)
        with open(os.path.join(args.out, name + ".json"), "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
        print(name, result["kind"], result["mesh_shape"],
              [len(s["layers"]) for s in result["stacks"]])


if __name__ == "__main__":
    main()
