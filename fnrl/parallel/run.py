"""The run shell: the parts every execution mode trains with around its loop.

A mode gets a :class:`TrainingRun` from :func:`fnrl.parallel.build.build_run`, calls
``record`` after each learner update and ``finish`` at the end; the builder calls ``close``.
The run is assembled from small parts, each with one job and testable alone:

* :class:`~fnrl.parallel.budget.Budget`: the counters and the step budget;
* :class:`~fnrl.parallel.checkpointer.Checkpointer`: the one resume path and the checkpoints'
  named pieces;
* :class:`~fnrl.parallel.runlog.RunLog`: ``train_log.txt``, tensorboard, the CSVs, stdout and
  the progress bar;
* :class:`~fnrl.parallel.evaluation.Evaluations`: scheduled evaluations and adept's thread.

:func:`open_run` builds the writing parts (the run directory, locked, and, with
``config.resume``, the run's latest checkpoint); :func:`silent_run` the parts of a process that
must not write (a towered process other than 0), which have the same methods and write
nothing. Both return a :class:`TrainingRun`, whose ``finish`` returns a :class:`RunResult`.

Impure: owns files, the clock, the progress bar and the evaluation threads.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax

from fnrl.agents.base import FINITE
from fnrl.checkpoint import CheckpointWriteError, NonFiniteState
from fnrl.config import TrainConfig
from fnrl.logging import LogWriteError, RunDirectoryLock, make_run_dir, run_id
from fnrl.networks import count_params
from fnrl.parallel.budget import Budget
from fnrl.parallel.checkpointer import (
    Checkpointer,
    NoCheckpoints,
    find_resume_point,
    resumed_dir,
)
from fnrl.parallel.evaluation import Evaluations, NoEvaluations
from fnrl.parallel.phases import Episode, PhaseTimer
from fnrl.parallel.runlog import RunLog, SilentLog
from fnrl.types import Carry, Metrics, TrainState


class TrainingDiverged(RuntimeError):
    """The loss, the gradient or the learner state became NaN or infinite."""


def _host_metrics(metrics: Metrics) -> tuple[dict[str, float], bool]:
    """An update's metrics as floats, without ``FINITE``, and whether the update diverged.

    It diverged when a metric is NaN or infinite, or when ``FINITE`` (computed inside the
    compiled update, see :func:`fnrl.agents.make_update`) says its new state is not finite.
    """
    metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
    finite_state = metrics.pop(FINITE, 1.0) == 1.0
    return metrics, not (finite_state and all(map(math.isfinite, metrics.values())))


def _divergence(metrics: dict[str, float], update: int, step: int) -> str:
    """What went non-finite at ``update`` (ending at ``step``), for the error and the log."""
    return f"non-finite loss, gradient or learner state at update {update} (step {step}): {metrics}"


@dataclass
class RunResult:
    """What a finished (or stopped) training run did.

    Counters are the run's totals; ``seconds``, ``metrics`` and ``episode_returns`` cover this
    start of it only (a resumed run started at ``start_env_steps`` and ``start_updates``).
    """

    run_dir: Path | None  # None on a process that writes none (a towered process but 0)
    env_steps: int  # agent steps summed over envs
    frames: int  # env_steps times the frame skip
    updates: int
    seconds: float
    warmup_seconds: float  # until the end of the first update, compilation included
    episode_returns: list[float]
    recent_return: float  # of the run's last RECENT_EPISODES games (fnrl.logging); nan if none
    metrics: list[dict[str, float]]  # one dict per update
    phase_seconds: dict[str, float]
    bound: str  # the phase that took the most time
    last_checkpoint: Path | None
    state: TrainState  # the learner state at the end
    interrupted: bool = False
    start_env_steps: int = 0  # where this start of the run began (0 unless resumed)
    start_updates: int = 0
    resumed_from: Path | None = None  # the checkpoint this start continued from
    replayed_steps: int = 0  # vector steps of the env action log replayed on resume

    @property
    def _session_frames(self) -> float:
        return self.frames * (self.env_steps - self.start_env_steps) / max(self.env_steps, 1)

    @property
    def frames_per_second(self) -> float:
        """Frames per second over this start of the run, compilation included."""
        return self._session_frames / self.seconds if self.seconds > 0 else math.nan

    @property
    def steady_frames_per_second(self) -> float:
        """Frames per second after the first update (compiled code only); nan if one update."""
        updates = self.updates - self.start_updates
        if updates < 2:
            return math.nan
        frames_after_first = self._session_frames * (updates - 1) / updates
        return frames_after_first / (self.seconds - self.warmup_seconds)


def run_summary(mode: str, config: TrainConfig) -> str:
    """One line saying what a run trains and for how long, e.g. ``local ActorCritic on
    CartPole-v1: 16 envs x 5 steps per update, 500,000 steps; a checkpoint every 100,000;
    an evaluation every 25,000 (10 greedy games)``."""
    if config.eval_every:
        evaluation = (
            f"an evaluation every {config.eval_every:,} ({config.eval_episodes} greedy games)"
        )
    else:
        evaluation = "no evaluation"
    return (
        f"{mode} {config.agent} on {config.env_id}: {config.nb_env} envs x {config.exp_length} "
        f"steps per update, {config.max_train_steps:,} steps; a checkpoint every "
        f"{config.epoch_len:,}; {evaluation}"
    )


class TrainingRun:
    """A run's parts, and what a mode's loop asks of them around each learner update.

    Checkpoints are written when the checkpointer says one is due, and at the end. The run is
    ``finished`` at the first update boundary at or after ``config.max_train_steps``, or once
    ``budget.stop`` is set.

    Args:
        config: the run's settings.
        mode: the execution mode's name.
        budget: the counters (a resumed run's start at its checkpoint's).
        log: the run's log (:class:`RunLog` or :class:`SilentLog`).
        checkpointer: its checkpoints (:class:`Checkpointer` or :class:`NoCheckpoints`).
        evaluations: its evaluations (:class:`Evaluations` or :class:`NoEvaluations`).
        timer: the phase timer the parts share.
        frames_per_step: frames per agent step (the frame skip), for the result's frames.
        run_dir: the run directory; None on a process that writes none.
        release: called last by :meth:`close` (the run directory's lock).
    """

    def __init__(
        self,
        config: TrainConfig,
        mode: str,
        *,
        budget: Budget,
        log: RunLog | SilentLog,
        checkpointer: Checkpointer | NoCheckpoints,
        evaluations: Evaluations | NoEvaluations,
        timer: PhaseTimer,
        frames_per_step: int = 1,
        run_dir: Path | None = None,
        release: Callable[[], None] = lambda: None,
    ) -> None:
        self.config, self.mode, self.run_dir = config, mode, run_dir
        self.frames_per_step = frames_per_step
        self.budget, self.log, self.checkpointer = budget, log, checkpointer
        self.evaluations, self.timer, self._release = evaluations, timer, release
        self.stop = budget.stop
        self.on_update: Callable[[TrainingRun], None] | None = None  # the caller's callback
        self.episode_returns: list[float] = []
        self.metrics: list[dict[str, float]] = []
        self._start = time.perf_counter()
        self._warmup_seconds = math.nan

    @property
    def finished(self) -> bool:
        """Whether the step budget is spent or a stop was requested."""
        return self.budget.finished

    def updates_before_pause(self, steps_per_update: int) -> int:
        """Updates of ``steps_per_update`` steps that may run before the run needs the host.

        The next checkpoint, evaluation or the end of the budget, whichever comes first; at
        least 1. A mode that runs several updates per compiled call keeps its calls within this
        count, so that checkpoints and evaluations fall where they would one update at a time.
        """
        return self.budget.updates_before(
            steps_per_update, self.checkpointer.next_due, self.evaluations.next_due
        )

    def announce(self, state: TrainState, *lines: str) -> None:
        """Prints and logs what the run trains and for how long, the parameter count, where
        the run writes, and ``lines``; then that the first update compiles."""
        header = [
            run_summary(self.mode, self.config),
            f"Network parameters: {count_params(state.params['params']):,}",
            str(self.run_dir),
        ]
        resumed_from = self.checkpointer.resumed_from
        if resumed_from is not None:
            header.append(f"resuming from {resumed_from} at step {self.budget.env_steps}")
        compiling = (
            "compiling the rollout and the update (seconds; minutes for Atari on a CPU, "
            "unless an identical run left them in the compilation cache)..."
        )
        self.log.announce(*header, *lines, compiling)

    def record(
        self,
        state: TrainState,
        metrics: Metrics,
        env_steps: int,
        episodes: Iterable[Episode],
        *,
        carry: Carry = None,
    ) -> None:
        """Accounts for one learner update that consumed ``env_steps`` environment steps.

        Args:
            state: the learner state after the update.
            metrics: the update's scalar metrics.
            env_steps: environment steps the update consumed.
            episodes: whole games that ended in its rollouts.
            carry: the acting envs' carry after the rollout, saved with checkpoints.

        Raises:
            TrainingDiverged: a metric, or the new learner state, is NaN or infinite; nothing
                of it is saved, and the error (also written to ``train_log.txt``) names the
                newest finite checkpoint on disk.
            LogWriteError: the tensorboard events or the text log could not be written (by
                this thread or the evaluation thread); the run saved a final checkpoint first,
                and the error names the file, the OS error and that checkpoint (or why it could
                not be saved).
            CheckpointWriteError: a checkpoint could not be written (naming it).
            RuntimeError: the evaluation thread failed, or the run resumes but the mode did not
                call ``checkpointer.restore``.
        """
        budget = self.budget
        self.checkpointer.check_restored(self.mode)
        metrics, diverged = _host_metrics(metrics)
        if diverged:
            update, step = budget.updates + 1, budget.env_steps + env_steps
            raise self._diverged(_divergence(metrics, update, step))
        budget.count(env_steps)
        if not self.metrics:
            self._warmup_seconds = time.perf_counter() - self._start
            seconds = self._warmup_seconds
            self.log.announce(f"first update after {seconds:.1f} s, compiling included")
        self.metrics.append(metrics)
        episodes = list(episodes)
        self.episode_returns.extend(episode.returns for episode in episodes)
        saving = budget.env_steps >= self.checkpointer.next_due
        with _saved_on_log_failure(self, state, carry):
            self.log.update(budget, metrics, env_steps, episodes)
            self.evaluations.after_update(state, budget.env_steps)
            if saving:
                self.evaluations.wait()
        if saving:
            self.save(state, carry)
        if self.on_update is not None:
            self.on_update(self)

    def _diverged(self, problem: str) -> TrainingDiverged:
        """The error for ``problem``, naming the newest finite checkpoint; logs it first."""
        message = f"{problem}; {self.checkpointer.last_good()}"
        self.log.line(f"DIVERGED: {message}")
        return TrainingDiverged(message)

    def save(self, state: TrainState, carry: Carry = None) -> Path | None:
        """Writes a checkpoint of ``state`` (and ``carry``, the env log) with the counters.

        Returns:
            Its path; None on a process that writes none.

        Raises:
            TrainingDiverged: ``state`` is not finite; nothing is written.
            CheckpointWriteError: a file could not be written (naming it).
        """
        try:
            return self.checkpointer.save(state, carry, self.budget.env_steps, self.budget.updates)
        except NonFiniteState as e:
            raise self._diverged(f"refused to save: {e}") from e

    def finish(self, state: TrainState, carry: Carry = None) -> RunResult:
        """Waits for the evaluation in flight, saves the final checkpoint and summary and
        returns what the run did."""
        with _saved_on_log_failure(self, state, carry):
            self.evaluations.wait()
        budget = self.budget
        if budget.updates and not self.checkpointer.saved_at(budget.env_steps):
            self.save(state, carry)
        self.log.finish(budget.env_steps)
        return RunResult(
            run_dir=self.run_dir,
            env_steps=budget.env_steps,
            frames=budget.env_steps * self.frames_per_step,
            updates=budget.updates,
            seconds=time.perf_counter() - self._start,
            warmup_seconds=self._warmup_seconds,
            episode_returns=self.episode_returns,
            recent_return=self.log.mean_recent_return(),
            metrics=self.metrics,
            phase_seconds=dict(self.timer.seconds),
            bound=self.timer.bound(),
            last_checkpoint=self.checkpointer.last_checkpoint,
            state=state,
            interrupted=self.stop.is_set(),
            start_env_steps=budget.start_env_steps,
            start_updates=budget.start_updates,
            resumed_from=self.checkpointer.resumed_from,
            replayed_steps=self.checkpointer.replayed_steps,
        )

    def close(self) -> None:
        """Waits for the evaluation in flight, stops the evaluation thread, logs the totals and
        timings and closes the files.

        Call it in ``finally``. Re-raises the evaluation thread's exception, if it failed, unless
        it is the log's failure (already raised by :meth:`record`).
        """
        seconds = time.perf_counter() - self._start
        try:
            self.evaluations.close(seconds)
        except RuntimeError as e:
            if self.log.failure is None or e.__cause__ is not self.log.failure:
                raise
        finally:
            try:
                self.log.close(self.budget, self.timer, time.perf_counter() - self._start)
            finally:
                self._release()


@contextlib.contextmanager
def _saved_on_log_failure(run: TrainingRun, state: TrainState, carry: Carry) -> Iterator[None]:
    """Turns a log-write failure raised inside (by this thread or an evaluation) into one that
    names the final checkpoint the run saves after it, or why it could not."""
    try:
        yield
    except (LogWriteError, RuntimeError) as e:
        failure = run.log.failure
        if failure is None:
            raise
        try:
            checkpoint = run.save(state, carry)
        except CheckpointWriteError as error:
            raise LogWriteError(f"{failure}; the final checkpoint failed too: {error}") from e
        step = run.budget.env_steps
        raise LogWriteError(f"{failure}; the run stopped at step {step}, saved {checkpoint}") from e


def open_run(
    config: TrainConfig,
    mode: str,
    *,
    frames_per_step: int,
    trunks: Sequence[str] | None = None,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
) -> TrainingRun:
    """The run of a process that writes: a new run directory, or the one ``config.resume``
    names, continued from its latest good checkpoint.

    The directory is locked for the run's life: a second writer (e.g. a resume of a live run,
    whose start-up clean-up would delete the live run's save in flight) is refused.

    Args:
        config: the run's settings.
        mode: the execution mode, written into the checkpoints.
        frames_per_step: frames per agent step (the frame skip).
        trunks: the trunks the network built, for the run's name.
        stop: when set, the run stops at the next update boundary.
        show_progress: progress bar on/off; ``None`` shows it on a terminal only.

    Raises:
        ValueError: ``config.resume`` names no resumable run, or the config changes a setting
            in ``FIXED_ON_RESUME``.
        CheckpointError: the latest checkpoint is unreadable.
    """
    if config.resume:
        run_dir = resumed_dir(config)
    else:
        run_dir = make_run_dir(config.log_dir, config.env_id, run_id(mode, config, trunks))
    lock = RunDirectoryLock(run_dir)
    try:
        resume = find_resume_point(run_dir, config, mode)
        log = RunLog(
            run_dir,
            config,
            frames_per_step=frames_per_step,
            resume_step=resume.env_steps if resume.checkpoint else None,
            show_progress=show_progress,
        )
    except BaseException:
        lock.release()
        raise
    log.remember_returns(resume.meta.get("recent_returns", []))
    timer = PhaseTimer()
    budget = Budget(
        config.max_train_steps,
        stop or threading.Event(),
        env_steps=resume.env_steps,
        updates=resume.updates,
    )
    return TrainingRun(
        config,
        mode,
        budget=budget,
        log=log,
        checkpointer=Checkpointer(
            run_dir, config, mode, resume, log, timer, frames_per_step=frames_per_step
        ),
        evaluations=Evaluations(config, log, timer, budget.env_steps),
        timer=timer,
        frames_per_step=frames_per_step,
        run_dir=run_dir,
        release=lock.release,
    )


def silent_run(
    config: TrainConfig, mode: str, *, stop: threading.Event | None = None
) -> TrainingRun:
    """The run of a process that must not write: the same parts, writing nothing.

    A towered process other than process 0 trains in lockstep with process 0, which writes the
    run directory. This one keeps what its loop needs, the stop event, the phase timer and the
    counters, and writes nothing: no run directory, log, tensorboard event, checkpoint or
    progress bar, and it starts no evaluation. It stops at the budget or on ``stop`` as the
    writing run does; its counters start at 0 (the process has no checkpoint to read). It
    raises :class:`TrainingDiverged` at the update where process 0's run does: both read the
    same replicated learner state's check.
    """
    return TrainingRun(
        config,
        mode,
        budget=Budget(config.max_train_steps, stop or threading.Event()),
        log=SilentLog(),
        checkpointer=NoCheckpoints(config),
        evaluations=NoEvaluations(),
        timer=PhaseTimer(),
    )
