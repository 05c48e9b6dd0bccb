"""Run directories, tensorboard events and the text log of a training run.

Impure: writes files and reads the clock. Layout of a run::

    {log_dir}/{env_id}/{run_id}/
        config.json        every setting of the run (sorted keys, indent 4)
        train_log.txt      one line per summary
        events.out.tfevents.*   one file per start of the run (a resume adds one, which starts
                                with the event that makes tensorboard drop the steps the
                                earlier starts logged after the resume point)
        checkpoints/step_{N}/
        eval/              results of ``python -m fnrl.evaluate``
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter

# Tensorboard names of the learner metrics, adept's where adept had one.
_METRIC_TAGS = {
    "total_loss": "macro_loss/total_loss",
    "policy_loss": "loss/policy_loss",
    "value_loss": "loss/value_loss",
    "entropy_loss": "loss/entropy_loss",
}


def run_id(mode: str, config: Any, now: float | None = None) -> str:
    """adept's run name: ``[tag_]{mode}_{agent}_{vision}{body}_{timestamp}``."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    name = f"{mode}_{config.agent}_{config.vision_network}{config.network_body}_{stamp}"
    return f"{config.tag}_{name}" if config.tag else name


def make_run_dir(log_dir: str, env_id: str, name: str) -> Path:
    """Creates ``{log_dir}/{env_id}/{name}`` (suffixing ``-1``, ``-2`` if it exists)."""
    parent = Path(log_dir).expanduser() / env_id
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        path = parent / (name if attempt == 0 else f"{name}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"could not create a fresh run directory under {parent}")


LOCK_FILE = ".lock"


class RunDirectoryLock:
    """An exclusive OS file lock on a run directory, held while one process writes it.

    The lock (``flock`` on ``{run_dir}/.lock``) goes with the process: a crashed or killed
    run releases it, so a later resume is never refused by a stale lock.

    Raises:
        ValueError: another process holds it (naming that process's pid).
    """

    def __init__(self, run_dir: Path) -> None:
        path = Path(run_dir) / LOCK_FILE
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self._fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise ValueError(
                f"{run_dir} is in use by another training process (pid {holder}); wait for it "
                "to stop, or train in another directory"
            ) from None
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        """Releases the lock (closing its file); idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LogWriteError(OSError):
    """A file of the run's logs could not be written (a full disk...); the message names it."""


def _write_error(path: Path, error: OSError) -> LogWriteError:
    reason = f"[Errno {error.errno}] {error.strerror}" if error.errno else str(error)
    return LogWriteError(f"cannot write {path}: {reason}")


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Writes ``config.json`` (sorted keys, indent 4) atomically: temp file, fsync, rename.

    Raises:
        LogWriteError: the file could not be written (naming it and the OS error).
    """
    path = Path(run_dir) / "config.json"
    tmp = path.with_name(f".config.json.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(config, sort_keys=True, indent=4))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, e) from e


class EventFile:
    """A tensorboard event file, written by the calling thread.

    tensorboardX's ``SummaryWriter`` hands its events to a writer thread through a bounded
    queue: when a write fails (a full disk) that thread dies and the next ``put`` blocks
    forever. Here each event goes through tensorboardX's ``RecordWriter`` in the call, which
    raises the ``OSError`` of a failed write, so no call can block on a dead writer.

    The file is named as tensorboard expects, ``events.out.tfevents.{seconds}.{host}.{N}``, N
    counting the event files already in ``directory`` (names sort in the order of creation, the
    order in which tensorboard reads them). It starts with the file version event; with
    ``purge_step``, then with a session start at that step, on which tensorboard drops the
    steps at or after it that earlier files hold.
    """

    def __init__(self, directory: Path, *, purge_step: int | None = None) -> None:
        directory = Path(directory)
        count = len(list(directory.glob("events.out.tfevents.*")))
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{count}"
        self.path = directory / name
        self._records = RecordWriter(str(self.path))
        self.write(Event(wall_time=time.time(), file_version="brain.Event:2"))
        if purge_step is not None:
            start = SessionLog(status=SessionLog.START)
            self.write(Event(wall_time=time.time(), step=purge_step, session_log=start))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """Appends the scalar ``value`` of ``tag`` at ``step``."""
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=value)])
        self.write(Event(wall_time=time.time(), step=step, summary=summary))

    def write(self, event: Event) -> None:
        """Appends one event record."""
        self._records.write(event.SerializeToString())

    def flush(self) -> None:
        """Writes the buffered events to disk (flush and fsync)."""
        self._records.flush()

    def close(self) -> None:
        """Flushes and closes the file."""
        try:
            self.flush()
        finally:
            self._records.close()


class RunLogger:
    """Writes a run's config, tensorboard scalars and text log; safe to call from any thread.

    Scalars are keyed by environment steps (adept's x axis). Episode returns are written as they
    come; learner metrics at most once every ``summary_frequency`` seconds (adept's
    ``--summary-frequency``), plus whenever ``force`` is given; the event file is flushed as
    often. A resumed run opens a logger on the same directory with ``resume_step``: the text log
    is appended to and a new event file is added.

    Every write happens in the call, under the logger's lock. The first one that fails raises
    :class:`LogWriteError` (naming the file and the OS error), which is then ``failure``; from
    then on the logger writes nothing, and its other calls return at once.

    Args:
        run_dir: the run directory.
        config: every setting of the run, for ``config.json``.
        summary_frequency: seconds between two summaries of the learner metrics.
        resume_step: the step a resumed run continues from; tensorboard then drops what an
            earlier start of the run logged after it.

    Raises:
        LogWriteError: ``config.json``, the text log or the event file cannot be written.
    """

    def __init__(
        self,
        run_dir: Path,
        config: Mapping[str, Any],
        summary_frequency: float,
        *,
        resume_step: int | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        write_config(self.run_dir, config)
        self._lock = threading.RLock()
        self._text_path = self.run_dir / "train_log.txt"
        try:
            self._text = open(self._text_path, "a", buffering=1)  # noqa: SIM115
        except OSError as e:
            raise _write_error(self._text_path, e) from e
        purge_step = None if resume_step is None else resume_step + 1
        try:
            self._events = EventFile(self.run_dir, purge_step=purge_step)
        except OSError as e:
            self._text.close()
            raise _write_error(Path(e.filename or self.run_dir), e) from e
        self._summary_frequency = summary_frequency
        self._last_summary = -math.inf
        self._last_summary_step: int | None = None
        self._last_flush = time.monotonic()
        self.failure: LogWriteError | None = None
        self.recent_returns: deque[float] = deque(maxlen=100)

    def _failed(self, path: Path, error: OSError) -> LogWriteError:
        self.failure = _write_error(path, error)
        return self.failure

    def _scalar(self, tag: str, value: float, step: int) -> None:
        try:
            self._events.scalar(tag, value, step)
            if time.monotonic() - self._last_flush >= self._summary_frequency:
                self._events.flush()
                self._last_flush = time.monotonic()
        except OSError as e:
            raise self._failed(self._events.path, e) from e

    def _line(self, text: str) -> None:
        try:
            self._text.write(text + "\n")
        except OSError as e:
            raise self._failed(self._text_path, e) from e

    def episode(self, step: int, returns: float, length: int) -> None:
        """Logs a finished whole game (unclipped return, length in agent steps)."""
        with self._lock:
            self.recent_returns.append(returns)
            if self.failure is None:
                self._scalar("reward/train", returns, step)
                self._scalar("episode/length", length, step)

    def eval_episode(self, step: int, returns: float, length: int) -> None:
        """Logs a game of the evaluation thread, played with the params of training ``step``."""
        with self._lock:
            if self.failure is None:
                self._scalar("reward/eval", returns, step)
                self._scalar("episode/eval_length", length, step)
                self._line(f"EVAL: STEP: {step} REWARD: {returns:.2f} LENGTH: {length}")

    def mean_recent_return(self, count: int = 100) -> float:
        """Mean return of the last ``count`` episodes (at most 100), nan before the first."""
        with self._lock:
            recent = list(self.recent_returns)[-count:]
        return sum(recent) / len(recent) if recent else math.nan

    def summary(self, step: int, metrics: Mapping[str, float], *, force: bool = False) -> bool:
        """Writes learner and speed metrics if ``summary_frequency`` seconds have passed.

        Each step is summarized at most once: a run's final summary does not repeat the one of
        its last update.

        Returns:
            Whether anything was written.
        """
        now = time.monotonic()
        if not force and now - self._last_summary < self._summary_frequency:
            return False
        with self._lock:
            if self.failure is not None or step == self._last_summary_step:
                return False
            self._last_summary, self._last_summary_step = now, step
            for name, value in metrics.items():
                self._scalar(_METRIC_TAGS.get(name, f"metric/{name}"), float(value), step)
            reward = self.mean_recent_return()
            self._line(
                f"STEP: {step} REWARD: {reward:.2f} "
                + " ".join(f"{name.upper()}: {float(value):.4g}" for name, value in metrics.items())
            )
        return True

    def line(self, text: str) -> None:
        """Appends one line to ``train_log.txt``."""
        with self._lock:
            if self.failure is None:
                self._line(text)

    def close(self) -> None:
        """Flushes and closes the event file and the text log.

        Both are closed even when a flush fails, which raises only if no write failed before.
        """
        with self._lock:
            earlier = self.failure
            for path, close in [
                (self._events.path, self._events.close),
                (self._text_path, self._text.close),
            ]:
                try:
                    close()
                except OSError as e:
                    if self.failure is None:
                        self._failed(path, e).__cause__ = e
            if self.failure is not earlier:
                raise self.failure
