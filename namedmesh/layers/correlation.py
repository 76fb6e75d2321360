"""mtf's ``layers.corr``: Pearson correlation between the entries of one dim."""

from namedmesh.core.contraction import einsum, reduce_mean, reduce_sum
from namedmesh.core.dims import convert_to_dimension
from namedmesh.core.elementwise import check_tensor, sqrt, square
from namedmesh.core.reshape import rename_dimension
from namedmesh.core.tensor import Tensor
from namedmesh.errors import ShapeError


def corr(x: Tensor, dim, epsilon: float = 1e-20, name: str = "pearson_correlation") -> Tensor:
    """Correlation between the entries of ``dim``, every other dim being a sample axis.

    Returns ``[<dim>_1, <dim>_2]`` (like ``tfp.stats.correlation`` with ``dim`` as the
    event axis).  mtf 0.1.21 normalizes by the norms over x's *last* dim; that is
    this function when ``dim`` is last (its only tested use) and wrong otherwise,
    so namedmesh normalizes over ``dim`` itself.
    """
    check_tensor(x, "corr")
    dim = convert_to_dimension(dim)
    if dim not in x.shape:
        raise ShapeError("corr: dim %s is not a dim of the input %s" % (dim, x.shape))
    centered = x - reduce_mean(x, output_shape=[dim])
    x1 = rename_dimension(centered, dim.name, dim.name + "_1")
    x2 = rename_dimension(centered, dim.name, dim.name + "_2")

    def norm(z, name):
        return sqrt(reduce_sum(square(z), output_shape=[z.shape[name]])) + epsilon

    return einsum([x1, x2]) / einsum([norm(x1, dim.name + "_1"), norm(x2, dim.name + "_2")])
