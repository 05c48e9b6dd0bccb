"""What every execution mode does around its loop: run directory, logs, checkpoints, budget.

Impure: owns files, the clock and the progress bar. A mode builds a ``TrainingRun``, calls
``record`` after each learner update and ``finish`` at the end; ``close`` always.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jax
from tqdm import tqdm

from fnrl.checkpoint import prune_checkpoints, save_checkpoint
from fnrl.config import TrainConfig
from fnrl.logging import RunLogger, make_run_dir, run_id
from fnrl.networks import count_params
from fnrl.parallel.rollout import Episode, PhaseTimer
from fnrl.types import Metrics, TrainState


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class RunResult:
    """What a finished (or stopped) training run did."""

    run_dir: Path
    env_steps: int  # agent steps summed over envs
    frames: int  # env_steps times the frame skip
    updates: int
    seconds: float
    warmup_seconds: float  # until the end of the first update, compilation included
    episode_returns: list[float]
    metrics: list[dict[str, float]]  # one dict per update
    phase_seconds: dict[str, float]
    bound: str  # the phase that took the most time
    last_checkpoint: Path | None
    state: TrainState  # the learner state at the end
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        """Frames per second over the whole run, compilation included."""
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    @property
    def steady_frames_per_second(self) -> float:
        """Frames per second after the first update (compiled code only); nan if one update."""
        if self.updates < 2:
            return math.nan
        frames_after_first = self.frames * (self.updates - 1) / self.updates
        return frames_after_first / (self.seconds - self.warmup_seconds)


class TrainingRun:
    """The counters, logs and checkpoints of one training run.

    Checkpoints are written after the first update (adept wrote its first one right away), then
    each time the step count crosses a multiple of ``config.epoch_len``, and at the end; the
    ``config.nb_top_model`` most recent are kept. The run is ``finished`` at the first update
    boundary at or after ``config.max_train_steps``, or once ``stop`` is set.
    """

    def __init__(
        self,
        config: TrainConfig,
        mode: str,
        *,
        frames_per_step: int,
        stop: threading.Event | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.config = config
        self.stop = stop or threading.Event()
        self.timer = PhaseTimer()
        self.frames_per_step = frames_per_step
        self.run_dir = make_run_dir(config.log_dir, config.env_id, run_id(mode, config))
        self.logger = RunLogger(self.run_dir, config.to_dict(), config.summary_frequency)
        self.env_steps = 0
        self.updates = 0
        self.episode_returns: list[float] = []
        self.metrics: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self._next_save = 0
        self._start = time.perf_counter()
        self._warmup_seconds = math.nan
        self._progress = tqdm(  # disable=None: shown on a terminal only
            total=config.max_train_steps,
            unit="step",
            disable=None if show_progress is None else not show_progress,
            smoothing=0,
        )

    @property
    def finished(self) -> bool:
        """Whether the step budget is spent or a stop was requested."""
        return self.env_steps >= self.config.max_train_steps or self.stop.is_set()

    def announce(self, state: TrainState) -> None:
        """Prints and logs the parameter count and where the run writes."""
        for line in (
            f"Network parameters: {count_params(state.params['params']):,}",
            str(self.run_dir),
        ):
            self.logger.line(line)
            print(line, flush=True)

    def record(
        self, state: TrainState, metrics: Metrics, env_steps: int, episodes: Iterable[Episode]
    ) -> None:
        """Accounts for one learner update that consumed ``env_steps`` environment steps.

        Raises:
            TrainingDiverged: a metric is NaN or infinite; the last good checkpoint is kept.
        """
        metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
        if not all(math.isfinite(value) for value in metrics.values()):
            raise TrainingDiverged(
                f"non-finite loss or gradient at update {self.updates + 1} "
                f"(step {self.env_steps + env_steps}): {metrics}; "
                f"last good checkpoint: {self.last_checkpoint or 'none'}"
            )
        self.env_steps += env_steps
        self.updates += 1
        if self.updates == 1:
            self._warmup_seconds = time.perf_counter() - self._start
        self.metrics.append(metrics)
        for episode in episodes:
            self.episode_returns.append(episode.returns)
            self.logger.episode(self.env_steps, episode.returns, episode.length)
        elapsed = time.perf_counter() - self._start
        speed = {"frames_per_second": self.env_steps * self.frames_per_step / elapsed}
        if self.logger.summary(self.env_steps, {**metrics, **speed}):
            self._progress.set_postfix(
                fps=f"{speed['frames_per_second']:.0f}",
                ret=f"{self.logger.mean_recent_return(20):.1f}",
            )
        self._progress.update(env_steps)
        if self.env_steps >= self._next_save:
            self.save(state)
            epoch_len = self.config.epoch_len
            self._next_save = (self.env_steps // epoch_len + 1) * epoch_len

    def save(self, state: TrainState) -> Path:
        """Writes a checkpoint of ``state`` with the run's counters and config."""
        meta = {
            "env_steps": self.env_steps,
            "updates": self.updates,
            "config": self.config.to_dict(),
        }
        with self.timer.phase("checkpoint"):
            directory = self.run_dir / "checkpoints"
            self.last_checkpoint = save_checkpoint(directory, state, meta, env_steps=self.env_steps)
            prune_checkpoints(directory, self.config.nb_top_model)
        return self.last_checkpoint

    def finish(self, state: TrainState) -> RunResult:
        """Saves the final checkpoint and summary and returns what the run did."""
        if self.updates:
            self.save(state)
            self.logger.summary(self.env_steps, self.metrics[-1], force=True)
        seconds = time.perf_counter() - self._start
        return RunResult(
            run_dir=self.run_dir,
            env_steps=self.env_steps,
            frames=self.env_steps * self.frames_per_step,
            updates=self.updates,
            seconds=seconds,
            warmup_seconds=self._warmup_seconds,
            episode_returns=self.episode_returns,
            metrics=self.metrics,
            phase_seconds=dict(self.timer.seconds),
            bound=self.timer.bound(),
            last_checkpoint=self.last_checkpoint,
            state=state,
            interrupted=self.stop.is_set(),
        )

    def close(self) -> None:
        """Logs the totals and phase timings and closes the files; call it in ``finally``."""
        self._progress.close()
        seconds = time.perf_counter() - self._start
        self.logger.line(
            f"END: steps {self.env_steps} frames {self.env_steps * self.frames_per_step} "
            f"updates {self.updates} seconds {seconds:.1f} bound-by {self.timer.bound()} phases "
            + " ".join(f"{k}={v:.2f}s" for k, v in self.timer.seconds.items())
        )
        self.logger.close()
