"""namedmesh: mesh-tensorflow's named-dimension programming model on TensorFlow 2.

    import namedmesh as nm
    mesh = nm.Mesh("b0:2", "batch:b0")
    x = nm.import_tf_tensor(mesh, tf.ones([4, 8]), "batch:4;d_model:8")
    y = nm.reduce_sum(x, reduced_dim="batch")     # one all-reduce over b0
"""

from namedmesh._quiet import quiet_tensorflow_for_the_command

quiet_tensorflow_for_the_command()

from namedmesh.core.contraction import (einsum, matmul, reduce_all, reduce_any, reduce_max,
                                        reduce_mean, reduce_min, reduce_sum)
from namedmesh.core.control import recompute_grad, while_loop
from namedmesh.core.conv import (conv2d_backprop_filter, conv2d_backprop_input,
                                 conv2d_transpose_backprop_filter, conv2d_transpose_backprop_input,
                                 conv2d_transpose_with_filter, conv2d_with_filter,
                                 conv3d_backprop_filter, conv3d_backprop_input,
                                 conv3d_transpose_backprop_filter, conv3d_transpose_backprop_input,
                                 conv3d_transpose_with_filter, conv3d_with_filter)
from namedmesh.core.creation import constant, mtf_range, ones, ones_like, zeros, zeros_like
from namedmesh.core.debugging import (Print, depend, log_variable_sizes, pretty_print_counters,
                                      scalar_summary)
from namedmesh.core.dim_utils import (anonymize, anonymous_shape, combined_dimension,
                                      is_subsequence, transpose_list_of_lists, verify_no_new_dims)
from namedmesh.core.dims import Dimension, Shape, convert_to_dimension, convert_to_shape
from namedmesh.core.elementwise import (abs, add, add_n, broadcast, cast, cos, divide, elu, equal,
                                        exp, floordiv, gelu, greater, greater_equal, identity,
                                        leaky_relu, less, less_equal, log, logical_and,
                                        logical_not, logical_or, maximum, minimum, mod, mtf_abs,
                                        mtf_pow, multiply, negative, not_equal, pow, reciprocal,
                                        relu, rsqrt, selu, sigmoid, sign, silu, sin, softplus,
                                        sqrt, square, squared_relu, stop_gradient, sub, subtract,
                                        swish, tanh, to_bfloat16, to_float, to_int32, where)
from namedmesh.core.function_tables import binary_reduction_fn, pool_fn, reduction_fn
from namedmesh.core.gather import gather
from namedmesh.core.gradients import gradients
from namedmesh.core.mesh_math import (list_product, pnum_to_group, pnum_to_processor_coordinates,
                                      pnum_to_processor_coordinates_nd,
                                      processor_coordinates_to_pnum,
                                      processor_coordinates_to_pnum_map_nd, processor_groups,
                                      tensor_dim_to_mesh_dim_size, tensor_dim_to_size_per_split)
from namedmesh.core.nn import (argmax, cumsum, log_softmax, one_hot, reduce_logsumexp, softmax,
                               top_1)
from namedmesh.core.pooling import (pool, pool_backprop, pool_tensor_1d, reduce_first,
                                    stride_tensor_1d)
from namedmesh.core.random_ops import dropout, random_normal, random_uniform, stateless_dropout
from namedmesh.core.reshape import rename_dimension, replace_dimensions, reshape, transpose
from namedmesh.core.shift import dynamic_shift, halo_exchange, left_halo_exchange, shift
from namedmesh.core.slicewise import (binary_arguments_to_tensors, binary_op_with_broadcasting,
                                      cwise, parallel, slicewise)
from namedmesh.core.slicing import concat, mtf_slice, pad, split, stack, unstack
from namedmesh.core.topk import (nth_largest_element, nth_smallest_element,
                                 sample_with_temperature, top_k)
from namedmesh.core.tensor import (Tensor, export_to_tf_tensor, import_fully_replicated,
                                   import_laid_out_tensor, import_tf_tensor)
from namedmesh.errors import (CollectiveError, ConfigError, FileError, LayoutError, MeshError,
                              NamedMeshError, ShapeError, WrongTypeError)
from namedmesh.layers import VariableStore, dense
from namedmesh.lowering.device_check import check_collectives
from namedmesh.lowering.devices import configure_cpu_devices
from namedmesh.lowering.trace import CollectiveRecord, CollectiveTrace, trace_collectives
from namedmesh.mesh.layout import TensorLayout
from namedmesh.mesh.layout_rules import LayoutRules, convert_to_layout_rules
from namedmesh.mesh.mesh import LayoutWarning, Mesh
from namedmesh.mesh.processor_map import ProcessorMap, collective_rank_order
from namedmesh.mesh.tpu_topology import auto_logical_to_physical, tpu_device_assignment

from namedmesh import moe  # noqa: E402,F401  (namedmesh.moe.MoE1D / MoE2D)
from namedmesh import transformer  # noqa: E402,F401  (the typed whole-model spec)
from namedmesh import porting  # noqa: E402,F401  (legacy gin / hparams / checkpoints)

range = mtf_range  # noqa: A001 - mtf's public name is mtf.range
slice = mtf_slice  # noqa: A001 - mtf's public name is mtf.slice

__version__ = "0.1.0"


def __getattr__(name):
    """``namedmesh.keras`` and ``namedmesh.plain`` load on first use (Keras is a large import)."""
    if name in ("keras", "plain"):
        import importlib
        return importlib.import_module("namedmesh." + name)
    raise AttributeError("module 'namedmesh' has no attribute %r" % (name,))
