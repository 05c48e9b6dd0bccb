"""Run directories, tensorboard events and the text log of a training run.

Impure: writes files and reads the clock. Layout of a run::

    {log_dir}/{env_id}/{run_id}/
        config.json        every setting of the run (sorted keys, indent 4)
        train_log.txt      one line per summary, evaluation and event of the run
        episodes.csv       one row per finished training game: step,frames,return,length
        eval.csv           one row per scheduled evaluation: step,frames,mean,std,min,max,episodes
        events.out.tfevents.*   one file per start of the run (a resume adds one, which starts
                                with the event that makes tensorboard drop the steps the
                                earlier starts logged after the resume point)
        checkpoints/step_{N}/
        eval/              results of ``python -m fnrl.evaluate``
        wandb/             the W&B run's local files, with ``--wandb-project``
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import math
import os
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.record_writer import RecordWriter

# "Recent return", wherever the library reports one (summary lines, progress bar, end line,
# checkpoint ranking): the mean unclipped return of the last RECENT_EPISODES training games.
RECENT_EPISODES = 100

EPISODES_CSV = "episodes.csv"
EPISODES_COLUMNS = ("step", "frames", "return", "length")
EVAL_CSV = "eval.csv"
EVAL_COLUMNS = ("step", "frames", "mean", "std", "min", "max", "episodes")
TRAIN_LOG = "train_log.txt"

# Tensorboard names of the learner metrics, adept's where adept had one.
_METRIC_TAGS = {
    "total_loss": "macro_loss/total_loss",
    "policy_loss": "loss/policy_loss",
    "value_loss": "loss/value_loss",
    "entropy_loss": "loss/entropy_loss",
}


def run_id(
    mode: str, config: Any, trunks: Sequence[str] | None = None, now: float | None = None
) -> str:
    """The run's name, adept's with the seed: ``[tag_]{mode}_{agent}_{trunks}{body}_seed{seed}_
    {timestamp}``, e.g. ``local_ActorCritic_IdentityLinear_seed0_2026-12-02_18-06-37``.

    Args:
        mode: the execution mode.
        config: the run's settings.
        trunks: the trunks the network built for the env's observations (one for each kind);
            None for ``config.vision_network``, as adept named its runs.
        now: the time to stamp; the current time when None.
    """
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    trunk = "".join(trunks) if trunks is not None else config.vision_network
    name = f"{mode}_{config.agent}_{trunk}{config.network_body}_seed{config.seed}_{stamp}"
    return f"{config.tag}_{name}" if config.tag else name


def env_folder(env_id: str) -> str:
    """The folder of ``env_id``'s runs under ``--log-dir``: the id, but ``module.Id`` for a
    ``module:Id`` env (a colon in a path breaks ``scp``, ``rsync`` and ``PATH``-like lists)."""
    return env_id.replace(":", ".")


def make_run_dir(log_dir: str, env_id: str, name: str) -> Path:
    """Creates ``{log_dir}/{env_folder(env_id)}/{name}`` (suffixing ``-1``, ``-2`` if it
    exists)."""
    parent = Path(log_dir).expanduser() / env_folder(env_id)
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


def _shown_return(value: float) -> str:
    """A recent return as printed: two decimals, ``none`` when no game has ended (nan)."""
    return f"{value:.2f}" if math.isfinite(value) else "none"


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

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Appends the scalars ``values`` (tag -> value) at ``step``, as one event."""
        summary = Summary(
            value=[Summary.Value(tag=tag, simple_value=value) for tag, value in values.items()]
        )
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


class CsvLog:
    """A CSV file of a run that rows are appended to, one line each, as they come.

    When ``purge_step`` is given (a resumed run), the rows an earlier start wrote after that
    step are dropped first, by rewriting the file; a missing file is created with its header.
    """

    def __init__(
        self, path: Path, columns: Sequence[str], *, purge_step: int | None = None
    ) -> None:
        self.path = Path(path)
        if purge_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) < purge_step]
            tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(kept)
            os.replace(tmp, self.path)
        fresh = not self.path.exists()
        self._file = open(self.path, "a", newline="", buffering=1)  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if fresh:
            self.write(columns)

    def write(self, row: Sequence[Any]) -> None:
        """Appends one row."""
        self._writer.writerow(row)

    def close(self) -> None:
        """Closes the file."""
        self._file.close()


# The x axis of fnrl's scalars in W&B: the run's env steps, as in tensorboard. W&B's own step
# must only grow, but an evaluation is logged after the steps trained while it played.
WANDB_STEP = "env_step"

# W&B run ids: what W&B accepts in one (not :;,#?/') and in the names it derives from it
# (``run-{id}-history``, an artifact name of at most 128 characters).
_WANDB_ID_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")
_WANDB_ID_LENGTH = 100


def wandb_run_id(name: str) -> str:
    """The W&B run id of the run directory ``name``: ``name`` itself when W&B accepts it; else
    its characters W&B refuses as ``-``, cut to 100 characters, and 8 hex digits of its SHA-256,
    so that two names never share an id."""
    id_ = _WANDB_ID_CHARACTERS.sub("-", name)
    if id_ == name and len(id_) <= _WANDB_ID_LENGTH:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{id_[: _WANDB_ID_LENGTH - 9]}-{digest}"


class WandbScalars:
    """A W&B run that gets the scalars of the run, each at its env step (:data:`WANDB_STEP`).

    Args:
        run: the W&B run (``wandb.init``'s).
        config: the settings to add to the run's config.
        finish: whether :meth:`close` finishes the run (not one the process started itself).
    """

    def __init__(self, run: Any, config: Mapping[str, Any], *, finish: bool) -> None:
        import wandb

        self._run, self._finish, self._errors = run, finish, wandb.errors.Error
        self._tags: set[str] = set()
        with self._wandb_errors():
            run.config.update(dict(config), allow_val_change=True)  # a resume may change a few
            run.define_metric(WANDB_STEP)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Logs the scalars ``values`` (tag -> value) at env step ``step``.

        Raises:
            LogWriteError: W&B refused them.
        """
        with self._wandb_errors():
            for tag in values.keys() - self._tags:
                self._run.define_metric(tag, step_metric=WANDB_STEP)
                self._tags.add(tag)
            self._run.log({WANDB_STEP: step, **values})

    def close(self) -> None:
        """Finishes the run if this object started it."""
        if self._finish:
            with self._wandb_errors():
                self._run.finish()

    @contextlib.contextmanager
    def _wandb_errors(self) -> Iterator[None]:
        try:
            yield
        except (self._errors, OSError) as e:
            raise LogWriteError(f"cannot log to W&B run {self._run.id}: {e}") from e


class NoScalars:
    """:class:`WandbScalars`'s methods for a run without W&B: they log nothing."""

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """Logs nothing."""
        del values, step

    def close(self) -> None:
        """Closes nothing."""


def open_wandb(run_dir: Path, config: Mapping[str, Any], project: str) -> WandbScalars | NoScalars:
    """Where a run's scalars go besides tensorboard: its W&B run, if any.

    With ``project``, a W&B run of that project named after the run directory, with an id
    from its name (:func:`wandb_run_id`), its files in ``{run_dir}/wandb``; a resume of the
    fnrl run continues it (``resume="allow"``). Without, the W&B run the process started
    before (``wandb.init`` before ``fnrl.train.main``, as CleanRL's scripts do), left running
    at the end; else none. ``WANDB_MODE`` and W&B's other variables apply.

    Raises:
        RuntimeError: W&B could not start the run (e.g. online without an API key).
    """
    if not project:
        wandb = sys.modules.get("wandb")  # not imported: no run can be active
        run = getattr(wandb, "run", None)
        return NoScalars() if run is None else WandbScalars(run, config, finish=False)
    import wandb

    name = Path(run_dir).name
    try:
        run = wandb.init(
            project=project,
            name=name,
            id=wandb_run_id(name),
            dir=str(run_dir),
            resume="allow",
            reinit="create_new",  # beside a run the process has, which stays wandb.run
            # Off: fnrl's lines are in train_log.txt, and W&B's capture of stdout would stand
            # between fnrl and a stdout whose reader goes away (fnrl.parallel.runlog.console).
            settings=wandb.Settings(console="off"),
        )
    except wandb.errors.Error as e:
        raise RuntimeError(f"--wandb-project {project}: W&B could not start the run: {e}") from e
    try:
        return WandbScalars(run, config, finish=True)
    except LogWriteError:
        run.finish(exit_code=1)
        raise


class RunLogger:
    """Writes a run's config, tensorboard scalars, CSV curves and text log; thread-safe.

    Scalars are keyed by environment steps (adept's x axis). Each finished training game is
    written as it comes (``reward/train`` and a row of ``episodes.csv``), each evaluation too
    (``reward/eval`` and a row of ``eval.csv``); learner metrics and summary lines when the run
    asks (:meth:`metrics`, :meth:`summary`). The event file is flushed at most once every
    ``flush_seconds``, and when closed. A resumed run opens a logger on the same directory with
    ``resume_step``: the text log is appended to, a new event file is added, and the CSV rows an
    earlier start wrote after the resume step are dropped.

    Every scalar written to tensorboard, and only those, goes to the run's W&B run too, if it
    has one (:func:`open_wandb`): with ``wandb_project``, or one the process started before.

    Every write happens in the call, under the logger's lock. The first one that fails raises
    :class:`LogWriteError` (naming the file and the OS error, or the W&B run), which is then
    ``failure``; from then on the logger writes nothing, and its other calls return at once.

    Args:
        run_dir: the run directory.
        config: every setting of the run, for ``config.json`` (and the W&B run's config).
        flush_seconds: seconds between two flushes of the event file.
        frames_per_step: frames per agent step (the frame skip), for the CSVs' ``frames``.
        resume_step: the step a resumed run continues from; tensorboard then drops what an
            earlier start of the run logged after it.
        wandb_project: the W&B project of the run's W&B run; empty: none of its own.

    Raises:
        LogWriteError: ``config.json``, the text log, a CSV or the event file cannot be written.
        RuntimeError: W&B could not start the run's W&B run.
    """

    def __init__(
        self,
        run_dir: Path,
        config: Mapping[str, Any],
        flush_seconds: float,
        *,
        frames_per_step: int = 1,
        resume_step: int | None = None,
        wandb_project: str = "",
    ) -> None:
        self.run_dir = Path(run_dir)
        write_config(self.run_dir, config)
        self._lock = threading.RLock()
        self._frames_per_step = frames_per_step
        purge_step = None if resume_step is None else resume_step + 1
        self._text_path = self.run_dir / TRAIN_LOG
        self._files: list[tuple[Path, Any]] = []  # (path, close) of what is open, in order
        try:
            self._text = open(self._text_path, "a", buffering=1)  # noqa: SIM115
            self._files.append((self._text_path, self._text.close))
            self._episodes = self._open_csv(EPISODES_CSV, EPISODES_COLUMNS, purge_step)
            self._evaluations = self._open_csv(EVAL_CSV, EVAL_COLUMNS, purge_step)
            self._events = EventFile(self.run_dir, purge_step=purge_step)
            self._files.insert(0, (self._events.path, self._events.close))
        except OSError as e:
            for _, close in self._files:
                close()
            raise _write_error(Path(e.filename or self.run_dir), e) from e
        try:
            self._wandb = open_wandb(self.run_dir, config, wandb_project)
        except BaseException:
            for _, close in self._files:
                close()
            raise
        self._flush_seconds = flush_seconds
        self._last_flush = time.monotonic()
        self.failure: LogWriteError | None = None
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)

    def _open_csv(self, name: str, columns: Sequence[str], purge_step: int | None) -> CsvLog:
        log = CsvLog(self.run_dir / name, columns, purge_step=purge_step)
        self._files.append((log.path, log.close))
        return log

    def _failed(self, path: Path, error: OSError) -> LogWriteError:
        self.failure = _write_error(path, error)
        return self.failure

    def _scalars(self, values: Mapping[str, float], step: int) -> None:
        try:
            self._events.scalars(values, step)
            if time.monotonic() - self._last_flush >= self._flush_seconds:
                self._events.flush()
                self._last_flush = time.monotonic()
        except OSError as e:
            raise self._failed(self._events.path, e) from e
        try:
            self._wandb.scalars(values, step)
        except LogWriteError as e:
            self.failure = e
            raise

    def _line(self, text: str) -> None:
        try:
            self._text.write(text + "\n")
        except OSError as e:
            raise self._failed(self._text_path, e) from e

    def _row(self, log: CsvLog, row: Sequence[Any]) -> None:
        try:
            log.write(row)
        except OSError as e:
            raise self._failed(log.path, e) from e

    def episode(self, step: int, returns: float, length: int) -> None:
        """Logs a finished whole game (unclipped return, length in agent steps)."""
        with self._lock:
            self.recent_returns.append(returns)
            if self.failure is None:
                self._scalars({"reward/train": returns, "episode/length": length}, step)
                frames = step * self._frames_per_step
                self._row(self._episodes, (step, frames, returns, length))

    def evaluation(self, step: int, returns: Sequence[float], lengths: Sequence[int]) -> str:
        """Logs an evaluation of the params of training ``step``: its games' returns and lengths.

        Returns:
            Its summary line, as written to ``train_log.txt``.
        """
        values = np.asarray(returns, np.float64)
        stats = (values.mean(), values.std(), values.min(), values.max())
        text = (
            f"EVAL: STEP: {step} REWARD: {stats[0]:.2f} STD: {stats[1]:.2f} MIN: {stats[2]:.2f} "
            f"MAX: {stats[3]:.2f} GAMES: {len(values)} LENGTH: {np.mean(lengths):.1f}"
        )
        with self._lock:
            if self.failure is None:
                scalars = {
                    "reward/eval": float(stats[0]),
                    "reward/eval_std": float(stats[1]),
                    "episode/eval_length": float(np.mean(lengths)),
                }
                self._scalars(scalars, step)
                frames = step * self._frames_per_step
                self._row(self._evaluations, (step, frames, *map(float, stats), len(values)))
                self._line(text)
        return text

    def eval_episode(self, step: int, returns: float, length: int) -> None:
        """Logs a game of the evaluation thread, played with the params of training ``step``."""
        with self._lock:
            if self.failure is None:
                self._scalars({"reward/eval": returns, "episode/eval_length": length}, step)
                self._line(f"EVAL: STEP: {step} REWARD: {returns:.2f} LENGTH: {length}")

    def mean_recent_return(self) -> float:
        """The recent return: the mean of the last :data:`RECENT_EPISODES` games, nan before
        the first."""
        with self._lock:
            recent = list(self.recent_returns)
        return sum(recent) / len(recent) if recent else math.nan

    def metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes learner and speed metrics as tensorboard scalars at ``step``."""
        with self._lock:
            if self.failure is None:
                scalars = {
                    _METRIC_TAGS.get(name, f"metric/{name}"): float(value)
                    for name, value in metrics.items()
                }
                self._scalars(scalars, step)

    def summary(self, step: int, metrics: Mapping[str, float]) -> str:
        """Writes the summary line of ``step`` to ``train_log.txt`` and returns it.

        adept's ``STEP: … REWARD: …`` form: the recent return (``none`` before the first game
        ends), then each metric.
        """
        text = f"STEP: {step} REWARD: {_shown_return(self.mean_recent_return())} " + " ".join(
            f"{name.upper()}: {float(value):.4g}" for name, value in metrics.items()
        )
        self.line(text)
        return text

    def line(self, text: str) -> None:
        """Appends one line to ``train_log.txt``."""
        with self._lock:
            if self.failure is None:
                self._line(text)

    def close(self) -> None:
        """Flushes and closes the event file, the CSVs and the text log, and finishes the W&B
        run it started.

        All are closed even when a flush fails, which raises only if no write failed before.
        """
        with self._lock:
            earlier = self.failure
            for path, close in self._files:
                try:
                    close()
                except OSError as e:
                    if self.failure is None:
                        self._failed(path, e).__cause__ = e
            try:
                self._wandb.close()
            except LogWriteError as e:
                self.failure = self.failure or e
            if self.failure is not earlier:
                raise self.failure
