"""What every execution mode does around its loop: run directory, logs, checkpoints, budget,
resume and evaluation.

Impure: owns files, the clock, the progress bar and the evaluation threads (the scheduled
evaluations' worker and adept's evaluation thread). A mode gets a
``TrainingRun`` from :func:`fnrl.parallel.build.build_run` (a :class:`SilentRun`, which writes
nothing, on a process that must not write), calls ``record`` after each learner update and
``finish`` at the end; the builder calls ``close``.

Resume is part of the run: when ``config.resume`` names a run directory, ``TrainingRun`` opens
that directory instead of a new one, appends to its logs, and restores the counters of its
latest checkpoint; :meth:`TrainingRun.restore` loads the learner state and carry, and
:meth:`TrainingRun.resumable_env` brings the envs back to their exact state (see
:mod:`fnrl.parallel.resume`, which also lists what a mode does to support exact resume).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
from tqdm import tqdm

from fnrl.agents.base import FINITE
from fnrl.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    NonFiniteState,
    latest_good_checkpoint,
    load_carry,
    load_checkpoint,
    load_env_actions,
    prune_checkpoints,
    read_meta,
    remove_incomplete,
    save_checkpoint,
)
from fnrl.config import TrainConfig, long_flag
from fnrl.envs import BatchedEnv
from fnrl.logging import LogWriteError, RunDirectoryLock, RunLogger, make_run_dir, run_id
from fnrl.networks import count_params
from fnrl.parallel.evaluation import (
    EVAL_THREAD_SEED_OFFSET,
    EvaluationThread,
    ScheduledEvaluation,
    make_eval_policy,
)
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.parallel.rollout import Episode, PhaseTimer
from fnrl.types import Carry, Metrics, TrainState

# Settings a resumed run cannot change: they define the envs' streams or the network's shapes.
FIXED_ON_RESUME = (
    "env_id",
    "nb_env",
    "seed",
    "skip_rate",
    "max_episode_length",
    "agent",
    "vision_network",
    "discrete_network",
    "network_body",
    "normalize",
    "normalization",
    "optimizer",
    "nb_head",
    "zscore_norm_env",
)


def check_fixed_on_resume(stored: Mapping[str, Any], config: TrainConfig) -> None:
    """Refuses ``config`` for a resume of a run that trained with ``stored`` if it changes a
    field of :data:`FIXED_ON_RESUME`.

    Raises:
        ValueError: naming the first such field, its stored value and the new one.
    """
    for name in FIXED_ON_RESUME:
        if name in stored and stored[name] != getattr(config, name):
            raise ValueError(
                f"{long_flag(name)} cannot change when resuming: the run used {stored[name]!r}, "
                f"got {getattr(config, name)!r}"
            )


class MetricsWindow:
    """The metrics of the updates since it was last taken, with their steps and seconds."""

    def __init__(self, env_steps: int) -> None:
        self._restart(env_steps)

    def _restart(self, env_steps: int) -> None:
        self.updates = 0
        self._sums: dict[str, float] = {}
        self.restart_clock(env_steps)

    def restart_clock(self, env_steps: int) -> None:
        """Counts frames per second from ``env_steps`` and now on (after compilation)."""
        self._env_steps = env_steps
        self._start = time.perf_counter()

    def add(self, metrics: Mapping[str, float]) -> None:
        """Adds one update's metrics."""
        self.updates += 1
        for name, value in metrics.items():
            self._sums[name] = self._sums.get(name, 0.0) + value

    def take(self, env_steps: int, frames_per_step: int) -> dict[str, float]:
        """The mean of each metric and the frames per second since the clock started (none if
        no frame was counted), after which the window begins anew at ``env_steps``."""
        seconds = time.perf_counter() - self._start
        frames = (env_steps - self._env_steps) * frames_per_step
        means = {name: total / self.updates for name, total in self._sums.items()}
        self._restart(env_steps)
        if frames == 0:  # a window of only the first update, whose time is compilation
            return means
        return {**means, "frames_per_second": frames / seconds}


def console(line: str) -> None:
    """Prints ``line`` on stdout at once, above the progress bar when one is shown."""
    tqdm.write(line)
    sys.stdout.flush()


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

    run_dir: Path
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


def _resumed_dir(config: TrainConfig) -> Path:
    """The run directory ``config.resume`` names.

    Raises:
        ValueError: it does not exist.
    """
    run_dir = Path(config.resume).expanduser()
    if not run_dir.is_dir():
        raise ValueError(f"--resume {config.resume}: no such run directory")
    return run_dir


def _open_resumed(run_dir: Path, config: TrainConfig, mode: str) -> tuple[Path, dict, list[str]]:
    """The newest good checkpoint of the (locked) ``run_dir`` and its meta.

    Also returns a warning for each newer checkpoint that is corrupt (and was skipped).
    """
    directory = run_dir / "checkpoints"
    remove_incomplete(directory)
    checkpoint, errors = latest_good_checkpoint(directory)
    if checkpoint is None:
        if errors:
            raise CheckpointError(
                f"--resume {config.resume}: no checkpoint is intact; the newest: {errors[0]}"
            )
        raise ValueError(
            f"--resume {config.resume}: the run saved no checkpoint ({directory} is empty); "
            "start a new run instead"
        )
    meta = read_meta(checkpoint)
    stored_mode = meta.get("mode", mode)
    if stored_mode != mode:
        raise ValueError(
            f"--resume {config.resume}: the run was trained in {stored_mode} mode; resume it "
            f"with `python -m fnrl.train {stored_mode} --resume {config.resume}`"
        )
    check_fixed_on_resume(meta.get("config", {}), config)
    skipped = [f"{e}; resuming from the older {checkpoint.name}" for e in errors]
    return checkpoint, meta, skipped


def _updates_until(target: int, env_steps: int, steps_per_update: int) -> int:
    """Updates of ``steps_per_update`` steps from ``env_steps`` to ``target``; at least 1."""
    return max(1, -(-(target - env_steps) // steps_per_update))


class TrainingRun:
    """The counters, logs, checkpoints and evaluation thread of one training run.

    Each update's metrics go to tensorboard after every ``config.log_interval``-th update of
    the run, resumed or not (their means, with the frames per second and the learning rate over
    the updates since the last write, and once more at the end); a summary line goes to
    stdout and ``train_log.txt`` every ``config.summary_frequency`` seconds, and at the end. On a
    terminal a progress bar shows the steps, the recent frames per second and the recent
    return. Every ``config.eval_every`` steps (at the first update boundary at or after a
    multiple), the run plays ``config.eval_episodes`` greedy games with a copy of its params
    (:class:`~fnrl.parallel.evaluation.ScheduledEvaluation`) and logs them, in a worker thread
    while training goes on: at most one evaluation is in flight (the next one waits for it), and
    every evaluation of the steps a checkpoint covers is logged before the checkpoint is written.
    The games depend on the params and the evaluation's index only, not on the timing.

    Checkpoints are written after the first update (adept wrote its first one right away), then
    each time the step count crosses a multiple of ``config.epoch_len``, and at the end; the
    ``config.nb_last_model`` most recent and the ``config.nb_top_model`` best (by the mean return
    of the last 100 training episodes at save time, adept's top-N saver) are kept. The run is
    ``finished`` at the first update boundary at or after ``config.max_train_steps``, or once
    ``stop`` is set.

    With ``config.resume`` set, the run continues the run in that directory from its latest
    checkpoint (see the module docstring).

    Raises:
        ValueError: ``config.resume`` names no resumable run, or the config changes a setting
            in ``FIXED_ON_RESUME``.
        CheckpointError: the latest checkpoint is unreadable.
    """

    def __init__(
        self,
        config: TrainConfig,
        mode: str,
        *,
        frames_per_step: int,
        trunks: Sequence[str] | None = None,
        stop: threading.Event | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.config = config
        self.mode = mode
        self.stop = stop or threading.Event()
        self.timer = PhaseTimer()
        self.frames_per_step = frames_per_step
        self.resumed_from: Path | None = None
        meta: dict = {}
        skipped: list[str] = []
        if config.resume:
            self.run_dir = _resumed_dir(config)
        else:
            self.run_dir = make_run_dir(config.log_dir, config.env_id, run_id(mode, config, trunks))
        # Held for the run's life: a second writer (e.g. a resume of a live run, whose start-up
        # clean-up would delete the live run's save in flight) is refused.
        self._lock = RunDirectoryLock(self.run_dir)
        try:
            if config.resume:
                self.resumed_from, meta, skipped = _open_resumed(self.run_dir, config, mode)
            self.logger = RunLogger(
                self.run_dir,
                config.to_dict(),
                config.summary_frequency,
                frames_per_step=frames_per_step,
                resume_step=int(meta["env_steps"]) if self.resumed_from else None,
            )
        except BaseException:
            self._lock.release()
            raise
        self._resume_meta = meta
        self.env_steps = int(meta.get("env_steps", 0))
        self.updates = int(meta.get("updates", 0))
        self.start_env_steps, self.start_updates = self.env_steps, self.updates
        self.logger.recent_returns.extend(meta.get("recent_returns", []))
        self.episode_returns: list[float] = []
        self.metrics: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = self.resumed_from
        epoch_len = config.epoch_len
        self._next_save = (self.env_steps // epoch_len + 1) * epoch_len if self.updates else 0
        self._saved_step = self.env_steps if self.resumed_from else None
        self._next_eval = self._next_multiple(config.eval_every) if config.eval_every else math.inf
        self._scheduled: ScheduledEvaluation | None = None
        self._evaluator: ThreadPoolExecutor | None = None
        self._pending_evaluation: Future | None = None
        self._tensorboard_window = MetricsWindow(self.env_steps)
        self._line_window = MetricsWindow(self.env_steps)
        self._last_line = time.monotonic()
        self._env: ResumableEnv | None = None
        self._evaluation: EvaluationThread | None = None
        self._restored = False
        self._start = time.perf_counter()
        self._warmup_seconds = math.nan
        if self.resumed_from is not None:
            for message in skipped:
                self._warn(message)
            self.logger.line(
                f"RESUME: from {self.resumed_from} at step {self.env_steps} (update {self.updates})"
            )
        self._progress = tqdm(  # disable=None: shown on a terminal only
            total=config.max_train_steps,
            initial=min(self.env_steps, config.max_train_steps),
            unit="step",
            disable=None if show_progress is None else not show_progress,
            smoothing=0.1,
        )

    def _next_multiple(self, every: int) -> int:
        """The first multiple of ``every`` above the run's steps."""
        return (self.env_steps // every + 1) * every

    @property
    def finished(self) -> bool:
        """Whether the step budget is spent or a stop was requested."""
        return self.env_steps >= self.config.max_train_steps or self.stop.is_set()

    def updates_before_pause(self, steps_per_update: int) -> int:
        """Updates of ``steps_per_update`` steps that may run before the run needs the host.

        The next checkpoint, evaluation or the end of the budget, whichever comes first; at
        least 1. A mode that runs several updates per compiled call keeps its calls within this
        count, so that checkpoints and evaluations fall where they would one update at a time.
        """
        target = min(self._next_save, self._next_eval, self.config.max_train_steps)
        return _updates_until(target, self.env_steps, steps_per_update)

    def announce(self, state: TrainState, *lines: str) -> None:
        """Prints and logs the parameter count, where the run writes, and ``lines``."""
        header = [
            f"Network parameters: {count_params(state.params['params']):,}",
            str(self.run_dir),
        ]
        if self.resumed_from is not None:
            header.append(f"resuming from {self.resumed_from} at step {self.env_steps}")
        for line in (*header, *lines):
            self.logger.line(line)
            console(line)

    def restore(self, state: TrainState, carry: Carry = None) -> tuple[TrainState, Carry]:
        """The learner state (and carry) to start from: the given ones, or the checkpoint's.

        Args:
            state: the fresh state; when resuming, the template the checkpoint loads into.
            carry: optional fresh carry of the acting envs (a pytree with a leading [B] axis);
                replaced by the checkpoint's when it has one.

        Returns:
            ``(state, carry)`` on the default device.

        Raises:
            CheckpointError: the checkpoint is corrupt or does not fit (naming the entry).
        """
        self._restored = True
        if self.resumed_from is None:
            return state, carry
        state, _ = load_checkpoint(self.resumed_from, state)
        if carry is not None:
            saved = load_carry(self.resumed_from, carry)
            carry = carry if saved is None else saved
        return jax.device_put(state), jax.device_put(carry)

    def resumable_env(self, env: BatchedEnv) -> BatchedEnv:
        """Wraps ``env`` so that the run's checkpoints let a resume restore it exactly.

        Call it before the first ``env.reset()``. With ``config.exact_resume`` the wrapper
        records every action; when resuming, its ``reset`` replays the checkpoint's log (see
        :mod:`fnrl.parallel.resume`). Without it, or when the checkpoint has no log, ``env`` is
        used as it is and a resume warns that it is not exact.
        """
        if not self.config.exact_resume:
            if self.resumed_from is not None:
                self._warn(
                    "--exact-resume is false: the envs restart fresh, so this run will not "
                    "continue exactly as an uninterrupted one"
                )
            return env
        replay = None
        if self.resumed_from is not None:
            arrays = load_env_actions(self.resumed_from)
            if arrays is None:
                self._warn(
                    f"{self.resumed_from} holds no env action log (saved with --exact-resume "
                    "false or by a mode without it): the envs restart fresh, so this run will "
                    "not continue exactly as an uninterrupted one"
                )
            else:
                try:
                    replay = ActionLog(env.spec.actions, env.num_envs, arrays)
                except ValueError as e:
                    raise CheckpointError(f"checkpoint {self.resumed_from}: {e}") from e
        expected = self._resume_meta.get("env_fingerprint") if replay is not None else None
        self._env = ResumableEnv(env, replay, on_replay=self._replayed, expected=expected)
        return self._env

    def _warn(self, message: str) -> None:
        self.logger.line(f"WARNING: {message}")
        warnings.warn(message, ResumeWarning, stacklevel=3)

    def _replayed(self, steps: int, seconds: float, matched: bool | None) -> None:
        self.timer.seconds["replay"] += seconds
        self.logger.line(
            f"RESUME: replayed {steps} vector steps ({steps * self._env.num_envs} env steps) in "
            f"{seconds:.2f}s"
        )
        if matched is False:
            self._warn(
                "the replayed envs do not match the checkpoint (a non-deterministic env?): the "
                "run continues, but not exactly as an uninterrupted one"
            )

    def start_evaluation(
        self, make_env: Callable[[int, int], BatchedEnv], network: nn.Module
    ) -> None:
        """Prepares the scheduled evaluation (``config.eval_every``), or starts the evaluation
        thread of ``config.nb_eval_env`` envs; neither when both are 0.

        Args:
            make_env: ``make_env(num_envs, seed)`` builds the evaluation envs (seeded from
                ``config.seed + EVAL_THREAD_SEED_OFFSET``, apart from every training env).
            network: the run's network, played greedily with its running batch-norm stats.
        """
        if self.config.eval_every:
            self._scheduled = ScheduledEvaluation(
                make_env, network, episodes=self.config.eval_episodes, seed=self.config.seed
            )
            self._evaluator = ThreadPoolExecutor(1, thread_name_prefix="fnrl-evaluation")
        if self.config.nb_eval_env == 0:
            return
        env = make_env(self.config.nb_eval_env, self.config.seed + EVAL_THREAD_SEED_OFFSET)
        self._evaluation = EvaluationThread(
            env,
            jax.jit(make_eval_policy(network, greedy=True)),
            network.initial_carry(env.num_envs),
            self.logger,
            key=jax.random.PRNGKey(self.config.seed + EVAL_THREAD_SEED_OFFSET),
            step_rate=self.config.eval_step_rate,
        )
        self._evaluation.start()

    @property
    def evaluation(self) -> EvaluationThread | None:
        """The evaluation thread, if one runs."""
        return self._evaluation

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
                call :meth:`restore`.
        """
        if self.resumed_from is not None and not self._restored:
            raise RuntimeError(
                f"{self.mode} mode does not restore checkpoints yet: --resume is not supported "
                "in it (see fnrl.parallel.resume for what a mode does to support it)"
            )
        metrics, diverged = _host_metrics(metrics)
        if diverged:
            raise self._diverged(_divergence(metrics, self.updates + 1, self.env_steps + env_steps))
        self.env_steps += env_steps
        self.updates += 1
        if not self.metrics:
            self._warmup_seconds = time.perf_counter() - self._start
        self.metrics.append(metrics)
        saving = self.env_steps >= self._next_save
        with self._saving_on_log_failure(state, carry):
            self._report(state, metrics, env_steps, episodes)
            if self.env_steps >= self._next_eval:
                self._evaluate(state)
            if saving:
                self._wait_for_evaluation()
        if saving:
            self.save(state, carry)
            epoch_len = self.config.epoch_len
            self._next_save = (self.env_steps // epoch_len + 1) * epoch_len

    def _report(
        self,
        state: TrainState,
        metrics: dict[str, float],
        env_steps: int,
        episodes: Iterable[Episode],
    ) -> None:
        """Logs an update's episodes and metrics, and hands its params to the evaluation thread."""
        for episode in episodes:
            self.episode_returns.append(episode.returns)
            self.logger.episode(self.env_steps, episode.returns, episode.length)
        self._tensorboard_window.add(metrics)
        self._line_window.add(metrics)
        if self.updates % self.config.log_interval == 0:  # the same steps after a resume
            self._write_metrics()
        if self.updates == self.start_updates + 1:  # its time was mostly compilation
            for window in (self._tensorboard_window, self._line_window):
                window.restart_clock(self.env_steps)
            self._last_line = time.monotonic()
        elif time.monotonic() - self._last_line >= self.config.summary_frequency:
            self._summary_line()
        if not self._progress.disable:
            recent = self.logger.mean_recent_return()
            if math.isfinite(recent):
                self._progress.set_postfix(ret=f"{recent:.1f}", refresh=False)
            self._progress.update(env_steps)
        if self._evaluation is not None:
            self._evaluation.check()
            if self._evaluation.wants_params:
                self._evaluation.publish(state.params, self.env_steps)

    def _write_metrics(self) -> None:
        """Writes the means of the metrics since the last write, with the speed and the rate."""
        metrics = self._tensorboard_window.take(self.env_steps, self.frames_per_step)
        self.logger.metrics(self.env_steps, {**metrics, "learning_rate": self.config.learning_rate})

    def _summary_line(self) -> None:
        """Writes and prints the summary line of the updates since the last one."""
        metrics = self._line_window.take(self.env_steps, self.frames_per_step)
        console(self.logger.summary(self.env_steps, metrics))
        self._last_line = time.monotonic()

    def _evaluate(self, state: TrainState) -> None:
        """Hands the scheduled evaluation of ``state``'s params to the worker thread.

        Waits first for the one before it; the params are copied to the host, since the next
        update may reuse their device buffers.
        """
        index, step = self.env_steps // self.config.eval_every, self.env_steps
        self._wait_for_evaluation()
        with self.timer.phase("evaluation"):
            params = jax.device_get(state.params)
        play = self._play_evaluation
        self._pending_evaluation = self._evaluator.submit(play, params, index, step)
        self._next_eval = self._next_multiple(self.config.eval_every)

    def _play_evaluation(self, params: Any, index: int, step: int) -> None:
        """Plays evaluation number ``index`` with ``params`` (of training ``step``) and logs it."""
        games = self._scheduled(params, index)
        line = self.logger.evaluation(step, [g.returns for g in games], [g.length for g in games])
        console(line)

    def _wait_for_evaluation(self) -> None:
        """Waits for the evaluation in flight, if any, re-raising its exception; the wait is
        timed as the ``evaluation`` phase."""
        pending, self._pending_evaluation = self._pending_evaluation, None
        if pending is not None:
            with self.timer.phase("evaluation"):
                pending.result()

    @contextlib.contextmanager
    def _saving_on_log_failure(self, state: TrainState, carry: Carry) -> Iterator[None]:
        """Turns a log-write failure raised inside (by this thread or an evaluation) into one
        that names the final checkpoint saved after it (see :meth:`_saved_after`)."""
        try:
            yield
        except (LogWriteError, RuntimeError) as e:
            if self.logger.failure is None:
                raise
            raise self._saved_after(self.logger.failure, state, carry) from e

    def _saved_after(
        self, failure: LogWriteError, state: TrainState, carry: Carry
    ) -> LogWriteError:
        """``failure`` with the outcome of the final checkpoint the run attempts after it."""
        try:
            checkpoint = self.save(state, carry)
        except CheckpointWriteError as e:
            return LogWriteError(f"{failure}; the final checkpoint failed too: {e}")
        return LogWriteError(
            f"{failure}; the run stopped at step {self.env_steps}, saved {checkpoint}"
        )

    def _diverged(self, problem: str) -> TrainingDiverged:
        """The error for ``problem``, naming the newest finite checkpoint; logs it first."""
        last_good, _ = latest_good_checkpoint(self.run_dir / "checkpoints")
        message = f"{problem}; last good checkpoint: {last_good or 'none was saved'}"
        self.logger.line(f"DIVERGED: {message}")
        return TrainingDiverged(message)

    def save(self, state: TrainState, carry: Carry = None) -> Path:
        """Writes a checkpoint of ``state`` (and ``carry``, the env log) with the counters.

        Raises:
            TrainingDiverged: ``state`` is not finite; nothing is written.
        """
        mean_return = self.logger.mean_recent_return()
        meta = {
            "mode": self.mode,
            "env_steps": self.env_steps,
            "updates": self.updates,
            "frames": self.env_steps * self.frames_per_step,
            "mean_return": mean_return if math.isfinite(mean_return) else None,
            "recent_returns": list(self.logger.recent_returns),
            "config": self.config.to_dict(),
        }
        env_actions = None
        if self._env is not None and self._env.last is not None:
            env_actions = self._env.log.arrays()
            meta["env_fingerprint"] = timestep_fingerprint(self._env.last)
        with self.timer.phase("checkpoint"):
            directory = self.run_dir / "checkpoints"
            try:
                self.last_checkpoint = save_checkpoint(
                    directory,
                    state,
                    meta,
                    env_steps=self.env_steps,
                    carry=carry,
                    env_actions=env_actions,
                )
            except NonFiniteState as e:
                raise self._diverged(f"refused to save: {e}") from e
            self._saved_step = self.env_steps
            prune_checkpoints(
                directory, keep_last=self.config.nb_last_model, keep_best=self.config.nb_top_model
            )
        return self.last_checkpoint

    def finish(self, state: TrainState, carry: Carry = None) -> RunResult:
        """Waits for the evaluation in flight, saves the final checkpoint and summary and
        returns what the run did."""
        with self._saving_on_log_failure(state, carry):
            self._wait_for_evaluation()
        if self.updates and self._saved_step != self.env_steps:
            self.save(state, carry)
        if self._tensorboard_window.updates:
            self._write_metrics()
        if self._line_window.updates:
            self._summary_line()
        seconds = time.perf_counter() - self._start
        return RunResult(
            run_dir=self.run_dir,
            env_steps=self.env_steps,
            frames=self.env_steps * self.frames_per_step,
            updates=self.updates,
            seconds=seconds,
            warmup_seconds=self._warmup_seconds,
            episode_returns=self.episode_returns,
            recent_return=self.logger.mean_recent_return(),
            metrics=self.metrics,
            phase_seconds=dict(self.timer.seconds),
            bound=self.timer.bound(),
            last_checkpoint=self.last_checkpoint,
            state=state,
            interrupted=self.stop.is_set(),
            start_env_steps=self.start_env_steps,
            start_updates=self.start_updates,
        )

    def close(self) -> None:
        """Waits for the evaluation in flight, stops the evaluation thread, logs the totals and
        timings and closes the files.

        Call it in ``finally``. Re-raises the evaluation thread's exception, if it failed, unless
        it is the logger's failure (already raised by :meth:`record`).
        """
        try:
            if self._evaluator is not None:
                self._evaluator.shutdown(wait=True)
            if self._evaluation is not None:
                self._evaluation.close()
        except RuntimeError as e:
            if self.logger.failure is None or e.__cause__ is not self.logger.failure:
                raise
        finally:
            self._progress.close()
            seconds = time.perf_counter() - self._start
            if self._evaluation is not None:
                busy = self._evaluation.busy_seconds
                self.logger.line(
                    f"EVAL: {len(self._evaluation.episodes)} games, thread busy {busy:.2f}s "
                    f"({100 * busy / max(seconds, 1e-9):.1f}% of one core)"
                )
            self.logger.line(
                f"END: steps {self.env_steps} frames {self.env_steps * self.frames_per_step} "
                f"updates {self.updates} seconds {seconds:.1f} bound-by {self.timer.bound()} "
                "phases " + " ".join(f"{k}={v:.2f}s" for k, v in self.timer.seconds.items())
            )
            try:
                self.logger.close()
            finally:
                self._lock.release()


class SilentRun:
    """The interface of :class:`TrainingRun` a mode's loop uses, for a process that must not write.

    A towered process other than process 0 trains in lockstep with process 0, which writes the
    run directory. This one keeps what its loop needs, the stop event, the phase timer and the
    counters, and writes nothing: no run directory, log, tensorboard event, checkpoint or
    progress bar, and it starts no evaluation thread. It stops at the budget or on ``stop`` as a
    ``TrainingRun`` would; its counters start at 0 (the process has no checkpoint to read). It
    raises :class:`TrainingDiverged` at the update where process 0's ``TrainingRun`` does: both
    read the same replicated learner state's check.
    """

    def __init__(self, config: TrainConfig, *, stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.timer = PhaseTimer()
        self.env_steps = 0
        self.updates = 0

    @property
    def finished(self) -> bool:
        """Whether the step budget is spent or a stop was requested."""
        return self.env_steps >= self.config.max_train_steps or self.stop.is_set()

    def updates_before_pause(self, steps_per_update: int) -> int:
        """Updates of ``steps_per_update`` steps left in the budget (no checkpoint pauses)."""
        return _updates_until(self.config.max_train_steps, self.env_steps, steps_per_update)

    def announce(self, state: TrainState, *lines: str) -> None:
        """Says nothing: the writing process announces the run."""
        del state, lines

    def restore(self, state: TrainState, carry: Carry = None) -> tuple[TrainState, Carry]:
        """``(state, carry)`` as given: this process reads no checkpoint.

        When resuming it warns that the envs restart fresh; the mode takes the learner state
        from the writing process.
        """
        if self.config.resume:
            warnings.warn(
                f"process {jax.process_index()}: resuming with the learner state of process "
                "0's checkpoint; this process's envs restart fresh",
                ResumeWarning,
                stacklevel=3,
            )
        return state, carry

    def resumable_env(self, env: BatchedEnv) -> BatchedEnv:
        """``env`` itself: no checkpoint of this process records its actions."""
        return env

    def start_evaluation(
        self, make_env: Callable[[int, int], BatchedEnv], network: nn.Module
    ) -> None:
        """Starts nothing: the writing process evaluates."""
        del make_env, network

    @property
    def evaluation(self) -> None:
        """No evaluation thread runs here."""
        return None

    def record(
        self,
        state: TrainState,
        metrics: Metrics,
        env_steps: int,
        episodes: Iterable[Episode],
        *,
        carry: Carry = None,
    ) -> None:
        """Counts one learner update that consumed ``env_steps`` environment steps.

        Raises:
            TrainingDiverged: a metric, or the new learner state, is NaN or infinite.
        """
        del state, episodes, carry
        metrics, diverged = _host_metrics(metrics)
        if diverged:
            problem = _divergence(metrics, self.updates + 1, self.env_steps + env_steps)
            raise TrainingDiverged(f"{problem}; process 0 names the last good checkpoint")
        self.env_steps += env_steps
        self.updates += 1

    def finish(self, state: TrainState, carry: Carry = None) -> None:
        """Nothing to save or report: the writing process returns the run's result."""
        del state, carry

    def close(self) -> None:
        """Nothing to close."""
