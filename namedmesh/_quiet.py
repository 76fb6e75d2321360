"""Keep TensorFlow's native start-up log lines off the namedmesh command's stderr.

TensorFlow's C++ side writes lines such as ``I0000 00:00:... cudart_stub.cc:31]
Could not find cuda drivers`` straight to file descriptor 2 when it loads,
whatever ``TF_CPP_MIN_LOG_LEVEL`` says.  When this process *is* the namedmesh
command (console script or ``python -m namedmesh``), fd 2 is passed through a
filter that drops those lines and forwards everything else as it comes; so a
bad option gives exactly one line on stderr.  As a library, namedmesh leaves
stderr and logging alone.
"""
import atexit
import os
import re
import sys
import threading

_TF_NATIVE_LOG = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog|[IWEF]\d{4} \d\d:\d\d:|"
    rb"To enable the following instructions:)")


def is_namedmesh_command() -> bool:
    argv0 = os.path.basename(sys.argv[0]) if sys.argv else ""
    if argv0 == "namedmesh":
        return True
    orig = list(getattr(sys, "orig_argv", []))
    return "-m" in orig[:-1] and orig[orig.index("-m") + 1] == "namedmesh"


def _filter_fd2() -> None:
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not _TF_NATIVE_LOG.match(line):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="namedmesh-stderr-filter", daemon=True)
    thread.start()

    def restore():
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - stderr may be closed at exit
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
        thread.join(timeout=2)

    atexit.register(restore)


def quiet_tensorflow_for_the_command() -> None:
    if is_namedmesh_command() and "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        _filter_fd2()
