"""mtf 0.1.21's ``layers.py``, function by function: the namedmesh name and what differs.

Every public module-level function of mtf's ``mesh_tensorflow/layers.py`` (the list,
read from mtf's source by ``tools/oracle/list_mtf_layers.py``, is
``tests/data/layers/public_api.json``) has a row ``(mtf name, namedmesh name or
None, note)``; a name means ``namedmesh.layers.<name>`` exists with mtf's
parameters in mtf's order (``tests/test_layers_table.py`` checks it), and
``golden`` in the note means a golden case made by mtf itself checks it to 2e-5.
The table in ``docs/layers.md`` is ``markdown_table()`` (``python -m
namedmesh.layers.mtf_layers_table`` prints it).
"""

from namedmesh.core import coverage_tables

GOLDEN = "golden"
SCOPE = ("mtf uniquifies a default variable scope (`dense`, `dense_1`, ...; with `name=None` its "
         "`dense` even puts the kernel and the bias in two scopes); namedmesh uses the name as "
         "given")

LAYERS = [
    ("summary_for_clip_activation_gradient", "summary_for_clip_activation_gradient",
     "writes the same scalars with `tf.summary.scalar` and returns them"),
    ("unit_scaling_convention", "unit_scaling_convention",
     "gin switch in mtf; here `unit_scaling_convention(True)` or the block "
     "`use_unit_scaling_convention()`; golden"),
    ("us_einsum", "us_einsum", "golden"),
    ("dense", "dense", "reduced / new / expert dims, renamed reduced dims, `kernel_weights`; "
     "golden (6 cases, 2 on meshes); " + SCOPE),
    ("get_dense_kernel_weights", "get_dense_kernel_weights", "through dense's golden cases"),
    ("dense_product", "dense_product", "activations by name or function; golden"),
    ("conv1d", "conv1d", "golden (SAME; VALID with stride 2; input channels split)"),
    ("separable_conv1d", "separable_conv1d", "golden (length split: neighbour exchanges)"),
    ("conv2d", "conv2d", "the op is `namedmesh.conv2d_with_filter`; default init Glorot uniform "
     "as `tf.get_variable`'s; golden (batch/out split; in split: one all-reduce)"),
    ("conv2d_with_blocks", "conv2d_with_blocks", "golden (both block dims split)"),
    ("conv2d_transpose", "conv2d_transpose", "golden"),
    ("conv2d_transpose_with_blocks", "conv2d_transpose_with_blocks", "golden"),
    ("conv3d", "conv3d", "golden"),
    ("conv3d_with_blocks", "conv3d_with_blocks", "golden (both block dims split)"),
    ("conv3d_transpose", "conv3d_transpose", "golden"),
    ("conv3d_transpose_with_blocks", "conv3d_transpose_with_blocks", "golden"),
    ("corr", "corr", "normalizes over `dim`; mtf over x's last dim, the same when `dim` is last "
     "(golden), wrong otherwise"),
    ("layer_norm", "layer_norm", "golden (d_model split: two all-reduces, as mtf)"),
    ("batch_norm", "batch_norm", "returns `MovingAverageUpdate`s (value + `assign()`) where mtf "
     "returns assign ops; golden (train and eval)"),
    ("softmax_cross_entropy_with_logits", "softmax_cross_entropy_with_logits",
     "hard and soft targets, z-loss; golden (vocab split: three all-reduces, as mtf)"),
    ("sigmoid_cross_entropy_with_logits", "sigmoid_cross_entropy_with_logits",
     "targets may have the logits' dims in another order; golden"),
    ("weights_nonzero", "weights_nonzero", "golden"),
    ("dense_relu_dense", "dense_relu_dense", "dropout takes `seed=` (stateless); golden"),
    ("local_1d_halo_exchange", "local_1d_halo_exchange",
     "without blocks mtf passes a Dimension as the padding and fails; namedmesh pads "
     "`w_dim.size` zeros; through the spatial-blocks golden cases"),
    ("local_self_attention_spatial_blocks", "local_self_attention_spatial_blocks",
     "golden (blocks split: neighbour exchanges)"),
    ("masked_local_attention_1d", "masked_local_attention_1d",
     "golden (length split with `length_per_split`: neighbour exchanges)"),
    ("masked_local_attention_1d_incremental", "masked_local_attention_1d_incremental", "golden"),
    ("local_2d_halo_exchange", "local_2d_halo_exchange",
     "pads `[halo, 0]` where mtf's `[halo, None]` fails; through the 2-D golden case"),
    ("local_2d_self_attention_spatial_blocks", "local_2d_self_attention_spatial_blocks",
     "`mask_right=True` raises a ConfigError: mtf's mask for it fails for every input; golden"),
    ("rename_length_to_memory_length", "rename_length_to_memory_length",
     "through the self-attention golden cases"),
    ("multihead_attention_vars", "multihead_attention_vars", "the combined `qkvo` variable"),
    ("multihead_attention_params", "multihead_attention_params",
     "`combine=True` (`qkvo`) or four variables `q`, `k`, `v`, `o`; golden"),
    ("dot_product_attention", "dot_product_attention", "dropout takes `seed=`; golden"),
    ("multihead_attention", "multihead_attention",
     "golden (self and encoder-decoder; heads split: no all-reduce but the output's; d_model "
     "split)"),
    ("multihead_self_attention_incremental", "multihead_self_attention_incremental",
     "`step_num` may be an int; golden (also on a mesh)"),
    ("multihead_encdec_attention_incremental", "multihead_encdec_attention_incremental",
     "golden"),
    ("attention_mask_ignore_padding", "attention_mask_ignore_padding", "golden"),
    ("attention_mask_autoregressive", "attention_mask_autoregressive", "golden"),
    ("attention_mask_same_segment", "attention_mask_same_segment", "golden"),
    ("attention_bias_local_block", "attention_bias_local_block",
     "computed without a concat (`query + block < memory`); golden"),
    ("attention_bias_local_2d_block", None,
     "mtf 0.1.21's function raises for every input with distinct query and memory dims (it "
     "concatenates `[w, memory_w]` with `[memory_h, memory_w]`): there is no behaviour to "
     "reproduce"),
    ("multiplicative_jitter", "multiplicative_jitter", "takes `seed=` (stateless draws)"),
    ("multihead_self_attention_memory_compressed", "multihead_self_attention_memory_compressed",
     "golden (also heads split)"),
    ("compress_mean", "compress_mean", "golden"),
    ("embedding_weights", "embedding_weights", "through the embedding golden case"),
    ("embedding", "embedding", "golden (vocab split: one all-reduce, as mtf)"),
    ("max_pool2d", "max_pool2d", "golden (also with a spatial dim split)"),
    ("max_pool3d", "max_pool3d", "golden"),
    ("avg_pool2d", "avg_pool2d", "golden"),
    ("avg_pool3d", "avg_pool3d", "golden"),
    ("reversible_half_residual_and_swap", "reversible_half_residual_and_swap",
     "recomputes `f` on the backward pass; keeps each block's inputs where mtf rebuilds them "
     "from the outputs; golden (gradients)"),
    ("clip_activation_gradient", "clip_activation_gradient",
     "does not write mtf's summaries (call `summary_for_clip_activation_gradient`); golden"),
    ("annealed_dropout", "annealed_dropout",
     "takes `step=` (mtf reads the TF1 global step) and `seed=`"),
]

CLASSES = [
    ("DenseInitializer", "DenseInitializer", ""),
    ("VarianceScalingInitializer", "VarianceScalingInitializer",
     "modes fan_in / fan_out / fan_avg, normal (truncated) or uniform"),
]

# functions of mtf's transformer/ code that models use, also in namedmesh.layers
TRANSFORMER = [
    ("transformer.sublayer_rms_norm", "rms_norm",
     "T5's RMS norm: `rms_norm(x, dim, epsilon, name='rms_norm')`, variable `<name>/scale`; "
     "golden (also d_model split)"),
    ("transformer.attention.attention", "attention",
     "`is_training=` instead of mtf's Context (its z-loss and 2-D resharding need a model)"),
    ("transformer.attention.local_attention_1d", "local_attention_1d",
     "golden (causal with the length split; bidirectional with sequence ids); mtf crashes "
     "without `attention_kwargs`, namedmesh defaults them"),
    ("transformer.attention.visibility_mask_to_attention_bias",
     "visibility_mask_to_attention_bias", ""),
]

CONTROL = [
    ("recompute_grad", "namedmesh.recompute_grad",
     "`tf.recompute_grad` on the slices: the tape keeps none of fn's activations; gradients "
     "equal; golden"),
    ("while_loop", "namedmesh.while_loop",
     "accumulators, `num_loop_vars`, gradients (mtf has none); under MirroredStrategy unrolled "
     "into `maximum_iterations` steps"),
    ("custom_gradient", "namedmesh.core.control.custom_gradient",
     "`grad_fn(inputs, outputs, output_grads[, variables=])`: mtf's also receives its graph's "
     "operations, which TF2 has no list of"),
]


def provided():
    """The rows of ``LAYERS`` whose namedmesh name exists (checked in tests)."""
    return coverage_tables.provided(LAYERS)


def coverage() -> str:
    return coverage_tables.coverage(LAYERS)


def markdown_table() -> str:
    rows = coverage_tables.markdown_rows
    lines = rows("mtf `layers.py`", LAYERS) + [""] + rows("mtf class", CLASSES)
    lines += [""] + rows("mtf `transformer/`", TRANSFORMER)
    lines += [""] + rows("mtf `ops.py` control", CONTROL)
    return "\n".join(lines)


if __name__ == "__main__":
    print("%s of the public functions of mtf 0.1.21's layers.py are provided.\n" % coverage())
    print(markdown_table())
