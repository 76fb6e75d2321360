"""mtf's embedding layer: a ``[vocab, d_model]`` variable and a gather by token id.

A vocab dim split on the mesh costs one all-reduce (each processor gathers the
ids that fall in its piece of the vocab; the others give zero rows).
"""

from typing import Optional

from namedmesh.core.dims import Shape, convert_to_dimension
from namedmesh.core.elementwise import cast, check_tensor
from namedmesh.core.gather import gather
from namedmesh.core.tensor import Tensor
from namedmesh.layers.variables import (VariableStore, as_initializer, current_store,
                                        random_normal_initializer, variable_dtypes)


def embedding_weights(mesh, vocab_dim, output_dim, variable_dtype=None, name: str = "embedding",
                      ensemble_dim=None, initializer=None,
                      store: Optional[VariableStore] = None) -> Tensor:
    """The variable ``name`` (at the current scope) with dims ``[*ensemble_dim, vocab, output]``.

    Default init: normal with stddev 1 (mtf's ``tf.random_normal_initializer()``).
    Cast to the activation dtype of ``variable_dtype`` if it names one.
    """
    store = current_store(store, "embedding_weights")
    if not ensemble_dim:
        ensemble = []
    elif isinstance(ensemble_dim, list):
        ensemble = [convert_to_dimension(d) for d in ensemble_dim]
    else:
        ensemble = [convert_to_dimension(ensemble_dim)]
    master, activation = variable_dtypes(variable_dtype)
    shape = Shape(ensemble + [convert_to_dimension(vocab_dim), convert_to_dimension(output_dim)])
    w = store.get_variable(mesh, name, shape, dtype=master,
                           initializer=as_initializer(initializer) or random_normal_initializer())
    return cast(w, activation) if activation is not None and w.dtype != activation else w


def embedding(indices: Tensor, vocab_dim, output_dim, variable_dtype=None,
              name: str = "embedding", store: Optional[VariableStore] = None) -> Tensor:
    """Rows of ``embedding_weights`` for ``indices`` (int ids): ``[*indices dims, output_dim]``.

    An id outside ``[0, vocab)`` gives a zero row.
    """
    check_tensor(indices, "embedding")
    weights = embedding_weights(indices.mesh, vocab_dim, output_dim, variable_dtype, name,
                                store=store)
    return gather(weights, indices, convert_to_dimension(vocab_dim))
