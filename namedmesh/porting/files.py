"""Reading a legacy config file as text: every way it can fail is a FileError naming the path."""
import os

from namedmesh.core.checks import check_path
from namedmesh.errors import FileError


def read_text_file(path, what: str) -> str:
    """The UTF-8 text of the file ``path`` (``what`` names its kind in messages: "hparams
    file", "config file").  Missing, a directory, unreadable or not UTF-8 (with the line of
    the first bad byte) are FileErrors."""
    path = check_path(path, what)
    if os.path.isdir(path):
        raise FileError("%s %r is a directory, not a file" % (what, path))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FileError("%s %r: %s" % (what, path, e.strerror or e)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise FileError("%s %r is not UTF-8 text: byte 0x%02x at line %d (save it as UTF-8)"
                        % (what, path, data[e.start], line)) from None
