"""Per-example losses of mtf's layers.py: softmax (with z-loss) and sigmoid cross-entropy.

A vocab dim split on the mesh costs the all-reduces of its logsumexp and of
the target-logit sum; nothing else communicates.
"""

import tensorflow as tf

from namedmesh.core.checks import check_float_tensor
from namedmesh.core.contraction import reduce_sum
from namedmesh.core.dims import convert_to_dimension
from namedmesh.core.elementwise import (abs, cast, check_tensor, exp, log, negative, not_equal,
                                        relu, same_mesh, square)
from namedmesh.core.nn import one_hot, reduce_logsumexp
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError


def softmax_cross_entropy_with_logits(logits: Tensor, targets: Tensor, vocab_dim,
                                      z_loss: float = 0.0) -> Tensor:
    """``-sum_vocab(log_softmax(logits) * targets) + z_loss * logsumexp(logits)^2``.

    Hard targets: an integer Tensor with logits' dims except ``vocab_dim``
    (class ids; an id outside ``[0, vocab)`` contributes no target term).
    Soft targets: a float Tensor with logits' dims (rows summing to one).
    ``z_loss`` (e.g. 1e-4) pulls ``log(z)``, the log partition function,
    towards zero.  Output dims: logits' dims without ``vocab_dim``.
    """
    check_float_tensor(check_tensor(logits, "softmax_cross_entropy_with_logits"),
                       "softmax_cross_entropy_with_logits", "logits")
    check_tensor(targets, "softmax_cross_entropy_with_logits")
    same_mesh([logits, targets], "softmax_cross_entropy_with_logits")
    vocab_dim = convert_to_dimension(vocab_dim)
    if vocab_dim not in logits.shape:
        raise ShapeError("softmax_cross_entropy_with_logits: vocab_dim %s is not a dim of the "
                         "logits %s" % (vocab_dim, logits.shape))
    if targets.dtype.is_integer:
        if set(targets.shape.dims) != set((logits.shape - vocab_dim).dims):
            raise ShapeError("softmax_cross_entropy_with_logits: hard targets %s must have the "
                             "dims of the logits %s other than vocab_dim %s"
                             % (targets.shape, logits.shape, vocab_dim))
        targets = one_hot(targets, vocab_dim, dtype=logits.dtype)
    elif set(targets.shape.dims) != set(logits.shape.dims):
        raise ShapeError("softmax_cross_entropy_with_logits: soft targets %s must have the dims "
                         "of the logits %s" % (targets.shape, logits.shape))
    log_z = reduce_logsumexp(logits, vocab_dim)
    log_softmax = logits - log_z
    loss = negative(reduce_sum(log_softmax * targets, reduced_dim=vocab_dim))
    if z_loss != 0:
        loss = loss + z_loss * square(log_z)
    return loss


def sigmoid_cross_entropy_with_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """``relu(x) - x * z + log(1 + exp(-|x|))`` elementwise (x logits, z targets in [0, 1]).

    ``targets`` must have the logits' dims (in any order).  Output dims = logits' dims.
    """
    check_float_tensor(check_tensor(logits, "sigmoid_cross_entropy_with_logits"),
                       "sigmoid_cross_entropy_with_logits", "logits")
    check_tensor(targets, "sigmoid_cross_entropy_with_logits")
    if set(logits.shape.dims) != set(targets.shape.dims):
        raise ShapeError("sigmoid_cross_entropy_with_logits: logits %s and targets %s must have "
                         "the same dims" % (logits.shape, targets.shape))
    x, z = logits, targets
    return relu(x) - x * z + log(1 + exp(negative(abs(x))))


def weights_nonzero(targets: Tensor, dtype=tf.float32) -> Tensor:
    """1 where ``targets != 0``, else 0, as ``dtype``; output dims = targets' dims."""
    check_tensor(targets, "weights_nonzero")
    return cast(not_equal(targets, 0), dtype)
