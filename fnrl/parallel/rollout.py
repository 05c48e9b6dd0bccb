"""The host loop that steps a BatchedEnv with a compiled policy and collects a Trajectory.

Impure: it drives environments and reads the clock.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import jax
import numpy as np

from fnrl.envs import BatchedEnv
from fnrl.types import Carry, Params, PRNGKey, TimeStep, Trajectory


class PhaseTimer:
    """Wall-clock seconds spent in each named phase of a run (env, inference, learner, ...)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Adds the time spent inside the ``with`` block to ``seconds[name]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def bound(self) -> str:
        """The phase that took the most time: what bound the run."""
        return max(self.seconds, key=self.seconds.get) if self.seconds else "nothing"


class Episode(NamedTuple):
    """A finished whole game: its unclipped return and length in agent steps."""

    returns: float
    length: int


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
