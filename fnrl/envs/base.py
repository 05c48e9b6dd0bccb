"""The ``BatchedEnv`` protocol and the host-side helpers every adapter shares.

IMPURE host code: adapters own simulator state and step it on the CPU with numpy. Nothing here
imports jax. Two helpers keep the adapters small and consistent with each other:

* :class:`SpaceConverter` turns Gymnasium spaces into an :class:`~fnrl.specs.EnvSpec` and converts
  batched observations and action dicts between the two worlds (adept's ``Spaces.from_gym``).
* :class:`EpisodeTracker` turns raw "next-step autoreset" outputs into
  :class:`~fnrl.types.TimeStep`: it derives ``first``, clips rewards for learning and keeps
  whole-game :class:`~fnrl.types.EpisodeStats`.

:func:`check_observation` checks one env's observation against its declared space, for the
adapters of envs written in Python, on their first steps (:class:`EnvOutputError`).
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np

from fnrl.settings import ConfigError
from fnrl.specs import ActionSpec, ArraySpec, BoxSpec, DiscreteSpec, EnvSpec, is_continuous
from fnrl.types import EpisodeStats, Observation, TimeStep


@runtime_checkable
class BatchedEnv(Protocol):
    """``num_envs`` environments stepped together on the host, with next-step autoreset.

    ``reset`` starts every env (all ``first``); ``step`` takes one action per env. The step that
    ends an episode returns its final observation with ``terminated`` or ``truncated`` set; the
    following step ignores that env's action and returns the first observation of the next
    episode with ``first`` set, reward 0 and neither flag. See :class:`fnrl.types.TimeStep`.
    """

    spec: EnvSpec  # per-env observation and action specs; images channels-last (H, W, C)
    num_envs: int
    frames_per_step: int  # emulator frames per agent step: the frame skip on Atari, else 1

    def reset(self) -> TimeStep:
        """Reset every env: all ``first``, reward 0, ``terminated`` and ``truncated`` False."""
        ...

    def step(self, actions: Mapping[str, np.ndarray]) -> TimeStep:
        """Step every env with ``actions``: action name -> ``[B]`` int array."""
        ...

    def render(self) -> np.ndarray:
        """Env 0's RGB frame ``[H, W, 3]`` uint8; ``ValueError`` unless made to render."""
        ...

    def close(self) -> None:
        """Release the simulators (threads, subprocesses)."""
        ...


def _check_positive(**values: int | None) -> None:
    """Raise ``ValueError`` naming the first argument that is not ``None`` and below 1.

    Args:
      **values: argument name -> value (``None`` means "use the default" and passes).
    """
    for name, value in values.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}.")


def _env_seeds(seed: int, num_envs: int) -> list[int]:
    """The per-env seeds ``seed + i`` (adept's convention), checked to fit envpool's int32.

    Args:
      seed: the run's seed, non-negative.
      num_envs: B.

    Returns:
      ``[seed, seed + 1, ..., seed + B - 1]``.
    """
    if seed < 0 or seed + num_envs - 1 >= 2**31:
        raise ValueError(
            f"seed must satisfy 0 <= seed and seed + num_envs - 1 < 2**31 (env i gets seed + i), "
            f"got seed={seed}, num_envs={num_envs}."
        )
    return [seed + i for i in range(num_envs)]


def _leaf_spec(space: gymnasium.Space) -> ArraySpec:
    """Spec of one observation entry (adept's ``Spaces._detect_gym_spaces`` leaves)."""
    if isinstance(space, gymnasium.spaces.Box):
        # uint8 images stay uint8 (networks divide by 255 on the device); the rest is float32.
        image = len(space.shape) == 3 and space.dtype == np.uint8
        return ArraySpec(tuple(space.shape), np.dtype(np.uint8 if image else np.float32))
    if isinstance(space, gymnasium.spaces.Discrete):
        # One-hot, as adept did: a rank-1 float vector goes through the same trunks as a Box.
        return ArraySpec((int(space.n),), np.dtype(np.float32))
    if isinstance(space, gymnasium.spaces.MultiBinary):
        return ArraySpec(tuple(space.shape), np.dtype(np.float32))
    raise ValueError(
        f"Unsupported observation space {space!r}: fnrl converts Box, Discrete (one-hot) and "
        "MultiBinary entries, alone or inside one Dict or Tuple."
    )


def _convert_leaf(space: gymnasium.Space, spec: ArraySpec, batch: Any, xp: Any) -> Any:
    """Convert one batched observation entry ``[B, ...]`` to ``spec``'s dtype with ``xp``."""
    if isinstance(space, gymnasium.spaces.Discrete):
        index = xp.asarray(batch, np.int32) - int(space.start)
        return xp.eye(int(space.n), dtype=np.float32)[index]
    return xp.asarray(batch, spec.dtype)


def _action_specs(key: str, space: gymnasium.Space) -> dict[str, ActionSpec]:
    """The fnrl action keys of one env action entry ``key``.

    Discrete(n) -> ``{key: DiscreteSpec(n)}``; a rank-1 Box -> ``{key: BoxSpec}``;
    MultiDiscrete(nvec) -> one discrete head per component, ``{f"{key}_{i}": DiscreteSpec(n_i)}``.
    """
    if isinstance(space, gymnasium.spaces.Discrete):
        return {key: DiscreteSpec(int(space.n))}
    if isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1:
        bounds = (tuple(float(x) for x in space.low), tuple(float(x) for x in space.high))
        return {key: BoxSpec(tuple(space.shape), *bounds)}
    if isinstance(space, gymnasium.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        return {f"{key}_{i}": DiscreteSpec(int(n)) for i, n in enumerate(space.nvec)}
    raise ValueError(
        f"Unsupported action space {space!r}: fnrl's agents take Discrete, MultiDiscrete and "
        "rank-1 Box actions, alone or inside one Dict."
    )


def _env_action(space: gymnasium.Space, values: list[Any], xp: Any) -> Any:
    """One env action entry from the checked fnrl actions of its keys (see ``_action_specs``)."""
    if isinstance(space, gymnasium.spaces.MultiDiscrete):
        return xp.stack(values, axis=-1) + space.start.astype(np.int32)[None]
    (value,) = values
    if isinstance(space, gymnasium.spaces.Discrete):
        return value + np.int32(space.start)
    return value


def _observation_entries(space: gymnasium.Space) -> dict[str, gymnasium.Space]:
    """fnrl's observation key -> the space of that entry (see :class:`SpaceConverter`)."""
    if isinstance(space, gymnasium.spaces.Dict):
        return dict(space.spaces)
    if isinstance(space, gymnasium.spaces.Tuple):
        return {str(i): entry for i, entry in enumerate(space.spaces)}
    image = isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 3
    return {"screen" if image else "obs": space}


class EnvOutputError(ConfigError):
    """An env returned what its declared spaces rule out: fnrl cannot run that env id.

    Raised by :func:`check_observation` on an env's first steps, before the output would fail
    deep inside numpy or XLA. The command lines print it as one line and exit with code 2, as
    for a bad setting (``field`` is ``"env_id"``).
    """

    def __init__(self, message: str) -> None:
        """Args: message: one line naming the env, what it returned and what was declared."""
        super().__init__(message, "env_id", message)


def _as_numbers(value: Any) -> np.ndarray | None:
    """``value`` as a numeric (bool, integer or float) array, or None if it is none."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):  # a ragged or otherwise unreadable sequence
        return None
    return array if array.dtype.kind in "biuf" else None


def _shown(value: Any) -> str:
    """What an env returned, shortly: ``"float64 values of shape (5,)"``, ``"the int64 7"``,
    ``"str 'abc'"``."""
    array = _as_numbers(value)
    if array is None:
        return f"{type(value).__name__} {reprlib.repr(value)}"
    if array.ndim == 0:
        return f"the {array.dtype} {array.item()!r}"
    return f"{array.dtype} values of shape {array.shape}"


def _declared(space: gymnasium.Space) -> str:
    """What an observation entry's space lets an env return, as :func:`_fits` reads it."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return f"an integer in [{int(space.start)}, {int(space.start) + int(space.n)})"
    if isinstance(space, gymnasium.spaces.MultiBinary):
        return f"0s and 1s of shape {space.shape}"
    return f"{space.dtype} values of shape {space.shape}"


def _fits(space: gymnasium.Space, value: Any) -> bool:
    """Whether one env's value of an observation entry is one fnrl can convert.

    Numbers of the declared shape, in a dtype that Gymnasium's vector envs can copy into the
    declared one (numpy's ``same_kind`` cast: float64 into float32 passes, floats into integers
    and integers into a uint8 image do not); for a Discrete space an integer in its range (fnrl
    indexes a one-hot table with it).
    """
    array = _as_numbers(value)
    if array is None or array.shape != space.shape:
        return False
    if not np.can_cast(array.dtype, space.dtype, "same_kind"):
        return False
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.start) <= int(array) < int(space.start) + int(space.n)
    return True


def check_observation(
    space: gymnasium.Space, observation: Any, *, env_id: str, source: str
) -> None:
    """Check one env's observation against its declared observation space.

    For the envs written in Python (Gymnasium and gym envs, a user's ``module:Id``), on their
    first steps only: a wrong one would otherwise fail inside Gymnasium's vector env, numpy or
    XLA, far from the env, or be cast into nonsense. What passes is what fnrl can convert (see
    ``_fits``): numbers of the declared shape in a dtype that casts to the declared one within
    its kind (float64 where float32 is declared), a Dict observation with every declared key
    (more keys are ignored), a Tuple one as a tuple or list of its length.

    Args:
      space: the env's (single-env) observation space.
      observation: what the env returned.
      env_id: the env's id, as the message names it.
      source: what returned it, e.g. ``"reset()"``.

    Raises:
      EnvOutputError: one line naming the env, the observation key (fnrl's, see
        :class:`SpaceConverter`), what came and what its space declares.
    """
    entries = _observation_entries(space)
    returned = f"env {env_id!r}: {source} returned"
    declared = ", ".join(map(repr, entries))
    if isinstance(space, gymnasium.spaces.Dict):
        if not isinstance(observation, Mapping):
            raise EnvOutputError(
                f"{returned} the observation {_shown(observation)}, where its Dict observation "
                f"space declares the keys {declared}"
            )
        missing = [key for key in entries if key not in observation]
        if missing:
            raise EnvOutputError(
                f"{returned} an observation without the key {missing[0]!r}, which its Dict "
                f"observation space declares (it has {', '.join(map(repr, observation)) or 'none'})"
            )
        values = {key: observation[key] for key in entries}
    elif isinstance(space, gymnasium.spaces.Tuple):
        if not isinstance(observation, tuple | list) or len(observation) != len(entries):
            raise EnvOutputError(
                f"{returned} the observation {_shown(observation)}, where its Tuple observation "
                f"space declares {len(entries)} entries"
            )
        values = {key: observation[int(key)] for key in entries}
    else:
        values = {key: observation for key in entries}
    for key, entry in entries.items():
        if not _fits(entry, values[key]):
            raise EnvOutputError(
                f"{returned} observation {key!r} as {_shown(values[key])}, where its observation "
                f"space declares {_declared(entry)}"
            )


class SpaceConverter:
    """A Gymnasium (observation space, action space) pair seen through fnrl's dict specs.

    Observations: a Dict space gives one key per entry, a Tuple one key per index (``"0"``,
    ``"1"``, ...), a single space the key ``"screen"`` for rank-3 images and ``"obs"`` otherwise.
    Box -> its shape (uint8 kept for rank-3 images, float32 otherwise), Discrete(n) -> one-hot
    float32 ``[n]`` (adept's choice, so tabular envs feed the same vector trunks), MultiBinary ->
    float32. Actions: Discrete(n) -> ``{"action": DiscreteSpec(n)}``, a rank-1 Box ->
    ``{"action": BoxSpec}``, a rank-1 MultiDiscrete -> one discrete key per component
    (``"action_0"``, ``"action_1"``, ...); a Dict of them -> the keys of each entry, named after
    it. Anything else (actions of rank 2 and more, nested containers) raises ``ValueError``
    naming the space.

    Attributes:
      spec: the per-env :class:`EnvSpec`.
    """

    def __init__(self, observation_space: gymnasium.Space, action_space: gymnasium.Space) -> None:
        """Build the spec; raises ``ValueError`` for unsupported spaces.

        Args:
          observation_space: the single-env observation space.
          action_space: the single-env action space.
        """
        self._obs_spaces = _observation_entries(observation_space)
        self._single_obs = not isinstance(
            observation_space, gymnasium.spaces.Dict | gymnasium.spaces.Tuple
        )
        observations = {key: _leaf_spec(space) for key, space in self._obs_spaces.items()}

        self._dict_actions = isinstance(action_space, gymnasium.spaces.Dict)
        self._act_spaces = (
            dict(action_space.spaces) if self._dict_actions else {"action": action_space}
        )
        self._act_keys = {key: _action_specs(key, space) for key, space in self._act_spaces.items()}
        actions = {name: spec for specs in self._act_keys.values() for name, spec in specs.items()}
        if len(actions) != sum(map(len, self._act_keys.values())):
            raise ValueError(
                f"the action keys {[list(keys) for keys in self._act_keys.values()]} collide: "
                "rename the Dict entries"
            )
        self.spec = EnvSpec(observations=observations, actions=actions)
        # [1, D] float32 bounds of the continuous keys, made once: action() runs every step.
        self._bounds = {
            name: tuple(np.asarray([bound], np.float32) for bound in (spec.low, spec.high))
            for name, spec in actions.items()
            if is_continuous(spec)
        }

    def observation(self, batch: Any, xp: Any = np) -> Observation:
        """Convert a batched observation (array, dict or tuple of ``[B, ...]``) to fnrl's dict.

        Args:
          batch: what the vector env returned for B envs.
          xp: the array module, ``numpy`` or ``jax.numpy`` (inside a compiled rollout).

        Returns:
          name -> ``[B, *spec.shape]`` array of ``spec.dtype``.
        """
        if self._single_obs:
            batch = {next(iter(self._obs_spaces)): batch}
        elif not isinstance(batch, Mapping):
            batch = {str(i): entry for i, entry in enumerate(batch)}
        return {
            key: _convert_leaf(space, self.spec.observations[key], batch[key], xp)
            for key, space in self._obs_spaces.items()
        }

    def action(self, actions: Mapping[str, Any], num_envs: int, xp: Any = np) -> Any:
        """Check an fnrl action dict and convert it to what the vector env takes.

        Continuous actions are clipped to their Box here, on the way to the env, and only here:
        the trajectory keeps what the policy sampled.

        Args:
          actions: action name -> ``[B]`` integer array, or ``[B, D]`` float array for a Box
            (numpy or jax).
          num_envs: B.
          xp: the array module of the result, ``numpy`` or ``jax.numpy``.

        Returns:
          An int32 ``[B]`` array for a Discrete space, ``[B, K]`` for a MultiDiscrete one (its
          keys' actions stacked), float32 ``[B, D]`` for a Box, or a dict of them for a Dict.
        """
        if set(actions) != set(self.spec.actions):
            raise ValueError(
                f"Expected actions {sorted(self.spec.actions)}, got {sorted(actions)}."
            )
        converted = {}
        for name, spec in self.spec.actions.items():
            value = xp.asarray(actions[name])
            shape = (num_envs, *spec.shape)
            if value.shape != shape:
                raise ValueError(f"Action {name!r} must have shape {shape}, got {value.shape}.")
            if is_continuous(spec):
                converted[name] = xp.clip(value.astype(np.float32), *self._bounds[name])
            else:
                converted[name] = value.astype(np.int32)
        sent = {
            key: _env_action(space, [converted[name] for name in self._act_keys[key]], xp)
            for key, space in self._act_spaces.items()
        }
        return sent if self._dict_actions else sent["action"]


def first_timestep(obs: Observation, num_envs: int) -> TimeStep:
    """The TimeStep of a reset: every env ``first``, zero reward, flags and episode statistics.

    Args:
      obs: the first observations, name -> ``[B, ...]``.
      num_envs: B.
    """
    b = num_envs
    return TimeStep(
        obs=obs,
        reward=np.zeros(b, np.float32),
        terminated=np.zeros(b, bool),
        truncated=np.zeros(b, bool),
        first=np.ones(b, bool),
        episode=EpisodeStats(np.zeros(b, bool), np.zeros(b, np.float32), np.zeros(b, np.int32)),
    )


def next_timestep(
    previous: TimeStep,
    obs: Observation,
    reward: Any,
    terminated: Any,
    truncated: Any,
    game_over: Any | None = None,
    *,
    clip_rewards: bool,
    reward_scale: float = 1.0,
    xp: Any = np,
) -> TimeStep:
    """The TimeStep after ``previous`` from one raw next-step-autoreset output of B envs.

    Pure, and written against the array module ``xp`` (``numpy`` on the host, ``jax.numpy``
    inside a compiled rollout), so that both paths compute the same values. Everything it needs
    about the past is in ``previous``: an env whose previous step terminated or truncated is
    resetting now (``first``); on those steps the reward is 0 and neither flag is set.
    ``terminated`` and ``truncated`` come out exclusive: a termination wins (discount 0),
    otherwise a time limit truncates (bootstrap). :class:`EpisodeStats` counts whole games in
    real game units: the unclipped return and the number of agent steps whose action reached the
    game (the automatic-reset steps after a life loss are not counted, as adept, which reset
    within the same step, never saw them). A game ends (``episode.done``) at a truncation, or
    at a termination that ``game_over`` marks as real (every termination when ``game_over`` is
    ``None``); the counters restart on the following step.

    Args:
      previous: the envs' latest TimeStep.
      obs: observations after the step, name -> ``[B, ...]``.
      reward: ``[B]`` raw (unclipped) rewards.
      terminated: ``[B]`` bool, the episode ended for learning (Atari life loss included).
      truncated: ``[B]`` bool, a time limit cut the episode.
      game_over: ``[B]`` bool, where a termination is a real game over; ``None`` if every
        termination is one.
      clip_rewards: clip learning rewards to ``[-1, 1]`` (adept's ``Clip`` normalizer); the
        episode statistics always use the raw reward.
      reward_scale: learning rewards are the raw ones times this (before any clipping; adept's
        per-game scaling of StarCraft II rewards); the episode statistics stay raw.
      xp: the array module, ``numpy`` or ``jax.numpy``.

    Returns:
      The TimeStep of this step.
    """
    first = previous.terminated | previous.truncated
    raw = xp.where(first, np.float32(0), xp.asarray(reward, np.float32))
    terminated = xp.asarray(terminated, bool)
    if game_over is not None:
        # A game over is a termination even where the env reported a time limit instead.
        game_over = xp.asarray(game_over, bool)
        terminated = terminated | game_over
    terminated = terminated & ~first
    truncated = xp.asarray(truncated, bool) & ~first & ~terminated
    game_ended = truncated | (terminated if game_over is None else terminated & game_over)
    restart = previous.episode.done
    returns = xp.where(restart, np.float32(0), previous.episode.returns) + raw
    length = (xp.where(restart, 0, previous.episode.length) + ~first).astype(np.int32)
    learned = raw * np.float32(reward_scale) if reward_scale != 1.0 else raw
    return TimeStep(
        obs=obs,
        reward=xp.clip(learned, -1.0, 1.0) if clip_rewards else learned,
        terminated=terminated,
        truncated=truncated,
        first=first,
        episode=EpisodeStats(game_ended, returns, length),
    )


class EpisodeTracker:
    """Turns raw next-step-autoreset outputs of B envs into :class:`TimeStep` on the host.

    Shared by every adapter so that all of them agree on ``first``, reward clipping and episode
    statistics: it keeps the latest TimeStep and applies :func:`next_timestep` to each output.

    Args:
      num_envs: B.
      clip_rewards: clip learning rewards to ``[-1, 1]`` (adept's ``Clip`` normalizer); the
        episode statistics always use the raw reward.
      reward_scale: learning rewards are the raw ones times this (see :func:`next_timestep`).
    """

    def __init__(self, num_envs: int, *, clip_rewards: bool, reward_scale: float = 1.0) -> None:
        """Create the tracker; call :meth:`reset` before :meth:`step`."""
        self.num_envs = num_envs
        self.clip_rewards = clip_rewards
        self.reward_scale = reward_scale
        self._last: TimeStep | None = None

    @property
    def last(self) -> TimeStep:
        """The latest TimeStep; ``RuntimeError`` before the first :meth:`reset`."""
        if self._last is None:
            raise RuntimeError("Call reset() before step().")
        return self._last

    @property
    def autoresetting(self) -> np.ndarray:
        """``[B]`` bool: envs whose next step is an automatic reset (the next ``first``)."""
        return self.last.terminated | self.last.truncated

    def reset(self, obs: Observation) -> TimeStep:
        """Start every env's first episode (see :func:`first_timestep`)."""
        self._last = first_timestep(obs, self.num_envs)
        return self._last

    def step(
        self,
        obs: Observation,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        game_over: np.ndarray | None = None,
    ) -> TimeStep:
        """Record one step of every env (see :func:`next_timestep` for the arguments)."""
        self._last = next_timestep(
            self.last,
            obs,
            reward,
            terminated,
            truncated,
            game_over,
            clip_rewards=self.clip_rewards,
            reward_scale=self.reward_scale,
        )
        return self._last
