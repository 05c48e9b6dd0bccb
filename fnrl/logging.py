"""Run directories, tensorboard events and the text log of a training run.

Impure: writes files and reads the clock. Layout of a run::

    {log_dir}/{env_id}/{run_id}/
        config.json        every setting of the run (sorted keys, indent 4)
        train_log.txt      one line per summary
        events.out.tfevents.*   one file per start of the run (a resume adds one; tensorboard
                                merges them and drops the steps a resume repeats)
        checkpoints/step_{N}/
        eval/              results of ``python -m fnrl.evaluate``
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tensorboardX import SummaryWriter

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


def write_config(run_dir: Path, config: Mapping[str, Any]) -> None:
    """Writes ``config.json`` (sorted keys, indent 4) atomically: temp file, fsync, rename."""
    path = Path(run_dir) / "config.json"
    tmp = path.with_name(f".config.json.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(json.dumps(config, sort_keys=True, indent=4))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunLogger:
    """Writes a run's config, tensorboard scalars and text log; safe to call from any thread.

    Scalars are keyed by environment steps (adept's x axis). Episode returns are written as they
    come; learner metrics at most once every ``summary_frequency`` seconds (adept's
    ``--summary-frequency``), plus whenever ``force`` is given. A resumed run opens a logger
    on the same directory: the text log is appended to and a new event file is added.
    """

    def __init__(self, run_dir: Path, config: Mapping[str, Any], summary_frequency: float):
        self.run_dir = Path(run_dir)
        write_config(self.run_dir, config)
        self._lock = threading.RLock()
        self._text = open(self.run_dir / "train_log.txt", "a", buffering=1)  # noqa: SIM115
        self._writer = SummaryWriter(str(self.run_dir), flush_secs=summary_frequency)
        self._summary_frequency = summary_frequency
        self._last_summary = -math.inf
        self.recent_returns: deque[float] = deque(maxlen=100)

    def episode(self, step: int, returns: float, length: int) -> None:
        """Logs a finished whole game (unclipped return, length in agent steps)."""
        with self._lock:
            self.recent_returns.append(returns)
            self._writer.add_scalar("reward/train", returns, step)
            self._writer.add_scalar("episode/length", length, step)

    def eval_episode(self, step: int, returns: float, length: int) -> None:
        """Logs a game of the evaluation thread, played with the params of training ``step``."""
        with self._lock:
            self._writer.add_scalar("reward/eval", returns, step)
            self._writer.add_scalar("episode/eval_length", length, step)
            self._text.write(f"EVAL: STEP: {step} REWARD: {returns:.2f} LENGTH: {length}\n")

    def mean_recent_return(self, count: int = 100) -> float:
        """Mean return of the last ``count`` episodes (at most 100), nan before the first."""
        with self._lock:
            recent = list(self.recent_returns)[-count:]
        return sum(recent) / len(recent) if recent else math.nan

    def summary(self, step: int, metrics: Mapping[str, float], *, force: bool = False) -> bool:
        """Writes learner and speed metrics if ``summary_frequency`` seconds have passed.

        Returns:
            Whether anything was written.
        """
        now = time.monotonic()
        if not force and now - self._last_summary < self._summary_frequency:
            return False
        with self._lock:
            self._last_summary = now
            for name, value in metrics.items():
                tag = _METRIC_TAGS.get(name, f"metric/{name}")
                self._writer.add_scalar(tag, float(value), step)
            reward = self.mean_recent_return()
            self.line(
                f"STEP: {step} REWARD: {reward:.2f} "
                + " ".join(f"{name.upper()}: {float(value):.4g}" for name, value in metrics.items())
            )
        return True

    def line(self, text: str) -> None:
        """Appends one line to ``train_log.txt``."""
        with self._lock:
            self._text.write(text + "\n")

    def close(self) -> None:
        """Flushes and closes the event file and the text log."""
        with self._lock:
            self._writer.close()
            self._text.close()
