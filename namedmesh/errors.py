"""Exceptions raised by namedmesh.

Every error names the offending value (a dimension, a mesh string, a config
key) and says what was expected.  They derive from ``ValueError`` so that code
written against mesh-tensorflow's ``ValueError``s keeps working.
"""


class NamedMeshError(ValueError):
    """Base class of every error namedmesh raises on bad input."""


class ShapeError(NamedMeshError):
    """A dimension, shape or shape string is malformed or inconsistent."""


class LayoutError(NamedMeshError):
    """A layout string, layout rule or tensor layout is invalid for a mesh."""


class MeshError(NamedMeshError):
    """A mesh does not fit its devices, replicas or executor."""


class ConfigError(NamedMeshError):
    """A layer configuration (kwargs, hparams, gin file) is invalid."""


class CollectiveError(MeshError):
    """A collective failed or cannot be set up: a timeout (members that never
    joined), a key collision, or a group TensorFlow would rank differently."""


class WrongTypeError(NamedMeshError, TypeError):
    """A value of the wrong kind: not a namedmesh Tensor, a float where an integer
    dtype is needed, operands of different dtypes.  It is both a ``ValueError``
    (what mtf raises for these) and a ``TypeError`` (what Python code expects)."""


class FileError(ConfigError):
    """A file cannot be read or written: missing, a directory where a file is expected, not
    text in UTF-8, truncated or corrupt (a checkpoint's index or data part), or a directory to
    save into that does not exist or cannot be written.  The message names the path."""
