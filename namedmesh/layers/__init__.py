"""mtf's ``layers.py`` on named tensors, with mtf's variable names (``namedmesh.layers.X`` is
``mtf.layers.X``).  See docs/layers.md for the table of mtf's functions."""
from namedmesh.layers.attention import (attention, compress_mean, dot_product_attention,
                                        multihead_attention, multihead_attention_params,
                                        multihead_attention_vars,
                                        multihead_encdec_attention_incremental,
                                        multihead_self_attention_incremental,
                                        multihead_self_attention_memory_compressed)
from namedmesh.layers.clipping import clip_activation_gradient, summary_for_clip_activation_gradient
from namedmesh.layers.conv import conv1d, conv2d, conv2d_transpose, conv3d, conv3d_transpose
from namedmesh.layers.conv_blocks import (conv2d_transpose_with_blocks, conv2d_with_blocks,
                                          conv3d_transpose_with_blocks, conv3d_with_blocks)
from namedmesh.layers.correlation import corr
from namedmesh.layers.dense import (dense, dense_product, dense_relu_dense,
                                    get_dense_kernel_weights, us_einsum)
from namedmesh.layers.embedding import embedding, embedding_weights
from namedmesh.layers.initializers import (DenseInitializer, VarianceScalingInitializer,
                                           unit_scaling_convention, use_unit_scaling_convention)
from namedmesh.layers.local_attention import (local_1d_halo_exchange, local_2d_halo_exchange,
                                              local_2d_self_attention_spatial_blocks,
                                              local_attention_1d,
                                              local_self_attention_spatial_blocks,
                                              masked_local_attention_1d,
                                              masked_local_attention_1d_incremental)
from namedmesh.layers.losses import (sigmoid_cross_entropy_with_logits,
                                     softmax_cross_entropy_with_logits, weights_nonzero)
from namedmesh.layers.masks import (attention_bias_local_block, attention_mask_autoregressive,
                                    attention_mask_ignore_padding, attention_mask_same_segment,
                                    rename_length_to_memory_length,
                                    visibility_mask_to_attention_bias)
from namedmesh.layers.noise import annealed_dropout, multiplicative_jitter
from namedmesh.layers.norms import MovingAverageUpdate, batch_norm, layer_norm, rms_norm
from namedmesh.layers.pooling import avg_pool2d, avg_pool3d, max_pool2d, max_pool3d
from namedmesh.layers.revnet import reversible_half_residual_and_swap
from namedmesh.layers.separable_conv import separable_conv1d
from namedmesh.layers.variables import (VariableStore, constant_initializer, current_store,
                                        glorot_uniform_initializer, ones_initializer,
                                        random_normal_initializer, random_uniform_initializer,
                                        truncated_normal_initializer, variance_scaling_initializer,
                                        zeros_initializer)
from namedmesh.layers.dense_module import Dense  # noqa: E402  (dense as a tf.Module)
