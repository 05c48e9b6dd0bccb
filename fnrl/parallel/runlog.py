"""What a run tells its user: ``train_log.txt``, tensorboard, the CSVs, stdout and the bar.

Each update's metrics go to tensorboard after every ``config.log_interval``-th update of the
run, resumed or not (their means, with the frames per second and the learning rate over the
updates since the last write, and once more at the end); a summary line goes to stdout and
``train_log.txt`` every ``config.summary_frequency`` seconds, and at the end. On a terminal a
progress bar shows the steps, the recent frames per second and the recent return. The files
are written by :class:`fnrl.logging.RunLogger`; :class:`RunLog` decides when. A process that
must not write gets :class:`SilentLog`, which has the same methods and writes nothing.

Impure: writes files and stdout, reads the clock.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from fnrl.config import TrainConfig
from fnrl.logging import RunLogger
from fnrl.parallel.budget import Budget
from fnrl.parallel.phases import Episode, PhaseTimer


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
    """Prints ``line`` on stdout at once, above the progress bar when one is shown.

    stdout is a convenience: once a write to it fails (its reader is gone: ``| head``, or a
    ``| tee`` ended by the same Ctrl-C as the run), stdout goes to ``os.devnull`` and the run
    goes on; ``train_log.txt``, tensorboard and the checkpoints hold what it reports.
    """
    try:
        tqdm.write(line)
        sys.stdout.flush()
    except OSError:
        _stdout_to_devnull()


def _stdout_to_devnull() -> None:
    """Points the process's stdout at ``os.devnull``, so that no later write (a line, the
    interpreter's last flush) fails; nothing to do for a stdout without a file descriptor."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # io.UnsupportedOperation: a stdout replaced in-process
        pass


class RunLog:
    """The run's logs: when each line, scalar and row is written, and the progress bar.

    Args:
        run_dir: the run directory.
        config: the run's settings (``config.json``, the intervals, the budget of the bar).
        frames_per_step: frames per agent step, for the frames per second and the CSVs.
        resume_step: the step a resumed run continues from (its logs drop what an earlier start
            wrote after it); None for a new run.
        show_progress: progress bar on/off; ``None`` shows it on a terminal only.

    Raises:
        LogWriteError: a log file cannot be written.
    """

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        *,
        frames_per_step: int,
        resume_step: int | None,
        show_progress: bool | None,
    ) -> None:
        self.writer = RunLogger(
            run_dir,
            config.to_dict(),
            config.summary_frequency,
            frames_per_step=frames_per_step,
            resume_step=resume_step,
            wandb_project=config.wandb_project,
        )
        self._config, self._frames_per_step = config, frames_per_step
        env_steps = resume_step or 0
        self._tensorboard_window = MetricsWindow(env_steps)
        self._line_window = MetricsWindow(env_steps)
        self._last_line = time.monotonic()
        self._progress = tqdm(  # disable=None: shown on a terminal only
            total=config.max_train_steps,
            initial=min(env_steps, config.max_train_steps),
            unit="step",
            disable=None if show_progress is None else not show_progress,
            smoothing=0.1,
        )

    @property
    def failure(self) -> Exception | None:
        """The first write that failed (a ``LogWriteError``), if any."""
        return self.writer.failure

    @property
    def recent_returns(self) -> Sequence[float]:
        """The returns of the last ``RECENT_EPISODES`` training games."""
        return self.writer.recent_returns

    def remember_returns(self, returns: Iterable[float]) -> None:
        """Counts a resumed run's recent returns (from its checkpoint) as recent again."""
        self.writer.recent_returns.extend(returns)

    def mean_recent_return(self) -> float:
        """The mean of the recent returns, nan before the first game ends."""
        return self.writer.mean_recent_return()

    def line(self, text: str) -> None:
        """Appends one line to ``train_log.txt``."""
        self.writer.line(text)

    def announce(self, *lines: str) -> None:
        """Writes ``lines`` to ``train_log.txt`` and prints them."""
        for line in lines:
            self.writer.line(line)
            console(line)

    def update(
        self,
        budget: Budget,
        metrics: Mapping[str, float],
        env_steps: int,
        episodes: Iterable[Episode],
    ) -> None:
        """Logs an update (already counted by ``budget``) of ``env_steps`` steps: its finished
        games, its metrics when an interval is due, and the bar."""
        step = budget.env_steps
        for episode in episodes:
            self.writer.episode(step, episode.returns, episode.length)
        self._tensorboard_window.add(metrics)
        self._line_window.add(metrics)
        if budget.updates % self._config.log_interval == 0:  # the same steps after a resume
            self._write_metrics(step)
        if budget.first_of_session:  # its time was mostly compilation
            for window in (self._tensorboard_window, self._line_window):
                window.restart_clock(step)
            self._last_line = time.monotonic()
        elif time.monotonic() - self._last_line >= self._config.summary_frequency:
            self._summary_line(step)
        if not self._progress.disable:
            recent = self.mean_recent_return()
            if math.isfinite(recent):
                self._progress.set_postfix(ret=f"{recent:.1f}", refresh=False)
            self._progress.update(env_steps)

    def evaluation(self, step: int, games: Sequence[Episode]) -> None:
        """Logs and prints a scheduled evaluation of the params of training ``step``."""
        line = self.writer.evaluation(step, [g.returns for g in games], [g.length for g in games])
        console(line)

    def _write_metrics(self, step: int) -> None:
        """Writes the means of the metrics since the last write, with the speed and the rate."""
        metrics = self._tensorboard_window.take(step, self._frames_per_step)
        self.writer.metrics(step, {**metrics, "learning_rate": self._config.learning_rate})

    def _summary_line(self, step: int) -> None:
        """Writes and prints the summary line of the updates since the last one."""
        metrics = self._line_window.take(step, self._frames_per_step)
        console(self.writer.summary(step, metrics))
        self._last_line = time.monotonic()

    def finish(self, step: int) -> None:
        """Writes the metrics and the summary line of the updates not yet written."""
        if self._tensorboard_window.updates:
            self._write_metrics(step)
        if self._line_window.updates:
            self._summary_line(step)

    def close(self, budget: Budget, timer: PhaseTimer, seconds: float) -> None:
        """Closes the bar, logs the totals and the phase timings, and closes the files.

        Raises:
            LogWriteError: a file could not be flushed or closed.
        """
        self._progress.close()
        steps = budget.env_steps
        self.writer.line(
            f"END: steps {steps} frames {steps * self._frames_per_step} "
            f"updates {budget.updates} seconds {seconds:.1f} bound-by {timer.bound()} "
            "phases " + " ".join(f"{k}={v:.2f}s" for k, v in timer.seconds.items())
        )
        self.writer.close()


class SilentLog:
    """A :class:`RunLog`'s methods for a process that must not write: nothing is written or
    printed, and no game counts as recent."""

    failure = None
    recent_returns: Sequence[float] = ()

    def remember_returns(self, returns: Iterable[float]) -> None:
        """Forgets them."""
        del returns

    def mean_recent_return(self) -> float:
        """nan: this process logs no game."""
        return math.nan

    def line(self, text: str) -> None:
        """Writes nothing."""
        del text

    def announce(self, *lines: str) -> None:
        """Says nothing: the writing process announces the run."""
        del lines

    def update(
        self,
        budget: Budget,
        metrics: Mapping[str, float],
        env_steps: int,
        episodes: Iterable[Episode],
    ) -> None:
        """Logs nothing."""
        del budget, metrics, env_steps, episodes

    def evaluation(self, step: int, games: Sequence[Episode]) -> None:
        """Logs nothing."""
        del step, games

    def finish(self, step: int) -> None:
        """Writes nothing."""
        del step

    def close(self, budget: Budget, timer: PhaseTimer, seconds: float) -> None:
        """Closes nothing."""
        del budget, timer, seconds
