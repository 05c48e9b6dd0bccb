"""One line, in place of C++ logs, when JAX's distributed runtime aborts a process of a run.

When another process of a multi-process run dies without a word (the coordinator, process 0,
killed) or two processes join with the same index, JAX's distributed client ends this process
from a C++ thread: a fatal log line, a stack trace, and ``abort()``. No Python code runs first
(the client's error callback cannot be set from Python: its status argument does not convert).
:func:`relay_stderr` therefore sends the process's stderr through a small relay process, this
file run as a script (it imports nothing of fnrl, nor JAX): every line passes through except
the runtime's log lines that end in such an abort, which become one ``fnrl.train: error:``
line. The process still ends by ``abort()``: exit code 134 (-6 to a parent in Python).
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time

# A C++ log line of JAX's runtime (absl's format): severity, date, time, thread, file:line.
_LOG_LINE = re.compile(r"[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ [\w.]+:\d+\] ")
# The first characters of one, to hold a partial line that may become one.
_LOG_START = re.compile(r"[IWEF](\d{0,4}$|\d{4}( |$))")
_ABORT = re.compile(
    r"F\d{4} .*Terminating process because the JAX distributed service detected fatal "
    r"errors\..*absl::Status: (?P<status>.*)"
)
# How long the runtime's log lines are held back: the lines before its fatal one are dropped
# with it; the others pass on late by at most this.
HOLD_SECONDS = 2.0


def abort_message(status: str, process_id: int) -> str:
    """The line that stands for the runtime's abort of ``process_id`` with ``status``
    (``"UNAVAILABLE: Failed to send RPC ..."``)."""
    if "incarnation" in status or "same task" in status:
        cause = f"a second process joined as process {process_id} (--process-id given twice?)"
    elif status.startswith("UNAVAILABLE"):
        cause = "the coordinator (process 0) stopped or cannot be reached"
    else:
        cause = "another process of the run failed"
    detail = status.split(". ")[0].strip()
    ended = f"JAX's distributed runtime ended process {process_id}"
    return f"fnrl.train: error: {cause}; {ended} ({detail})"


class Relay:
    """Which of the lines written to stderr pass on, and when.

    Pure: :meth:`feed` and :meth:`due` take the time and return the text to write.
    """

    def __init__(self, process_id: int) -> None:
        self.process_id = process_id
        self._held: list[str] = []  # the runtime's log lines, and any after them
        self._held_since = 0.0
        self._aborting = False

    def feed(self, line: str, now: float) -> str:
        """``line`` (with its newline) was written at ``now``; returns what to write on."""
        if self._aborting:  # the abort's stack trace: the process ends within milliseconds
            return ""
        match = _ABORT.match(line)
        if match:
            self._held, self._aborting = [], True
            return abort_message(match["status"], self.process_id) + "\n"
        if not self._held and not _LOG_LINE.match(line):
            return line
        if not self._held:
            self._held_since = now
        self._held.append(line)
        return ""

    def passes_now(self, partial: str) -> bool:
        """Whether an unfinished line (a progress bar's) can pass on before its newline."""
        return not self._held and not self._aborting and not _LOG_START.match(partial)

    def due(self, now: float) -> str:
        """The held lines, once they were held :data:`HOLD_SECONDS` without an abort."""
        if self._held and now - self._held_since >= HOLD_SECONDS:
            return self.close()
        return ""

    def close(self) -> str:
        """What is still held, when the process has ended."""
        held, self._held = "".join(self._held), []
        return held


def relay_stderr(process_id: int) -> None:
    """Sends this process's stderr (file descriptor 2, C++ logs included) through the relay.

    The relay ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group) and ends
    when this process and its children have closed their stderr.
    """
    read_end, write_end = os.pipe()
    subprocess.Popen([sys.executable, __file__, str(process_id)], stdin=read_end, stdout=2)
    os.close(read_end)
    sys.stderr.flush()
    os.dup2(write_end, 2)
    os.close(write_end)


def _relay(process_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    relay, pending = Relay(process_id), ""

    def write(text: str) -> None:
        if text:
            os.write(1, text.encode(errors="replace"))

    while True:
        ready, _, _ = select.select([0], [], [], 0.25)
        now = time.monotonic()
        if ready:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
            for line in lines:
                write(relay.feed(line + "\n", now))
            if pending and relay.passes_now(pending):
                write(pending)
                pending = ""
        write(relay.due(now))
    write(relay.feed(pending, time.monotonic()) if pending else "")
    write(relay.close())


if __name__ == "__main__":
    _relay(int(sys.argv[1]))
