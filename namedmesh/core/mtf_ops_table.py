"""mtf 0.1.21's ``ops.py``, function by function: the namedmesh name and what differs.

Every public module-level function of mtf's ``mesh_tensorflow/ops.py`` (the
list, read from mtf's source, is ``tests/data/mtf_ops/public_api.json``) has a
row: ``(mtf name, namedmesh name or None, note)``.  A function is *provided*
when it exists as ``namedmesh.<name>`` (``tests/test_ops_coverage.py`` checks
that every named one does, with mtf's parameters); the note says where it
goes beyond mtf or differs, and for the rest why it is left out.  The table in
``docs/named_dims.md`` is ``markdown_table()`` (``python -m
namedmesh.core.mtf_ops_table`` prints it).
"""

from namedmesh.core import coverage_tables

SPLIT_GATHERED = "along a split dim (which mtf refuses) one all-gather, then each keeps its piece"

OPS = [
    ("convert_to_dimension", "convert_to_dimension",
     "also `'name:size'`; a non-pair raises a TypeError, as in mtf"),
    ("convert_to_shape", "convert_to_shape", ""),
    ("convert_to_layout_rules", "convert_to_layout_rules",
     "also a dict; `{}`, `[]`, `''` are empty"),
    ("compatible_lazy_allreduce_sums", None,
     "mtf's lowering internals (it delays all-reduces in its graph); namedmesh lowers each op "
     "when it is called, so there is nothing lazy to combine"),
    ("convert_args_to_laid_out_tensors", None,
     "mtf's lowering internals (LaidOutTensor objects); namedmesh slices are plain TF tensors"),
    ("slicewise", "slicewise",
     "dims not in `splittable_dims` are gathered instead of refused; mtf's `grad_function(op, dy)` "
     "works, on named Tensors"),
    ("cwise", "cwise", ""),
    ("identity", "identity", ""),
    ("sin", "sin", ""),
    ("cos", "cos", ""),
    ("square", "square", ""),
    ("sqrt", "sqrt", ""),
    ("rsqrt", "rsqrt", ""),
    ("log", "log", ""),
    ("exp", "exp", ""),
    ("sigmoid", "sigmoid", ""),
    ("tanh", "tanh", ""),
    ("mtf_pow", "mtf_pow",
     "also `pow`; `tf.pow` where mtf computes `exp(log(x) * y)` (NaN for x < 0), equal for x > 0"),
    ("negative", "negative", ""),
    ("logical_not", "logical_not", ""),
    ("swish", "swish", "also `silu`"),
    ("gelu", "gelu", "the tanh approximation, as mtf"),
    ("elu", "elu", ""),
    ("selu", "selu", ""),
    ("softplus", "softplus", ""),
    ("reciprocal", "reciprocal", ""),
    ("relu", "relu", ""),
    ("squared_relu", "squared_relu", ""),
    ("leaky_relu", "leaky_relu", ""),
    ("sign", "sign", "no gradient, as mtf"),
    ("mtf_abs", "mtf_abs", "also `abs`"),
    ("cast", "cast", ""),
    ("to_float", "to_float", ""),
    ("to_bfloat16", "to_bfloat16", ""),
    ("to_int32", "to_int32", ""),
    ("binary_arguments_to_tensors", "binary_arguments_to_tensors", ""),
    ("binary_op_with_broadcasting", "binary_op_with_broadcasting", ""),
    ("less", "less", ""),
    ("greater", "greater", ""),
    ("less_equal", "less_equal", ""),
    ("greater_equal", "greater_equal", ""),
    ("equal", "equal", ""),
    ("not_equal", "not_equal", ""),
    ("logical_and", "logical_and", ""),
    ("logical_or", "logical_or", ""),
    ("floordiv", "floordiv", "also `x // y`"),
    ("mod", "mod", "also `x % y`"),
    ("minimum", "minimum", ""),
    ("maximum", "maximum", ""),
    ("broadcast", "broadcast", ""),
    ("pool_backprop", "pool_backprop", "the forward op is `pool` (mtf's `PoolOperation`)"),
    ("concat", "concat", SPLIT_GATHERED + "; the other dims may come in any order"),
    ("split", "split", SPLIT_GATHERED),
    ("stack", "stack", "the new dim may be split (mtf refuses)"),
    ("unstack", "unstack", SPLIT_GATHERED),
    ("cumsum", "cumsum",
     "also `reverse=`; a split dim costs an all-gather of per-processor totals (mtf: an "
     "all-reduce of the whole tensor)"),
    ("conv2d_backprop_input", "conv2d_backprop_input", "split spatial dims are gathered"),
    ("conv2d_backprop_filter", "conv2d_backprop_filter", "split spatial dims are gathered"),
    ("conv3d_backprop_input", "conv3d_backprop_input", "split spatial dims are gathered"),
    ("conv3d_backprop_filter", "conv3d_backprop_filter", "split spatial dims are gathered"),
    ("conv2d_transpose_backprop_input", "conv2d_transpose_backprop_input", ""),
    ("conv2d_transpose_backprop_filter", "conv2d_transpose_backprop_filter", ""),
    ("conv3d_transpose_backprop_input", "conv3d_transpose_backprop_input", ""),
    ("conv3d_transpose_backprop_filter", "conv3d_transpose_backprop_filter", ""),
    ("shift", "shift",
     "a split dim: mtf's neighbour exchange (`permute`: one, or two when the offset is not a "
     "whole number of blocks)"),
    ("dynamic_shift", "dynamic_shift", ""),
    ("anonymous_shape", "anonymous_shape", ""),
    ("anonymize", "anonymize", ""),
    ("import_tf_tensor", "import_tf_tensor", ""),
    ("import_laid_out_tensor", "import_laid_out_tensor", "the slices: a list of TF tensors"),
    ("import_fully_replicated", "import_fully_replicated", ""),
    ("get_variable", None,
     "relies on mtf's graph and TF1 variable scopes; namedmesh variables live in a "
     "`VariableStore` (`store.get_variable(mesh, name, shape, ...)`, mtf's names)"),
    ("read_variable", None, "mtf graph state: a `VariableStore` variable is read when imported"),
    ("assign_slice", None, "mtf graph state: update the `tf.Variable` of a `VariableStore`"),
    ("assign_add_slice", None, "as `assign_slice`"),
    ("assign_sub_slice", None, "as `assign_slice`"),
    ("assign", None,
     "mtf graph state (an Assign operation on its variables); TF2 optimizers update the "
     "`VariableStore`'s `tf.Variable`s"),
    ("assign_add", None, "as `assign`"),
    ("assign_sub", None, "as `assign`"),
    ("depend", "depend", "eagerly a no-op: the dependencies have already run"),
    ("constant", "constant", "also arrays (laid out on the mesh; mtf's fail on a split layout)"),
    ("zeros", "zeros", ""),
    ("zeros_like", "zeros_like", ""),
    ("ones", "ones", ""),
    ("ones_like", "ones_like", ""),
    ("stop_gradient", "stop_gradient", ""),
    ("scalar_summary", "scalar_summary", "writes to the default `tf.summary` writer"),
    ("Print", "Print", "`tf.print` of the local slices"),
    ("reshape", "reshape", ""),
    ("transpose", "transpose", ""),
    ("rename_dimension", "rename_dimension", ""),
    ("replace_dimensions", "replace_dimensions", ""),
    ("einsum", "einsum", ""),
    ("matmul", "matmul", ""),
    ("reduce_sum", "reduce_sum",
     "`output_shape` may be given positionally (mtf reserves that slot to forbid it)"),
    ("reduce_mean", "reduce_mean", "as `reduce_sum`"),
    ("reduce_max", "reduce_max", "as `reduce_sum`"),
    ("reduce_min", "reduce_min", "as `reduce_sum`"),
    ("reduce_all", "reduce_all", "as `reduce_sum`"),
    ("reduce_any", "reduce_any", "as `reduce_sum`"),
    ("top_k", "top_k",
     "a split dim: two all-gathers for any k (mtf: 2k for 2 <= k <= 4, it iterates top_1)"),
    ("top_1", "top_1", "a split dim: two all-gathers, as mtf"),
    ("argmax", "argmax", ""),
    ("sample_with_temperature", "sample_with_temperature", "`seed=`: see `random_uniform`"),
    ("add", "add", ""),
    ("add_n", "add_n", ""),
    ("sub", "sub", "also `subtract`"),
    ("multiply", "multiply", ""),
    ("divide", "divide", ""),
    ("mtf_slice", "mtf_slice", "also `slice`; " + SPLIT_GATHERED),
    ("pad", "pad", SPLIT_GATHERED),
    ("one_hot", "one_hot", ""),
    ("gather", "gather",
     "`tf.gather` per piece, no one-hot; a split dim: one all-reduce, as mtf"),
    ("gradients", "gradients",
     "inside `tf.function` (TF2 has a graph there); eagerly use `tf.GradientTape`"),
    ("is_subsequence", "is_subsequence", ""),
    ("verify_no_new_dims", "verify_no_new_dims", ""),
    ("pnum_to_processor_coordinates", "pnum_to_processor_coordinates", ""),
    ("processor_coordinates_to_pnum", "processor_coordinates_to_pnum", ""),
    ("pnum_to_processor_coordinates_nd", "pnum_to_processor_coordinates_nd", ""),
    ("processor_coordinates_to_pnum_map_nd", "processor_coordinates_to_pnum_map_nd", ""),
    ("pnum_to_group", "pnum_to_group", ""),
    ("processor_groups", "processor_groups", ""),
    ("list_product", "list_product", ""),
    ("reduce_logsumexp", "reduce_logsumexp", ""),
    ("log_softmax", "log_softmax", ""),
    ("softmax", "softmax", ""),
    ("mtf_range", "mtf_range", "also `range`"),
    ("pretty_print_counters", "pretty_print_counters", ""),
    ("parallel", "parallel", ""),
    ("transpose_list_of_lists", "transpose_list_of_lists", ""),
    ("binary_reduction_fn", "binary_reduction_fn", ""),
    ("reduction_fn", "reduction_fn", ""),
    ("pool_fn", "pool_fn", ""),
    ("random_uniform", "random_uniform",
     "stateless, `seed=`; values depend on the seed and the global shape only, never on the "
     "layout (without a seed, one draw per call from TF's global seed; tf.distribute needs one)"),
    ("random_normal", "random_normal", "as `random_uniform`"),
    ("dropout", "dropout", "`seed=`: see `random_uniform`; `stateless_dropout(x, rate, seed)`"),
    ("log_variable_sizes", "log_variable_sizes",
     "takes a `VariableStore` or `{name: shape}`; `mesh_to_impl`: a Mesh"),
    ("while_loop", "while_loop",
     "in `namedmesh.core.control`: accumulators, `num_loop_vars`, gradients; see docs/layers.md"),
    ("custom_gradient", None,
     "mtf's `grad_fn` receives its graph's forward operations and every tensor `fn` captured, "
     "which TF2 eager code has no list of; a custom gradient of one op is `slicewise(..., "
     "grad_function=...)`"),
    ("recompute_grad", "recompute_grad",
     "in `namedmesh.core.control`: the forward re-runs on the backward pass; see docs/layers.md"),
    ("where", "where",
     "selects (mtf multiplies by the mask, so an `inf` in the branch not taken gives NaN)"),
    ("halo_exchange", "halo_exchange", ""),
    ("left_halo_exchange", "left_halo_exchange", ""),
    ("tensor_dim_to_mesh_dim_size", "tensor_dim_to_mesh_dim_size", ""),
    ("tensor_dim_to_size_per_split", "tensor_dim_to_size_per_split", ""),
    ("combined_dimension", "combined_dimension", ""),
    ("serialize_training_step", None,
     "builds on mtf's graph (trainable variables, gradients inside its while_loop); in TF2 a "
     "Python loop over microbatches with a GradientTape does it"),
    ("nth_largest_element", "nth_largest_element", ""),
    ("nth_smallest_element", "nth_smallest_element", ""),
    ("pool_tensor_1d", "pool_tensor_1d", ""),
    ("stride_tensor_1d", "stride_tensor_1d", ""),
    ("reduce_first", "reduce_first", ""),
]

# mtf's classes that users call, and what stands for them in namedmesh (not counted above).
CLASSES = [
    ("Dimension", "Dimension", "validated: a non-empty name and a positive size"),
    ("Shape", "Shape", "rejects two dims of one name (mtf only rejects equal pairs)"),
    ("LayoutRules", "LayoutRules", ""),
    ("TensorLayout", "TensorLayout", "also knows the shape and the mesh shape"),
    ("Graph, Mesh, Lowering, MeshImpl", "Mesh",
     "one object: mesh shape, layout rules and the executor; ops run when called"),
    ("Tensor", "Tensor", ""),
    ("Conv2dOperation, Conv3dOperation", "conv2d_with_filter, conv3d_with_filter", ""),
    ("Conv2dTransposeOperation, Conv3dTransposeOperation",
     "conv2d_transpose_with_filter, conv3d_transpose_with_filter", ""),
    ("PoolOperation", "pool", "non-overlapping, mtf's gradient"),
    ("VariableDType, Variable", "VariableStore", "namedmesh.layers"),
]


def provided():
    """The rows whose namedmesh name exists (checked against ``namedmesh`` in tests)."""
    return coverage_tables.provided(OPS)


def coverage() -> str:
    return coverage_tables.coverage(OPS)


def markdown_table() -> str:
    lines = coverage_tables.markdown_rows("mtf `ops.py`", OPS) + [""]
    lines += coverage_tables.markdown_rows("mtf class", CLASSES)
    return "\n".join(lines)

if __name__ == "__main__":
    print("%s of the public functions of mtf 0.1.21's ops.py are provided.\n" % coverage())
    print(markdown_table())
