"""mtf 0.1.21's own transformer models built from a case of model_cases.py, and called.

Builds the model directly in Python (gin cleared) and records every constructor argument with
the defaults filled in; checks that the real gin files plus the case's bindings build the same
model; calls ``call_simple`` as mtf's ``utils.run`` does, recording the loss parts and the
layer activations mtf computes inside it.
"""
import functools
import importlib
import inspect
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import mtf_shim  # noqa: E402,F401  (makes mesh_tensorflow importable on TF 2.21)
import gin  # noqa: E402
import mesh_tensorflow as mtf  # noqa: E402
from mesh_tensorflow.transformer import moe, transformer  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

from model_cases import DEFAULT_SUBLAYERS, make_ids  # noqa: E402

transformer_layers = importlib.import_module("mesh_tensorflow.transformer.transformer_layers")
tf.disable_v2_behavior()
tf.get_logger().setLevel("ERROR")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO, "tests", "data", "models")
MTF_GIN_DIR = os.path.join(DEFAULT_OUT, "gin", "mtf")  # copies of defaults, lm_moe, bi_moe.gin
LAYER_CLASSES = {
    "SelfAttention": transformer_layers.SelfAttention,
    "EncDecAttention": transformer_layers.EncDecAttention,
    "DenseReluDense": transformer_layers.DenseReluDense,
    "MoE1D": moe.MoE1D,
    "MoE2D": moe.MoE2D,
}
TRAIN, EVAL = "train", "eval"  # the tf.estimator.ModeKeys values mtf's code compares with


def jsonable(value):
    if isinstance(value, mtf.Dimension):
        return {"dim": value.name, "size": value.size}
    if callable(value):
        return getattr(value, "__name__", repr(value))
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    return value


def constructor_arguments(cls, kwargs):
    """Every argument of cls's constructor: the given ones and the defaults of the others."""
    init = inspect.unwrap(cls.__init__)
    bound = inspect.signature(init).bind_partial(None, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    args.pop("self")
    for name, value in list(args.items()):
        if value is gin.REQUIRED:
            raise ValueError("%s.%s is required and was not given" % (cls.__name__, name))
    return args


def constructor_arguments_of_function(fn, kwargs):
    """Every argument of a method (self and its first positional argument left out)."""
    bound = inspect.signature(inspect.unwrap(fn)).bind_partial(None, None, **kwargs)
    bound.apply_defaults()
    args = dict(bound.arguments)
    for k in list(args)[:2]:
        args.pop(k)
    return args


def _keyword_defaults(fn):
    """The defaults of a sublayer function's own arguments (gin is cleared when a case runs)."""
    params = inspect.signature(inspect.unwrap(fn)).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _sublayer(name):
    return getattr(transformer, name)


def make_layer_stack(layers, num_layers, stack_spec, patches):
    """mtf's make_layer_stack over the given block, with the case's LayerStack arguments."""
    if stack_spec["mode"] == "defaults":
        stack_kwargs = {k: [_sublayer(n) for n in v] for k, v in DEFAULT_SUBLAYERS.items()}
        stack_kwargs.update(dropout_rate=None, norm_epsilon=None)
    else:  # legacy: LayerStack picks its own sublayers (layer_norm / final_layer_norm names)
        stack_kwargs = {"dropout_rate": stack_spec["dropout_rate"],
                        "norm_epsilon": stack_spec["norm_epsilon"]}
    block = [[LAYER_CLASSES[name], dict(kwargs)] for name, kwargs in layers]
    stack = transformer.make_layer_stack(
        layers=block, num_layers=num_layers, block_scope=True,
        layer_stack_cls=functools.partial(transformer.LayerStack, **stack_kwargs))
    for layer in stack.layers:
        for attr, value in patches.get(type(layer).__name__ + "._hparams", {}).items():
            setattr(layer._hparams, attr, value)
    record = {
        "class": "LayerStack",
        "make_layer_stack": {"num_layers": num_layers, "block_scope": True},
        "kwargs": jsonable(constructor_arguments(transformer.LayerStack, dict(
            stack_kwargs, layers=None))),
        "sublayers_used": {"initial": [f.__name__ for f in stack._sublayers_initial],
                           "per_layer": [f.__name__ for f in stack._sublayers_per_layer],
                           "final": [f.__name__ for f in stack._sublayers_final]},
        "sublayer_function_defaults": {
            f.__name__: _keyword_defaults(f) for f in (transformer.sublayer_rms_norm,
                                                       transformer.sublayer_dropout)},
        "layers": [{"class": type(layer).__name__, "name": layer.name,
                    "kwargs": jsonable(constructor_arguments(LAYER_CLASSES[name], kwargs)),
                    "patched_hparams": patches.get(type(layer).__name__ + "._hparams")}
                   for layer, (name, kwargs) in zip(stack.layers, layers * num_layers)],
    }
    record["kwargs"].pop("layers")
    return stack, record


def make_unitransformer(spec_kwargs, layer_stack, mesh_shape, layout):
    kwargs = dict(spec_kwargs, layer_stack=layer_stack, layout=layout, mesh_shape=mesh_shape)
    model = transformer.Unitransformer(**kwargs)
    record = jsonable(constructor_arguments(transformer.Unitransformer, kwargs))
    record.pop("layer_stack")
    return model, record


def build_model(case):
    """The case's model built directly in Python (gin cleared): (model, config record)."""
    gin.clear_config()
    layout = case["layout"]
    if case["kind"] == "lm":
        stack, stack_record = make_layer_stack(case["layers"], case["num_layers"],
                                               case["layer_stack"], case["patches"])
        model, record = make_unitransformer(case["unitransformer"], stack, case["mesh_shape"],
                                            layout)
        return model, {"model_class": "Unitransformer", "unitransformer": record,
                       "layer_stack": stack_record}
    parts = {}
    for side, layers in (("encoder", case["encoder_layers"]), ("decoder", case["decoder_layers"])):
        stack, stack_record = make_layer_stack(layers, case["num_layers"], case["layer_stack"],
                                               case["patches"])
        model, record = make_unitransformer(case[side], stack, case["mesh_shape"], layout)
        parts[side] = (model, {"unitransformer": record, "layer_stack": stack_record})
    bi_kwargs = dict(case["bitransformer"])
    model = transformer.Bitransformer(parts["encoder"][0], parts["decoder"][0], **bi_kwargs)
    return model, {"model_class": "Bitransformer",
                   "bitransformer": jsonable(constructor_arguments(
                       transformer.Bitransformer, dict(bi_kwargs, encoder=None, decoder=None))),
                   "encoder": parts["encoder"][1], "decoder": parts["decoder"][1]}


def gin_case_text(name, case):
    lines = ["# -*-Python-*-",
             "# Made by tools/oracle/make_model_goldens.py for the golden case %s." % name,
             "# Parse after: %s (gin/mtf/ holds unchanged copies)."
             % ", ".join(case["gin"]["files"]),
             "# The model type, vocab sizes, mesh and layout are utils.run's arguments; they",
             "# are written here as utils.run bindings for readers of the config.",
             'utils.run.model_type = "%s"' % ("lm" if case["kind"] == "lm" else "bitransformer"),
             'utils.run.mesh_shape = "%s"' % case["mesh_shape"],
             'utils.run.layout_rules = "%s"' % case["layout"],
             "utils.run.vocabulary = None  # vocab size %d (see the case's config)"
             % case["data"]["vocab_size"],
             '# float32 activations, as layouts/single.gin sets for CPU',
             'utils.get_variable_dtype.activation_dtype = "float32"',
             ""]
    return "\n".join(lines + list(case["gin"]["bindings"])) + "\n"


def build_model_from_gin(case, gin_text):
    """The model mtf's gin builds from the gin files and the case's bindings (utils.build_model)."""
    gin.clear_config()
    files = [os.path.join(MTF_GIN_DIR, os.path.basename(f)) for f in case["gin"]["files"]]
    gin.parse_config_files_and_bindings(files, [gin_text], skip_unknown=True)
    try:
        if case["kind"] == "lm":
            return transformer.Unitransformer(
                autoregressive=True, layer_stack=transformer.make_layer_stack(),
                input_vocab_size=case["unitransformer"]["input_vocab_size"],
                output_vocab_size=case["unitransformer"]["output_vocab_size"],
                mesh_shape=case["mesh_shape"], layout=case["layout"])
        return transformer.make_bitransformer(
            input_vocab_size=case["encoder"]["input_vocab_size"],
            output_vocab_size=case["decoder"]["output_vocab_size"],
            mesh_shape=case["mesh_shape"], layout=case["layout"])
    finally:
        gin.clear_config()


def describe(obj):
    """A comparable dump of an mtf model object's state (classes, attributes, layer hparams)."""
    if isinstance(obj, mtf.Dimension):
        return ("Dimension", obj.name, obj.size)
    if isinstance(obj, (list, tuple)):
        return [describe(o) for o in obj]
    if isinstance(obj, dict):
        return {k: describe(v) for k, v in sorted(obj.items())}
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return ("function", obj.__module__, obj.__name__)
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return {"__class__": type(obj).__name__,
                **{k: describe(v) for k, v in sorted(vars(obj).items())}}
    return obj


def _diff(a, b, path=""):
    if type(a) is not type(b):
        return ["%s: %r != %r" % (path, a, b)]
    if isinstance(a, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append("%s.%s: only in %s" % (path, k, "python" if k in a else "gin"))
            else:
                out += _diff(a[k], b[k], "%s.%s" % (path, k))
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return ["%s: %d items != %d items" % (path, len(a), len(b))]
        return sum((_diff(x, y, "%s[%d]" % (path, i)) for i, (x, y) in enumerate(zip(a, b))), [])
    return [] if a == b else ["%s: %r != %r" % (path, a, b)]


def check_gin_builds_the_same_model(case, gin_text):
    py_model, _ = build_model(case)
    gin_model = build_model_from_gin(case, gin_text)
    differences = _diff(describe(py_model), describe(gin_model))
    if differences:
        raise AssertionError("the gin config does not build the case's model:\n  " +
                             "\n  ".join(differences))


def dims_of(tensor):
    return [[d.name, d.size] for d in tensor.shape.dims]


class Recorder(object):
    """Captures what mtf computes inside call_simple.

    The decoder's loss (Unitransformer._compute_loss), each MoE layer's aux loss as it is appended
    to context.losses, and the activations LayerStack.call appends to context.layer_outputs.
    """

    def __init__(self):
        self.model_losses = {}
        self.moe_losses = {}
        self.layer_outputs = {}

    def instrument(self, unitransformer):
        original = unitransformer._compute_loss
        stack_call = unitransformer.layer_stack.call

        def call_stack(context, x):
            y = stack_call(context, x)
            self.layer_outputs[unitransformer.name] = list(context.layer_outputs)
            return y
        unitransformer.layer_stack.call = call_stack

        def compute_loss(context, logits, targets, output_vocab_dim):
            loss = original(context, logits, targets, output_vocab_dim)
            self.model_losses[unitransformer.name] = (loss, logits, targets, output_vocab_dim,
                                                      context)
            return loss
        unitransformer._compute_loss = compute_loss
        for layer in unitransformer.layer_stack.layers:
            if isinstance(layer, (moe.MoE1D, moe.MoE2D)):
                layer.call = self._recording_call(layer.call)

    def _recording_call(self, call):
        def recording_call(context, x, losses=None):
            before = len(context.losses) if context.losses is not None else 0
            y = call(context, x, losses)
            if context.losses is not None:
                (loss,) = context.losses[before:]
                self.moe_losses[tf.get_variable_scope().name] = loss
            return y
        return recording_call


def unitransformers_of(model):
    return [model] if isinstance(model, transformer.Unitransformer) else [model.encoder,
                                                                         model.decoder]


def import_ids(mesh, array, dims):
    return mtf.import_tf_tensor(mesh, tf.constant(array), mtf.Shape(
        [mtf.Dimension(n, s) for n, s in dims]))


def case_data(case, rng):
    """The case's input arrays and which call_simple keyword each goes to."""
    d = case["data"]
    batch_shape = [s for _, s in d["batch_dims"]]
    if case["kind"] == "lm":
        targets, seg, pos = make_ids(rng, batch_shape, d["length"], d["vocab_size"], d["packing"])
        arrays = {"targets": targets}
        if d["packing"] in ("padded", "packed"):
            arrays["sequence_id"] = seg
        if d["packing"] == "packed":
            arrays["position"] = pos
        return arrays
    inputs, iseg, ipos = make_ids(rng, batch_shape, d["inputs_length"], d["vocab_size"],
                                  d["packing"])
    targets, tseg, tpos = make_ids(rng, batch_shape, d["targets_length"], d["vocab_size"],
                                   d["packing"])
    arrays = {"inputs": inputs, "targets": targets}
    if d["packing"] == "packed":
        # packed rows hold the same number of segments in inputs and targets
        arrays.update(encoder_sequence_id=iseg, decoder_sequence_id=tseg,
                      encoder_position=ipos, decoder_position=tpos)
    return arrays


def call_model(model, mesh, case, arrays, mode):
    """model.call_simple the way mtf's utils.run calls it; returns tensors to export."""
    d = case["data"]
    batch = d["batch_dims"]
    if case["kind"] == "lm":
        length = [["length", d["length"]]]
        t = {k: import_ids(mesh, v, batch + length) for k, v in arrays.items()}
        inputs = transformer.autoregressive_inputs(t["targets"], sequence_id=t.get("sequence_id"))
        logits, loss = model.call_simple(
            inputs=inputs, targets=t["targets"], compute_loss=True, mode=mode,
            variable_dtype=mtf.VariableDType(tf.float32),
            sequence_id=t.get("sequence_id"), position=t.get("position"))
        return logits, loss, {"inputs": inputs}
    in_len = [["length", d["inputs_length"]]]
    out_len = [["length", d["targets_length"]]]
    t = {k: import_ids(mesh, v, batch + (in_len if k.startswith(("inputs", "encoder"))
                                         else out_len))
         for k, v in arrays.items()}
    logits, loss = model.call_simple(
        inputs=t["inputs"], targets=t["targets"], compute_loss=True, mode=mode,
        variable_dtype=mtf.VariableDType(tf.float32),
        encoder_sequence_id=t.get("encoder_sequence_id"),
        decoder_sequence_id=t.get("decoder_sequence_id"),
        encoder_position=t.get("encoder_position"), decoder_position=t.get("decoder_position"))
    decoder_sequence_id = t.get("decoder_sequence_id", mtf.minimum(t["targets"], 1))
    decoder_inputs = transformer.autoregressive_inputs(t["targets"],
                                                       sequence_id=decoder_sequence_id)
    return logits, loss, {"decoder_inputs": decoder_inputs}



def build_and_call(case, arrays, mode):
    """In the current TF graph: a new mtf graph and mesh, the case's model with every
    Unitransformer instrumented by a ``Recorder``, called on ``arrays``.  Returns
    ``(graph, mesh, model, recorder, logits, loss, extra)``."""
    graph = mtf.Graph()
    mesh = mtf.Mesh(graph, "mesh")
    model, _ = build_model(case)
    recorder = Recorder()
    for uni in unitransformers_of(model):
        recorder.instrument(uni)
    logits, loss, extra = call_model(model, mesh, case, arrays, mode)
    return graph, mesh, model, recorder, logits, loss, extra

def mesh_impl_for(case):
    mesh_shape = mtf.convert_to_shape(case["mesh_shape"])
    layout = mtf.convert_to_layout_rules(case["layout"])
    return mtf.placement_mesh_impl.PlacementMeshImpl(mesh_shape, layout, [""] * mesh_shape.size)
