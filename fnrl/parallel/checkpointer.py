"""The run's checkpoints: the one resume path, and the named pieces each checkpoint saves.

:func:`find_resume_point` opens what ``--resume`` names (the newest intact checkpoint, falling
back past corrupt ones); a :class:`Checkpointer` restores the learner state and carry from it,
brings the envs back to their exact state (:meth:`Checkpointer.resumable_env`, see
:mod:`fnrl.parallel.resume`) and writes each new checkpoint with its pieces: the learner state
(with the agent state's own pieces, such as a replay buffer), the carry and the env action log
(see :mod:`fnrl.checkpoint`). A process that must not write gets :class:`NoCheckpoints`, which
has the same methods and writes nothing.

Impure: reads and writes the run directory.
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax

from fnrl.checkpoint import (
    CARRY,
    ENV_ACTIONS,
    CheckpointError,
    latest_good_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_piece,
    read_meta,
    remove_incomplete,
    save_checkpoint,
    step_of,
)
from fnrl.config import TrainConfig, long_flag
from fnrl.envs import BatchedEnv
from fnrl.parallel.budget import Schedule
from fnrl.parallel.phases import PhaseTimer
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.parallel.runlog import RunLog
from fnrl.types import Carry, TrainState

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
    "hidden_size",
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


def _mean_return(path: Path) -> float:
    try:
        value = float(read_meta(path).get("mean_return", math.nan))
    except (CheckpointError, TypeError, ValueError):
        return math.nan
    return value


def prune_checkpoints(
    directory: str | os.PathLike, *, keep_last: int, keep_best: int = 0
) -> list[Path]:
    """Deletes all checkpoints but the ``keep_last`` most recent and the ``keep_best`` best.

    "Best" ranks by ``meta["mean_return"]`` (higher first; checkpoints without one, or with
    nan, never rank), adept's top-N model saver.

    Returns:
        The deleted paths.
    """
    found = list_checkpoints(directory)
    keep = set(found[-keep_last:]) if keep_last > 0 else set()
    ranked = [(r, step_of(p), p) for p in found if math.isfinite(r := _mean_return(p))]
    ranked.sort(key=lambda item: (-item[0], -item[1]))
    keep.update(p for _, _, p in ranked[:keep_best])
    removed = [p for p in found if p not in keep]
    for path in removed:
        # Hidden first: a crash mid-deletion leaves no half checkpoint that looks complete.
        hidden = path.with_name(f".{path.name}.deleting")
        os.replace(path, hidden)
        shutil.rmtree(hidden)
    return removed


class ResumePoint(NamedTuple):
    """The checkpoint a run continues from; ``checkpoint`` is None for a new run."""

    checkpoint: Path | None
    meta: dict  # its meta.json: counters, config, recent returns, env fingerprint
    skipped: list[str]  # a warning for each newer checkpoint that was corrupt

    @property
    def env_steps(self) -> int:
        """The environment steps the run had done (0 for a new run)."""
        return int(self.meta.get("env_steps", 0))

    @property
    def updates(self) -> int:
        """The updates the run had done (0 for a new run)."""
        return int(self.meta.get("updates", 0))


NEW_RUN = ResumePoint(None, {}, [])


def resumed_dir(config: TrainConfig) -> Path:
    """The run directory ``config.resume`` names.

    Raises:
        ValueError: it does not exist.
    """
    run_dir = Path(config.resume).expanduser()
    if not run_dir.is_dir():
        raise ValueError(f"--resume {config.resume}: no such run directory")
    return run_dir


def find_resume_point(run_dir: Path, config: TrainConfig, mode: str) -> ResumePoint:
    """The newest good checkpoint of the (locked) ``run_dir`` that ``config.resume`` names.

    Clears what interrupted saves left behind first. :data:`NEW_RUN` without ``config.resume``.

    Raises:
        CheckpointError: no checkpoint is intact.
        ValueError: the run saved none, was trained in another mode, ``config`` changes a
            setting of :data:`FIXED_ON_RESUME`, or the checkpoint has reached its budget.
    """
    if not config.resume:
        return NEW_RUN
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
    if meta["env_steps"] >= config.max_train_steps:  # it would replay them all and train none
        raise ValueError(
            f"--resume {config.resume}: the run already finished its {meta['env_steps']} steps "
            f"(--max-train-steps {config.max_train_steps}); raise --max-train-steps to train on"
        )
    skipped = [f"{e}; resuming from the older {checkpoint.name}" for e in errors]
    return ResumePoint(checkpoint, meta, skipped)


class Checkpointer:
    """Restores a run from its resume point and writes its checkpoints.

    A checkpoint is due after the run's first update (adept wrote its first one right away),
    then each time the step count crosses a multiple of ``config.epoch_len``; the run also
    saves at its end. Checkpoints keep the ``config.nb_last_model`` most recent and the
    ``config.nb_top_model`` best (by the recent return at save time, adept's top-N saver).

    Args:
        run_dir: the run directory.
        config: the run's settings.
        mode: the execution mode, written into each checkpoint.
        resume: where the run continues from (:func:`find_resume_point`).
        log: the run's log, for its resume lines and warnings and the recent returns.
        timer: accumulates the ``checkpoint`` and ``replay`` phases.
        frames_per_step: frames per agent step, for the checkpoints' counters.
    """

    def __init__(
        self,
        run_dir: Path,
        config: TrainConfig,
        mode: str,
        resume: ResumePoint,
        log: RunLog,
        timer: PhaseTimer,
        *,
        frames_per_step: int,
    ) -> None:
        self.directory = run_dir / "checkpoints"
        self._config, self._mode, self._resume = config, mode, resume
        self._log, self._timer, self._frames_per_step = log, timer, frames_per_step
        self.resumed_from: Path | None = resume.checkpoint
        self.replayed_steps = 0  # vector steps of the action log replayed by resumable_env
        self.last_checkpoint: Path | None = resume.checkpoint
        self._saved_step: int | None = resume.env_steps if resume.checkpoint else None
        self._env: ResumableEnv | None = None
        self._restored = False
        self._schedule = Schedule(
            config.epoch_len, resume.env_steps, first_update=resume.checkpoint is None
        )
        for message in resume.skipped:
            self._warn(message)
        if resume.checkpoint is not None:
            log.line(
                f"RESUME: from {resume.checkpoint} at step {resume.env_steps} "
                f"(update {resume.updates})"
            )

    def restore(self, state: TrainState, carry: Carry = None) -> tuple[TrainState, Carry]:
        """The learner state (and carry) to start from: the given ones, or the checkpoint's.

        Args:
            state: the fresh state; when resuming, the template the checkpoint loads into
                (its ``agent_state`` pieces included).
            carry: optional fresh carry of the acting envs (a pytree with a leading [B] axis);
                replaced by the checkpoint's when it has one.

        Returns:
            ``(state, carry)`` on the default device.

        Raises:
            CheckpointError: the checkpoint is corrupt or does not fit (naming the entry).
        """
        self._restored = True
        checkpoint = self._resume.checkpoint
        if checkpoint is None:
            return state, carry
        state, _ = load_checkpoint(checkpoint, state)
        if carry is not None:
            saved = load_piece(checkpoint, CARRY, carry)
            carry = carry if saved is None else saved
        return jax.device_put(state), jax.device_put(carry)

    def check_restored(self, mode: str) -> None:
        """Raises ``RuntimeError`` when the run resumes but ``mode`` never called
        :meth:`restore`."""
        if self._resume.checkpoint is not None and not self._restored:
            raise RuntimeError(
                f"{mode} mode does not restore checkpoints yet: --resume is not supported "
                "in it (see fnrl.parallel.resume for what a mode does to support it)"
            )

    def resumable_env(self, env: BatchedEnv) -> BatchedEnv:
        """Wraps ``env`` so that the run's checkpoints let a resume restore it exactly.

        Call it before the first ``env.reset()``. With ``config.exact_resume`` the wrapper
        records every action; when resuming, its ``reset`` replays the checkpoint's log (see
        :mod:`fnrl.parallel.resume`). Without it, or when the checkpoint has no log, ``env`` is
        used as it is and a resume warns that it is not exact.
        """
        checkpoint = self._resume.checkpoint
        if not self._config.exact_resume:
            if checkpoint is not None:
                self._warn(
                    "--exact-resume is false: the envs restart fresh, so this run will not "
                    "continue exactly as an uninterrupted one"
                )
            return env
        replay = None
        if checkpoint is not None:
            arrays = load_piece(checkpoint, ENV_ACTIONS)
            if arrays is None:
                self._warn(
                    f"{checkpoint} holds no env action log (saved with --exact-resume "
                    "false or by a mode without it): the envs restart fresh, so this run will "
                    "not continue exactly as an uninterrupted one"
                )
            else:
                try:
                    replay = ActionLog(env.spec.actions, env.num_envs, arrays)
                except ValueError as e:
                    raise CheckpointError(f"checkpoint {checkpoint}: {e}") from e
        expected = self._resume.meta.get("env_fingerprint") if replay is not None else None
        self._env = ResumableEnv(env, replay, on_replay=self._replayed, expected=expected)
        return self._env

    def _warn(self, message: str) -> None:
        self._log.line(f"WARNING: {message}")
        warnings.warn(message, ResumeWarning, stacklevel=3)

    def _replayed(self, steps: int, seconds: float, matched: bool | None) -> None:
        self.replayed_steps = steps
        self._timer.seconds["replay"] += seconds
        self._log.line(
            f"RESUME: replayed {steps} vector steps ({steps * self._env.num_envs} env steps) in "
            f"{seconds:.2f}s"
        )
        if matched is False:
            self._warn(
                "the replayed envs do not match the checkpoint (a non-deterministic env?): the "
                "run continues, but not exactly as an uninterrupted one"
            )

    @property
    def next_due(self) -> float:
        """The step at or after which the next checkpoint is due."""
        return self._schedule.next

    def saved_at(self, env_steps: int) -> bool:
        """Whether the newest checkpoint is of ``env_steps``."""
        return self._saved_step == env_steps

    def save(self, state: TrainState, carry: Carry, env_steps: int, updates: int) -> Path:
        """Writes a checkpoint of ``state`` (with its agent state's pieces), the carry and the
        env action log, with the counters; then prunes the older ones.

        Raises:
            NonFiniteState: ``state`` is not finite; nothing is written.
            CheckpointWriteError: a file could not be written (naming it).
        """
        mean_return = self._log.mean_recent_return()
        meta = {
            "mode": self._mode,
            "env_steps": env_steps,
            "updates": updates,
            "frames": env_steps * self._frames_per_step,
            "mean_return": mean_return if math.isfinite(mean_return) else None,
            "recent_returns": list(self._log.recent_returns),
            "config": self._config.to_dict(),
        }
        pieces = {} if carry is None else {CARRY: carry}
        if self._env is not None and self._env.last is not None:
            pieces[ENV_ACTIONS] = self._env.log.arrays()
            meta["env_fingerprint"] = timestep_fingerprint(self._env.last)
        with self._timer.phase("checkpoint"):
            self.last_checkpoint = save_checkpoint(
                self.directory, state, meta, env_steps=env_steps, pieces=pieces
            )
            self._saved_step = env_steps
            self._schedule.advance(env_steps)
            prune_checkpoints(
                self.directory,
                keep_last=self._config.nb_last_model,
                keep_best=self._config.nb_top_model,
            )
        return self.last_checkpoint

    def last_good(self) -> str:
        """Where the newest finite checkpoint on disk is, for a divergence message."""
        last_good, _ = latest_good_checkpoint(self.directory)
        return f"last good checkpoint: {last_good or 'none was saved'}"


class NoCheckpoints:
    """A :class:`Checkpointer`'s methods for a process that must not write: it reads and
    writes no checkpoint, and its envs are not recorded (the writing process resumes).

    Args:
        config: the run's settings.
    """

    resumed_from = None
    last_checkpoint = None
    next_due = math.inf
    replayed_steps = 0

    def __init__(self, config: TrainConfig) -> None:
        self._config = config

    def restore(self, state: TrainState, carry: Carry = None) -> tuple[TrainState, Carry]:
        """``(state, carry)`` as given: this process reads no checkpoint.

        When resuming it warns that the envs restart fresh; the mode takes the learner state
        from the writing process.
        """
        if self._config.resume:
            warnings.warn(
                f"process {jax.process_index()}: resuming with the learner state of process "
                "0's checkpoint; this process's envs restart fresh",
                ResumeWarning,
                stacklevel=3,
            )
        return state, carry

    def check_restored(self, mode: str) -> None:
        """Nothing to check: this process restores nothing."""
        del mode

    def resumable_env(self, env: BatchedEnv) -> BatchedEnv:
        """``env`` itself: no checkpoint of this process records its actions."""
        return env

    def saved_at(self, env_steps: int) -> bool:
        """Always True: nothing is left to save here."""
        del env_steps
        return True

    def save(self, state: TrainState, carry: Carry, env_steps: int, updates: int) -> None:
        """Writes nothing: the writing process saves the run."""
        del state, carry, env_steps, updates

    def last_good(self) -> str:
        """The writing process knows the last good checkpoint."""
        return "process 0 names the last good checkpoint"
