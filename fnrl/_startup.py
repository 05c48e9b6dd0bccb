"""Ctrl-C while a command line (``python -m fnrl.train`` ...) is still importing its modules.

Importing JAX and the envs takes seconds; a Ctrl-C then would print a long traceback through
the import machinery. Imported first by the ``fnrl`` package, in ``python -m fnrl.<command>``
this module makes SIGINT end the process with one line and exit code 130 if it arrives during an
import; anywhere else it raises ``KeyboardInterrupt`` as usual (the commands install their own
handlers when they start).
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs the import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: FrameType | None) -> None:
    if _importing(frame):
        # Leaves at once: nothing is written yet, and an exception raised here can land in a
        # callback that swallows it (JAX's garbage-collector hook runs inside imports), after
        # which the command would run on as if never stopped.
        print("fnrl: interrupted while starting", file=sys.stderr, flush=True)
        os._exit(128 + signum)
    raise KeyboardInterrupt


# Only in python -m fnrl.<command> (sys.argv[0] is "-m" while -m imports the command's package),
# and only over Python's own handler: a program importing fnrl keeps its SIGINT handling.
if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupt)
