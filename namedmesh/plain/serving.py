"""SavedModel export of namedmesh modules: a serving signature on plain tensors.

    layer = namedmesh.moe.MoE2D(expert_x=2, expert_y=2, hidden_size=16, group_size=8)
    served = ServingModule(lambda x: {"y": layer(x)[0]}, [layer],
                           input_dims=("batch", "length", "d_model"), input_shape=[8, 4, 16])
    served.save("/tmp/moe2d")       # tf.saved_model.save with the signatures below
    loaded = tf.saved_model.load("/tmp/moe2d")
    y = loaded.signatures["serving_default"](x=plain_x)["y"]

Signatures: ``serving_default`` takes ``x`` (the plain input) and returns the
program's outputs by name, all plain tensors; ``describe`` returns ``{"doc":
...}``, the signature's doc: the input's axes with their dim names and sizes
and each output's dims (a SavedModel signature has no doc field of its own, so
the doc travels as this second signature; ``loaded.describe()`` returns it too).
Named dims have static sizes, so the signature's shapes are fixed.  The
program runs on one device or a placement mesh (a strategy's collectives
belong to the training job, not to the exported graph).
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import tensorflow as tf

from namedmesh.core.module import Module
from namedmesh.core.tensor import Tensor, import_tf_tensor
from namedmesh.errors import MeshError, ShapeError, WrongTypeError
from namedmesh.mesh.mesh import Mesh
from namedmesh.plain.axes import PlainAxes
from namedmesh.plain.call import PlainCall


@dataclass(frozen=True)
class ServedInput:
    """One plain input of a served program.

    Args:
      name: the signature's input name (``x``, ``targets`` ...).
      dims: its axis names (see ``PlainAxes``); every input of a program has the same
        batch dims.
      shape: its plain shape (static).
      dtype: its dtype.
      check: ``check(plain) -> plain`` run on the plain input inside the exported graph
        (e.g. a range assertion), or None.
    """

    name: str
    dims: object
    shape: Sequence[int]
    dtype: tf.DType = tf.float32
    check: Optional[Callable] = None


class _Signature:
    """One signature: its program, inputs (with their ``PlainAxes`` and named shapes) and
    the compiled function."""

    def __init__(self, module, name, program, inputs):
        if not inputs:
            raise ShapeError("ServingModule signature %r: give at least one input" % name)
        self.name = name
        self.program = program
        self.inputs = list(inputs)
        self.axes = [i.dims if isinstance(i.dims, PlainAxes) else PlainAxes(i.dims)
                     for i in self.inputs]
        self.specs = [tf.TensorSpec(list(i.shape), tf.as_dtype(i.dtype), name=i.name)
                      for i in self.inputs]
        self.shapes = [a.shape_of(spec.shape, "input" if len(inputs) == 1 else
                                  "input %r" % spec.name)
                       for a, spec in zip(self.axes, self.specs)]
        batch = self.axes[0].batch_shape(self.shapes[0])
        for i, a, shape in zip(self.inputs[1:], self.axes[1:], self.shapes[1:]):
            if a.batch_shape(shape) != batch:
                raise ShapeError("ServingModule signature %r: input %r has batch dims %s, the "
                                 "first input %r has %s" % (name, i.name, a.batch_shape(shape),
                                                            self.inputs[0].name, batch))
        self.plain_call = PlainCall(module.mesh, self.axes[0])
        self.doc = None
        self.function = tf.function(lambda *xs: self.run(module.mesh, *xs),
                                    input_signature=self.specs, autograph=False)

    def run(self, mesh, *plain):
        # a loaded signature does not check its inputs' shapes: the graph does (EnsureShape)
        plain = [tf.ensure_shape(x, spec.shape) for x, spec in zip(plain, self.specs)]
        plain = [i.check(x) if i.check is not None else x for i, x in zip(self.inputs, plain)]
        outputs = {}

        def named(first, *rest):
            named_inputs = [first] + [import_tf_tensor(mesh, tf.reshape(x, shape.sizes), shape)
                                      for x, shape in zip(rest, self.shapes[1:])]
            out = self.program(*named_inputs)
            if not isinstance(out, dict) or not all(isinstance(v, Tensor) for v in out.values()):
                raise MeshError("ServingModule: the program must return {name: namedmesh "
                                "Tensor}, got %r" % (out,))
            outputs.update(out)
            return out

        result = self.plain_call(named, plain[0], *plain[1:], key="serve_" + self.name)
        if self.doc is None:
            self.doc = signature_doc(list(zip(self.axes, self.shapes, self.specs)), outputs,
                                     result)
        return result

    def checked(self, args, kwargs) -> List[tf.Tensor]:
        """The call's inputs by the signature's order, checked against their specs: a
        missing or unknown input, a wrong rank or size, or a dtype of another kind is an
        error naming the input (integers of another width are cast)."""
        names = [i.name for i in self.inputs]
        if len(args) > len(names):
            raise ShapeError("signature %r takes %d inputs (%s), got %d"
                             % (self.name, len(names), ", ".join(names), len(args)))
        given = dict(zip(names, args))
        for key, value in kwargs.items():
            if key not in names or key in given:
                raise ShapeError("signature %r: %s input %r (its inputs: %s)"
                                 % (self.name, "unknown" if key not in names else "repeated",
                                    key, ", ".join(names)))
            given[key] = value
        missing = [n for n in names if n not in given]
        if missing:
            raise ShapeError("signature %r: input %s missing (its inputs: %s)"
                             % (self.name, ", ".join(repr(n) for n in missing), ", ".join(names)))
        out = []
        for i, spec, axes in zip(self.inputs, self.specs, self.axes):
            value = tf.convert_to_tensor(given[i.name])
            if value.dtype != spec.dtype:
                same_kind = (value.dtype.is_integer and spec.dtype.is_integer) or \
                    (value.dtype.is_floating and spec.dtype.is_floating)
                if not same_kind:
                    raise WrongTypeError("signature %r: input %r must be %s, got %s"
                                         % (self.name, i.name, spec.dtype.name,
                                            value.dtype.name))
                value = tf.cast(value, spec.dtype)
            if value.shape.as_list() != spec.shape.as_list():
                raise ShapeError("signature %r: input %r has shape %s; expected %s = %s"
                                 % (self.name, i.name, value.shape.as_list(),
                                    spec.shape.as_list(), axes_text(axes, axes.shape_of(
                                        spec.shape))))
            out.append(value)
        return out


class ServingModule(Module):
    """Named programs and the modules holding their variables, served on plain tensors.

    Args:
      program: ``program(named_x) -> {name: named Tensor}`` (outputs batch dims first,
        or unsplit values such as a loss): the ``serving_default`` signature.
      modules: the tf.Modules (namedmesh layers, a ``TransformerModel``) whose variables
        the programs use; they are tracked, so the SavedModel holds their variables.
      input_dims: the input's axis names (see ``PlainAxes``).
      input_shape: the input's plain shape (static).
      mesh: a placement Mesh (default: one device).
      dtype: the input's dtype.
      inputs: instead of ``input_dims``, ``input_shape`` and ``dtype``: the program's
        inputs, a list of ``ServedInput`` (the program takes them in this order).

    ``add_signature`` adds more signatures; ``served(...)`` calls one from Python with
    its inputs checked (errors name the input).
    """

    _UNTRACKED = frozenset(["program", "axes", "plain_call", "mesh", "input_spec",
                            "_signatures"])

    def __init__(self, program: Callable[..., Dict[str, Tensor]], modules: Sequence,
                 input_dims=None, input_shape=None, mesh: Optional[Mesh] = None,
                 dtype=tf.float32, name: str = "serving",
                 inputs: Optional[Sequence[ServedInput]] = None):
        super().__init__(name=name)
        mesh = mesh if mesh is not None else Mesh(devices=[""])
        if mesh.strategy is not None:
            raise MeshError("ServingModule: mesh %s runs on a tf.distribute strategy; export "
                            "with a placement mesh (or one device) holding the same variables"
                            % mesh.describe())
        if inputs is None:
            if input_dims is None or input_shape is None:
                raise ShapeError("ServingModule: give input_dims and input_shape, or inputs")
            inputs = [ServedInput("x", input_dims, list(input_shape), dtype)]
        self.mesh = mesh
        self.program = program
        self.modules = list(modules)
        self._signatures: Dict[str, _Signature] = {}
        default = self.add_signature("serving_default", program, inputs)
        self.axes = default.axes[0]
        self.plain_call = default.plain_call
        self.input_spec = default.specs[0]
        self.serve = default.function
        self.describe = tf.function(self._describe, input_signature=[], autograph=False)

    @classmethod
    def for_layer(cls, layer, input_dims, input_shape, mesh: Optional[Mesh] = None,
                  dtype=tf.float32, name: str = "serving") -> "ServingModule":
        """Serve one namedmesh layer: outputs ``y`` (and ``aux_loss`` for the MoE layers,
        called in eval mode)."""
        def program(x):
            out = layer(x)
            if isinstance(out, tuple):
                return {"y": out[0], "aux_loss": out[1]}
            return {"y": out}
        return cls(program, [layer], input_dims, input_shape, mesh=mesh, dtype=dtype, name=name)

    def add_signature(self, name: str, program: Callable[..., Dict[str, Tensor]],
                      inputs: Sequence[ServedInput]) -> "_Signature":
        """Serve ``program(*named_inputs) -> {name: named Tensor}`` as signature ``name``."""
        if not isinstance(name, str) or not name.isidentifier() or name == "describe" or \
                name in self._signatures:
            raise ShapeError("ServingModule: signature name %r is taken or not an identifier"
                             % (name,))
        signature = _Signature(self, name, program, inputs)
        self._signatures[name] = signature
        return signature

    @property
    def signature_names(self) -> List[str]:
        return list(self._signatures)

    def __call__(self, *args, signature: str = "serving_default", **kwargs):
        """Call signature ``signature`` from Python on plain values (by position or by input
        name), checked first; returns its outputs by name."""
        sig = self._signatures.get(signature)
        if sig is None:
            raise ShapeError("ServingModule: no signature %r (it has %s)"
                             % (signature, ", ".join(self._signatures)))
        return sig.function(*sig.checked(args, kwargs))

    @property
    def doc(self) -> str:
        """The serving signature's doc (dim names of the input's axes and of each output)."""
        return self.doc_of("serving_default")

    def doc_of(self, signature: str) -> str:
        sig = self._signatures[signature]
        if sig.doc is None:
            sig.function.get_concrete_function()
        return sig.doc

    def _describe(self):
        out = {"doc": tf.constant(self.doc)}
        out.update({name: tf.constant(self.doc_of(name)) for name in self._signatures})
        return out

    def save(self, path: str):
        """``tf.saved_model.save`` with every signature (``serving_default`` first) and
        ``describe``, which returns ``{"doc": serving_default's doc, <signature>: its doc}``."""
        signatures = {name: sig.function.get_concrete_function()
                      for name, sig in self._signatures.items()}
        signatures["describe"] = self.describe.get_concrete_function()
        tf.saved_model.save(self, path, signatures=signatures)


def axes_text(axes: PlainAxes, shape) -> str:
    """``[outer_batch:2 x batch:4, length:4, d_model:8]``: a named shape by plain axis."""
    k = axes.batch_dims
    batch = " x ".join(str(d) for d in shape.dims[:k])
    return "[%s]" % ", ".join([batch] + [str(d) for d in shape.dims[k:]])


def signature_doc(inputs, named_outputs, plain_outputs) -> str:
    """``x: float32 [8, 4, 16] = [outer_batch:2 x batch:4, length:4, d_model:16]``, one line
    per input (``inputs``: ``[(PlainAxes, named Shape, TensorSpec)]``) and per output."""
    axes, shape, _ = inputs[0]
    k = axes.batch_dims
    lines = ["%s: %s %s = %s" % (spec.name, spec.dtype.name, list(spec.shape),
                                 axes_text(a, named)) for a, named, spec in inputs]
    for name, t in named_outputs.items():
        plain = plain_outputs[name]
        if t.shape.ndims == 0:
            text = "a scalar"
        elif t.shape.dims[:k] == shape.dims[:k]:
            text = axes_text(axes, t.shape)
        else:
            text = "[%s]" % ", ".join(str(d) for d in t.shape.dims)
        lines.append("%s: %s %s = %s" % (name, plain.dtype.name, plain.shape.as_list(), text))
    return "\n".join(lines)


__all__ = ["ServingModule", "ServedInput", "signature_doc"]
