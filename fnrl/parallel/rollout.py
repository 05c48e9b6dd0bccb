"""Collecting trajectories: a host loop for any BatchedEnv, a compiled rollout for envpool.

* :func:`collect`, the host loop: each step calls the compiled policy, copies its actions to the
  host and steps the envs from Python.
* :func:`make_compiled_rollout`: the T acting and env steps of a rollout inside one XLA
  computation through envpool's XLA interface (:meth:`fnrl.envs.EnvpoolEnv.xla`), with no
  Python per step. It computes what the host loop computes: the same per-step keys, the same
  TimeStep semantics (next-step autoreset, ``first``, termination vs truncation, clipped
  learning rewards with unclipped episode returns, frame stacks restarted on ``first``).

Local mode runs a :class:`Trainer`, picked from ``--rollout`` by :func:`make_trainer`:
:class:`HostTrainer` (the host loop, then one compiled update) or :class:`CompiledTrainer`
(several compiled rollouts and updates in one XLA computation, the trajectories never leaving
the device; it records the actions sent in the run's action log so that resume stays exact).

Impure: drives environments and reads the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from fnrl.envs import BatchedEnv, EnvpoolEnv
from fnrl.envs.envpool import XlaStep
from fnrl.parallel.phases import Episode, PhaseTimer
from fnrl.parallel.resume import ResumableEnv
from fnrl.specs import is_image
from fnrl.types import (
    Action,
    Carry,
    EpisodeStats,
    Metrics,
    Params,
    PRNGKey,
    TimeStep,
    TrainState,
    Trajectory,
)


class RolloutResult(NamedTuple):
    """One collected segment and where the envs stand after it."""

    trajectory: Trajectory
    timestep: TimeStep  # the envs' latest step, obs == trajectory.obs[-1]
    carry: Carry  # the body state after the segment, before the reset of timestep.first
    episodes: list[Episode]


def _stack(items: list) -> object:
    return jax.tree.map(lambda *xs: np.stack(xs), *items)


def collect(
    env: BatchedEnv,
    act: Callable,
    params: Params,
    key: PRNGKey,
    timestep: TimeStep,
    carry: Carry,
    length: int,
    timer: PhaseTimer,
) -> RolloutResult:
    """Steps ``env`` ``length`` times with the compiled ``act`` and returns the trajectory.

    Args:
        env: the batched environments, currently at ``timestep``.
        act: a compiled ``Agent.act``.
        params: the acting parameters.
        key: consumed; split into one key per step.
        timestep: the envs' latest step.
        carry: the body state before ``timestep.obs``.
        length: T, the number of agent steps per env.
        timer: accumulates the ``env`` and ``inference`` phases.

    Returns:
        A ``[T + 1, B]`` observation trajectory with ``[T, B]`` actions and rewards.
    """
    initial_carry = carry
    steps = [timestep]
    actions, logits, episodes = [], [], []
    for step_key in jax.random.split(key, length):
        with timer.phase("inference"):
            action, carry, output = act(params, step_key, carry, timestep.obs, timestep.first)
            action, output_logits = jax.device_get((action, output.logits))
        with timer.phase("env"):
            timestep = env.step(action)
        steps.append(timestep)
        actions.append(action)
        logits.append(output_logits)
        done = timestep.episode.done
        episodes.extend(
            Episode(float(r), int(n))
            for r, n in zip(
                timestep.episode.returns[done], timestep.episode.length[done], strict=True
            )
        )
    trajectory = Trajectory(
        obs=_stack([s.obs for s in steps]),
        first=np.stack([s.first for s in steps]),
        actions=_stack(actions),
        rewards=np.stack([s.reward for s in steps[1:]]).astype(np.float32),
        terminated=np.stack([s.terminated for s in steps[1:]]),
        truncated=np.stack([s.truncated for s in steps[1:]]),
        behaviour_logits=_stack(logits),
        initial_carry=initial_carry,
    )
    return RolloutResult(trajectory, timestep, carry, episodes)


def finished_episodes(stats: EpisodeStats) -> list[Episode]:
    """The games that ended in ``[T, B]`` episode statistics, step by step, env by env."""
    done = np.asarray(stats.done)
    returns, lengths = np.asarray(stats.returns)[done], np.asarray(stats.length)[done]
    return [Episode(float(r), int(n)) for r, n in zip(returns, lengths, strict=True)]


def make_compiled_rollout(step: XlaStep, act: Callable, length: int) -> Callable:
    """Builds the rollout as one function of the envs' handle, to be compiled with ``jax.jit``.

    ``rollout(handle, params, key, timestep, carry) -> (handle, trajectory, timestep, carry,
    episodes)`` acts and steps the envs ``length`` times in a ``lax.scan``: step ``t`` samples
    with the ``t``-th key of ``jax.random.split(key, length)``, as :func:`collect` does.

    Args:
        step: the envs' XLA step (:meth:`fnrl.envs.EnvpoolEnv.xla`).
        act: ``Agent.act``.
        length: T.

    Returns:
        The function; its ``trajectory`` is ``[T + 1, B]`` as :func:`collect`'s, ``timestep``
        the envs' last step, ``carry`` the body state after the segment and ``episodes`` the
        ``[T, B]`` :class:`EpisodeStats` of every step.
    """

    def rollout(handle, params, key, timestep, carry):
        def one_step(state, step_key):
            handle, timestep, carry = state
            action, carry, output = act(params, step_key, carry, timestep.obs, timestep.first)
            handle, timestep = step(handle, timestep, action)
            return (handle, timestep, carry), (timestep, action, output.logits)

        initial = (handle, timestep, carry)
        keys = jax.random.split(key, length)
        (handle, last, carry_out), (steps, actions, logits) = jax.lax.scan(one_step, initial, keys)
        with_first = jax.tree.map(lambda x, xs: jnp.concatenate([x[None], xs]), timestep, steps)
        trajectory = Trajectory(
            obs=with_first.obs,
            first=with_first.first,
            actions=actions,
            rewards=steps.reward,
            terminated=steps.terminated,
            truncated=steps.truncated,
            behaviour_logits=logits,
            initial_carry=carry,
        )
        return handle, trajectory, last, carry_out, steps.episode

    return rollout


class SegmentCollector:
    """Collects one T-step segment per call, compiled or from the host as ``--rollout`` says.

    ``collector(params, key, timestep, carry, timer) -> RolloutResult`` runs, on envpool envs
    unless ``--rollout host``, the compiled rollout (:func:`make_compiled_rollout`, timed as the
    ``rollout`` phase; it records the actions it sent in the log of a
    :class:`~fnrl.parallel.resume.ResumableEnv`), and otherwise the host loop (:func:`collect`,
    timed as ``inference`` and ``env``) with a compiled ``act``.

    Args:
        rollout: ``--rollout``: ``"auto"``, ``"compiled"`` or ``"host"``.
        env: the envs to step; a compiled rollout must be the only one to step them.
        act: ``Agent.act`` or a function of the same signature, not compiled.
        length: T.

    Raises:
        ValueError: ``"compiled"`` for envs that are not envpool's.
    """

    def __init__(self, rollout: str, env: BatchedEnv, act: Callable, length: int) -> None:
        self._env, self._length = env, length
        self._log = env if isinstance(env, ResumableEnv) else None
        self.compiled = wants_compiled_rollout(rollout, env)
        if self.compiled:
            self._handle, step = xla_steps(env)
            self._function = jax.jit(make_compiled_rollout(step, act, length))
        else:
            self._function = jax.jit(act)

    def compile(self, params: Params, key: PRNGKey, timestep: TimeStep, carry: Carry) -> None:
        """Compiles ahead of the first call, for arguments shaped and placed like these."""
        if self.compiled:
            args = (self._handle, params, key, timestep, carry)
        else:
            args = (params, key, carry, timestep.obs, timestep.first)
        self._function = self._function.lower(*args).compile()

    def __call__(
        self, params: Params, key: PRNGKey, timestep: TimeStep, carry: Carry, timer: PhaseTimer
    ) -> RolloutResult:
        """One segment from ``timestep`` and ``carry``, acting with ``params``; consumes ``key``."""
        if not self.compiled:
            return collect(
                self._env, self._function, params, key, timestep, carry, self._length, timer
            )
        with timer.phase("rollout"):
            self._handle, trajectory, timestep, carry, stats = self._function(
                self._handle, params, key, timestep, carry
            )
            stats, actions = jax.device_get((stats, trajectory.actions))
        if self._log is not None:
            self._log.record(actions, timestep)
        return RolloutResult(trajectory, timestep, carry, finished_episodes(stats))


def _unwrapped(env: BatchedEnv) -> BatchedEnv:
    return env.env if isinstance(env, ResumableEnv) else env


def supports_compiled_rollout(env: BatchedEnv) -> bool:
    """Whether ``env`` (possibly a ``ResumableEnv``) can be collected by a compiled rollout."""
    env = _unwrapped(env)
    return isinstance(env, EnvpoolEnv) and env.xla_problem is None


def check_rollout(rollout: str, env: BatchedEnv) -> None:
    """Raises ``ValueError`` when ``--rollout`` asks for a compiled rollout ``env`` cannot run.

    Modes call it before they create anything, so that the error leaves nothing behind.
    """
    if rollout == "compiled" and not supports_compiled_rollout(env):
        env = _unwrapped(env)
        problem = getattr(env, "xla_problem", None) or (
            f"it needs envpool envs, got {type(env).__name__}"
        )
        raise ValueError(f"--rollout compiled: {problem}; use --rollout host or auto")


def xla_steps(env: BatchedEnv) -> tuple[Any, XlaStep]:
    """``env``'s XLA interface (:meth:`fnrl.envs.EnvpoolEnv.xla`), unwrapping a ``ResumableEnv``.

    Raises:
        ValueError: ``env`` cannot be stepped inside XLA (it is not envpool's).
    """
    check_rollout("compiled", env)
    return _unwrapped(env).xla()


def wants_compiled_rollout(rollout: str, env: BatchedEnv) -> bool:
    """Whether ``--rollout`` asks for a compiled rollout of ``env``.

    ``"compiled"`` always (:func:`xla_steps` then rejects envs that cannot), ``"auto"`` for
    the envs that support one, ``"host"`` never.
    """
    return rollout == "compiled" or (rollout == "auto" and supports_compiled_rollout(env))


class UpdateResult(NamedTuple):
    """What one update of a :class:`Trainer` call did, for ``TrainingRun.record``."""

    metrics: Metrics  # name -> [] scalar
    episodes: list[Episode]  # whole games that ended in its rollout


class Trainer(Protocol):
    """Rollouts and learner updates of local mode, ``count`` of them per call.

    ``trainer(state, timestep, carry, first_update, count) -> (state, timestep, carry,
    results)`` runs ``count`` times: collect a T-step segment with the key
    ``fold_in(state.key, first_update + i)``, then update on it; ``results`` has one
    :class:`UpdateResult` per update. ``capacity`` is the largest ``count`` it takes and
    ``suggested_count`` how many updates fill about ``TARGET_CALL_SECONDS`` (the host looks
    at the run between calls: budget, checkpoints, Ctrl-C).
    """

    capacity: int

    def __call__(
        self, state: TrainState, timestep: TimeStep, carry: Carry, first_update: int, count: int
    ) -> tuple[TrainState, TimeStep, Carry, list[UpdateResult]]: ...

    def suggested_count(self) -> int: ...


TARGET_CALL_SECONDS = 0.25  # a compiled call's length: short enough for a prompt Ctrl-C


class HostTrainer:
    """The host loop (:func:`collect`) and one compiled update per call: any BatchedEnv.

    Args:
        env: the envs, before their first ``reset``.
        act: ``Agent.act``, not compiled.
        update: the pure learner step (``make_learner_update``), not compiled.
        length: T.
        timer: accumulates the ``inference``, ``env`` and ``learner`` phases.
    """

    capacity = 1

    def __init__(
        self, env: BatchedEnv, act: Callable, update: Callable, length: int, timer: PhaseTimer
    ) -> None:
        self._collect = SegmentCollector("host", env, act, length)
        self._update = jax.jit(update, donate_argnums=0)
        self._timer = timer

    def __call__(self, state, timestep, carry, first_update, count):
        """One rollout and one update; see :class:`Trainer`."""
        del count  # always 1
        key = jax.random.fold_in(state.key, first_update)
        rollout = self._collect(state.params, key, timestep, carry, self._timer)
        with self._timer.phase("learner"):
            state, metrics = self._update(state, rollout.trajectory)
            metrics = jax.device_get(metrics)
        result = UpdateResult(metrics, rollout.episodes)
        return state, rollout.timestep, rollout.carry, [result]

    def suggested_count(self) -> int:
        """Always 1."""
        return 1


class _UpdatesOutput(NamedTuple):
    """Per-update outputs of a compiled call, in buffers of ``capacity`` rows."""

    metrics: Metrics  # name -> [K]
    episodes: EpisodeStats  # [K, T, B]
    actions: Action  # name -> [K, T, B], for the action log


def make_compiled_training(
    step: XlaStep, act: Callable, update: Callable, length: int, capacity: int
) -> Callable:
    """Rollouts and updates as one function, to be compiled with ``jax.jit`` (Anakin's shape).

    ``train(handle, state, timestep, carry, first_update, count) -> (handle, state, timestep,
    carry, outputs)`` runs ``count`` (traced, at most ``capacity``) iterations of: the compiled
    rollout (:func:`make_compiled_rollout`) with the key ``fold_in(state.key, first_update +
    i)``, then ``update`` on its trajectory. ``count`` being traced, one executable serves every
    count and each update computes the same values however the updates are split into calls
    (Hessel et al. 2021, "Podracer architectures for scalable Reinforcement Learning").

    Args:
        step: the envs' XLA step.
        act: ``Agent.act``.
        update: the pure learner step ``update(state, trajectory) -> (state, metrics)``.
        length: T.
        capacity: K, the most updates per call: the rows of the per-update outputs (metrics
            ``[K]``, episode statistics and actions ``[K, T, B]``); rows past ``count`` are zeros.
            With K = 1 there is no loop: ``count`` must be 1.
    """
    rollout = make_compiled_rollout(step, act, length)

    def one_update(handle, state, timestep, carry, index):
        key = jax.random.fold_in(state.key, index)
        handle, trajectory, timestep, carry, episodes = rollout(
            handle, state.params, key, timestep, carry
        )
        state, metrics = update(state, trajectory)
        return (handle, state, timestep, carry), (metrics, episodes, trajectory.actions)

    def train(handle, state, timestep, carry, first_update, count):
        if capacity == 1:
            del count  # 1
            loop, outputs = one_update(handle, state, timestep, carry, first_update)
            return (*loop, jax.tree.map(lambda x: x[None], _UpdatesOutput(*outputs)))
        shapes = jax.eval_shape(one_update, handle, state, timestep, carry, first_update)[1]
        buffers = _UpdatesOutput(
            *jax.tree.map(lambda s: jnp.zeros((capacity, *s.shape), s.dtype), shapes)
        )

        def body(i, loop):
            loop, buffers = loop
            loop, outputs = one_update(*loop, first_update + i)
            buffers = jax.tree.map(lambda b, x: b.at[i].set(x), buffers, _UpdatesOutput(*outputs))
            return loop, buffers

        loop, buffers = jax.lax.fori_loop(
            0, count, body, ((handle, state, timestep, carry), buffers)
        )
        return (*loop, buffers)

    return train


class CompiledTrainer:
    """Rollouts and updates of envpool envs in one XLA computation per call (a :class:`Trainer`).

    No Python runs between env steps or between updates of a call: the trajectories never leave
    the device, and only the per-update metrics, episode statistics and actions (for the run's
    action log, when ``env`` is a :class:`~fnrl.parallel.resume.ResumableEnv`) come back. The
    envs must be stepped only through it once it exists (host steps before it, such as the
    replay of a resume, are fine). A call is timed as the ``rollout+learner`` phase.

    Args:
        env: envpool envs (:class:`~fnrl.envs.EnvpoolEnv`), possibly wrapped by
            ``ResumableEnv``, before their first ``reset``.
        act: ``Agent.act``, not compiled.
        update: the pure learner step, not compiled.
        length: T.
        timer: accumulates the ``rollout+learner`` phase.
        capacity: the most updates per call; ``None``: 64, or 1 for image observations on
            the CPU, where XLA runs convolution gradients inside a loop 4-21x slower than
            outside one (measured with jax 0.10.2) and a conv update is long enough that one
            per call costs nothing.

    Raises:
        ValueError: ``env`` is not envpool's.
    """

    def __init__(
        self,
        env: BatchedEnv,
        act: Callable,
        update: Callable,
        length: int,
        timer: PhaseTimer,
        capacity: int | None = None,
    ) -> None:
        self._handle, step = xla_steps(env)
        self._log = env if isinstance(env, ResumableEnv) else None
        if capacity is None:
            images = any(is_image(spec) for spec in env.spec.observations.values())
            capacity = 1 if images and jax.default_backend() == "cpu" else 64
        self.capacity = capacity
        self._train = jax.jit(
            make_compiled_training(step, act, update, length, capacity), donate_argnums=1
        )
        self._timer = timer
        self._seconds_per_update = math.inf

    def __call__(self, state, timestep, carry, first_update, count):
        """``count`` rollouts and updates in one call; see :class:`Trainer`."""
        if not 1 <= count <= self.capacity:
            raise ValueError(f"count must be in [1, {self.capacity}], got {count}")
        start = time.perf_counter()
        with self._timer.phase("rollout+learner"):
            self._handle, state, timestep, carry, outputs = self._train(
                self._handle, state, timestep, carry, first_update, count
            )
            outputs = jax.tree.map(lambda x: x[:count], jax.device_get(outputs))
        self._seconds_per_update = (time.perf_counter() - start) / count
        if self._log is not None:
            self._log.record(
                {name: a.reshape(-1, *a.shape[2:]) for name, a in outputs.actions.items()},
                timestep,
            )
        results = [
            UpdateResult(
                {name: value[i] for name, value in outputs.metrics.items()},
                finished_episodes(jax.tree.map(lambda x, i=i: x[i], outputs.episodes)),
            )
            for i in range(count)
        ]
        return state, timestep, carry, results

    def suggested_count(self) -> int:
        """Updates that fill about ``TARGET_CALL_SECONDS`` at the last call's speed (1 at first)."""
        return int(min(self.capacity, max(1, TARGET_CALL_SECONDS // self._seconds_per_update)))


def make_trainer(
    rollout: str,
    env: BatchedEnv,
    act: Callable,
    update: Callable,
    length: int,
    timer: PhaseTimer,
) -> Trainer:
    """The trainer ``--rollout`` names for ``env``.

    Args:
        rollout: ``"compiled"`` (:class:`CompiledTrainer`), ``"host"`` (:class:`HostTrainer`)
            or ``"auto"`` (compiled for envpool envs, else host).
        env: the envs, before their first ``reset``.
        act: ``Agent.act``, not compiled.
        update: the pure learner step, not compiled.
        length: T.
        timer: accumulates the phases.

    Raises:
        ValueError: ``"compiled"`` for envs that are not envpool's.
    """
    if wants_compiled_rollout(rollout, env):
        return CompiledTrainer(env, act, update, length, timer)
    return HostTrainer(env, act, update, length, timer)
