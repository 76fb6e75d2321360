"""``name=`` for every op: a TensorFlow name scope around the op's work.

mtf gives every op an optional ``name``; namedmesh accepts it everywhere and
uses it as the name scope of the TensorFlow ops the op creates (visible in
graphs and profiles).  ``@named_op("default")`` adds this to a function whose
signature has a ``name`` parameter (at mtf's position, so positional names
work as in mtf).
"""

import functools
import inspect
import re

import tensorflow as tf

_INVALID = re.compile(r"[^A-Za-z0-9_.\-/]")


def scope_name(name: str) -> str:
    """``name`` made valid for ``tf.name_scope`` (invalid characters become ``_``)."""
    name = _INVALID.sub("_", str(name)).strip("/") or "op"
    if not re.match(r"[A-Za-z0-9.]", name[0]):
        name = "op" + name
    return name


def named_op(default: str):
    """Decorator: run the op inside ``tf.name_scope(name or default)``.

    The decorated function must declare ``name=None``; its position in the
    signature is kept, so ``top_k(x, dim, k_dim, "my_top_k")`` works as in mtf.
    """

    def decorate(fn):
        params = list(inspect.signature(fn).parameters)
        if "name" not in params:
            raise TypeError("%s must declare a name=None parameter" % fn.__name__)
        position = params.index("name")

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            name = kwargs.get("name")
            if name is None and len(args) > position:
                name = args[position]
            with tf.name_scope(scope_name(name or default)):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
