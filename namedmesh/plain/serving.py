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

from typing import Callable, Dict, Optional, Sequence

import tensorflow as tf

from namedmesh.core.tensor import Tensor
from namedmesh.errors import MeshError
from namedmesh.mesh.mesh import Mesh
from namedmesh.plain.axes import PlainAxes
from namedmesh.plain.call import PlainCall


class ServingModule(tf.Module):
    """A named program and the modules holding its variables, served on plain tensors.

    Args:
      program: ``program(named_x) -> {name: named Tensor}`` (outputs batch dims first,
        or unsplit values such as a loss).
      modules: the tf.Modules (namedmesh layers) whose variables the program uses;
        they are tracked, so the SavedModel holds their variables.
      input_dims: the input's axis names (see ``PlainAxes``).
      input_shape: the input's plain shape (static).
      mesh: a placement Mesh (default: one device).
      dtype: the input's dtype.
    """

    _UNTRACKED = frozenset(["program", "axes", "plain_call", "mesh", "input_spec", "_doc"])

    def __init__(self, program: Callable[[Tensor], Dict[str, Tensor]], modules: Sequence,
                 input_dims, input_shape, mesh: Optional[Mesh] = None, dtype=tf.float32,
                 name: str = "serving"):
        super().__init__(name=name)
        mesh = mesh if mesh is not None else Mesh(devices=[""])
        if mesh.strategy is not None:
            raise MeshError("ServingModule: mesh %s runs on a tf.distribute strategy; export "
                            "with a placement mesh (or one device) holding the same variables"
                            % mesh.describe())
        self.mesh = mesh
        self.program = program
        self.modules = list(modules)
        self.axes = input_dims if isinstance(input_dims, PlainAxes) else PlainAxes(input_dims)
        self.plain_call = PlainCall(mesh, self.axes)
        self.input_spec = tf.TensorSpec(list(input_shape), tf.as_dtype(dtype), name="x")
        self._doc = None
        self.serve = tf.function(self._serve, input_signature=[self.input_spec],
                                 autograph=False)
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

    def __setattr__(self, name, value):
        if name in self._UNTRACKED:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _serve(self, x):
        outputs = {}

        def named(nx):
            out = self.program(nx)
            if not isinstance(out, dict) or not all(isinstance(v, Tensor) for v in out.values()):
                raise MeshError("ServingModule: the program must return {name: namedmesh "
                                "Tensor}, got %r" % (out,))
            outputs.update(out)
            return out

        result = self.plain_call(named, x, key="serve")
        if self._doc is None:
            self._doc = signature_doc(self.axes, self.axes.shape_of(self.input_spec.shape),
                                      self.input_spec, outputs, result)
        return result

    @property
    def doc(self) -> str:
        """The serving signature's doc (dim names of the input's axes and of each output)."""
        if self._doc is None:
            self.serve.get_concrete_function()
        return self._doc

    def _describe(self):
        return {"doc": tf.constant(self.doc)}

    def save(self, path: str):
        """``tf.saved_model.save`` with the ``serving_default`` and ``describe`` signatures."""
        serve = self.serve.get_concrete_function()
        describe = self.describe.get_concrete_function()
        tf.saved_model.save(self, path, signatures={"serving_default": serve,
                                                    "describe": describe})


def signature_doc(axes: PlainAxes, shape, spec, named_outputs, plain_outputs) -> str:
    """``x: float32 [8, 4, 16] = [outer_batch:2 x batch:4, length:4, d_model:16] -> ...``."""
    k = axes.batch_dims

    def axes_text(dims):
        batch = " x ".join(str(d) for d in dims[:k])
        return "[%s]" % ", ".join([batch] + [str(d) for d in dims[k:]])

    lines = ["x: %s %s = %s" % (spec.dtype.name, list(spec.shape), axes_text(shape.dims))]
    for name, t in named_outputs.items():
        plain = plain_outputs[name]
        if t.shape.ndims == 0:
            text = "a scalar"
        elif t.shape.dims[:k] == shape.dims[:k]:
            text = axes_text(t.shape.dims)
        else:
            text = "[%s]" % ", ".join(str(d) for d in t.shape.dims)
        lines.append("%s: %s %s = %s" % (name, plain.dtype.name, plain.shape.as_list(), text))
    return "\n".join(lines)


__all__ = ["ServingModule", "signature_doc"]
