"""Types shared across fnrl: what environments return, what rollouts collect, what learners keep.

Shapes use ``T`` for time (rollout length), ``B`` for the env batch, ``A`` for the number of
choices of one discrete action and ``D`` for the size of one continuous action. All data
crossing module boundaries is time-major.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

Params = Any  # flax variables: {"params": ..., "batch_stats": ...}
Carry = Any  # recurrent state of a network body, a pytree with a leading [B] axis; () if none
PRNGKey = jax.Array
Metrics = dict[str, jax.Array]
Observation = dict[str, Any]  # name -> [B, ...] array
Action = dict[str, Any]  # name -> [B] int32 (discrete) or [B, D] float32 (continuous) array


class EpisodeStats(NamedTuple):
    """Running statistics of the current episode of each env, in real (unclipped) game units."""

    done: np.ndarray  # [B] bool: a whole game ended at this step (game over or time limit)
    returns: np.ndarray  # [B] float32: unclipped return of the episode so far (final where done)
    length: np.ndarray  # [B] int32: agent steps in the episode so far (final where done)


class TimeStep(NamedTuple):
    """What a BatchedEnv returns from ``reset`` and ``step``, for B envs, on the host.

    Envs reset automatically on the step *after* the one that ended an episode (envpool's and
    Gymnasium's "next-step" autoreset): that step ignores its action and returns the first
    observation of the next episode with ``first`` set.
    """

    obs: Observation  # name -> [B, ...]
    reward: np.ndarray  # [B] float32: reward for learning (clipped for Atari)
    terminated: np.ndarray  # [B] bool: the episode ended for learning (Atari life loss included)
    truncated: np.ndarray  # [B] bool: a time limit cut the episode; bootstrap from obs
    first: np.ndarray  # [B] bool: obs is the first of an episode
    episode: EpisodeStats


class Trajectory(NamedTuple):
    """A time-major rollout segment of T steps for B envs.

    Step ``t`` takes ``actions[t]`` in ``obs[t]`` and gets ``rewards[t]`` and ``obs[t + 1]``.
    When ``first[t + 1]`` is set, step ``t`` was the env's automatic reset: its action was
    ignored and it carries no learning signal.
    """

    obs: Observation  # name -> [T + 1, B, ...]; obs[T] bootstraps
    first: jax.Array  # [T + 1, B] bool
    actions: Action  # name -> [T, B] int32, or [T, B, D] float32 as sampled (unclipped)
    rewards: jax.Array  # [T, B] float32
    terminated: jax.Array  # [T, B] bool, after actions[t]
    truncated: jax.Array  # [T, B] bool, after actions[t]
    # name -> the acting policy: [T, B, A] logits, or a fnrl.distributions.Gaussian of [T, B, D]
    behaviour_logits: dict[str, Any]
    initial_carry: Carry  # body state before obs[0] (reset by first[0] inside the network)


class TrainState(NamedTuple):
    """Everything the learner step reads and writes.

    ``agent_state`` holds what an agent keeps besides its params and optimizer state, by name
    (a replay buffer, target params: see ``fnrl.agents.DataPath``); each entry is a pytree of
    arrays that the learner step threads through and every checkpoint saves as a piece of that
    name. On-policy agents keep none.
    """

    params: Params
    opt_state: Any
    key: PRNGKey
    step: jax.Array  # [] int32: number of updates applied
    agent_state: dict[str, Any] = {}  # name -> pytree of arrays
