"""Old ``gym`` (before Gymnasium) environments, seen as Gymnasium envs.

IMPURE host code. :class:`GymLegacyEnv` adapts any object that follows gym's API, duck-typed,
so that :class:`~fnrl.envs.gymnasium.GymnasiumEnv` vectorises it like a Gymnasium env:

* ``step`` returning gym 0.26's ``(obs, reward, terminated, truncated, info)`` or the
  ``(obs, reward, done, info)`` of earlier versions, where a ``done`` with
  ``info["TimeLimit.truncated"]`` (set by gym's ``TimeLimit``) is a truncation and any other
  ``done`` a termination;
* ``reset`` returning ``(obs, info)`` or the observation alone, and seeded with
  ``reset(seed=...)`` or, where the env does not take that keyword, its older ``seed()`` method;
* spaces converted by what they are (:func:`from_gym_space`), without importing gym.

:func:`make_gym_env` makes a registered gym id and wraps it. The ``gym`` package itself is
optional and imported only when an id is not known to envpool or Gymnasium. gym 0.26's env
checker uses ``np.bool8``, which numpy 2 removed, so envs are made with the checker off.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

import gymnasium
import numpy as np

from fnrl.plugins import error_line

__all__ = ["GymLegacyEnv", "from_gym_space", "is_gym_id", "make_gym_env"]


def _kinds(space: Any) -> set[str]:
    """The class names in ``space``'s MRO: how a gym space says what it is (subclasses too)."""
    return {cls.__name__ for cls in type(space).__mro__}


def from_gym_space(space: Any) -> gymnasium.Space:
    """The Gymnasium space equal to an old gym space, read from its attributes.

    Box (``low``, ``high``, ``shape``, ``dtype``), Discrete (``n`` and, from gym 0.25, ``start``),
    MultiDiscrete (``nvec``, ``dtype``), MultiBinary (``n``), and Dict and Tuple of them (Dict
    keeps gym's key order). A Gymnasium space is returned as it is.

    Args:
      space: a gym space, or any object of a class named like one with the same attributes.

    Returns:
      The Gymnasium space.

    Raises:
      ValueError: a space of another kind (the message names it).
    """
    if isinstance(space, gymnasium.Space):
        return space
    kinds = _kinds(space)
    if "Box" in kinds:
        return gymnasium.spaces.Box(
            low=np.asarray(space.low),
            high=np.asarray(space.high),
            shape=tuple(space.shape),
            dtype=space.dtype,
        )
    if "Discrete" in kinds:
        return gymnasium.spaces.Discrete(int(space.n), start=int(getattr(space, "start", 0)))
    if "MultiDiscrete" in kinds:
        start = getattr(space, "start", None)
        return gymnasium.spaces.MultiDiscrete(
            np.asarray(space.nvec),
            dtype=getattr(space, "dtype", np.int64),
            start=None if start is None else np.asarray(start),
        )
    if "MultiBinary" in kinds:
        n = space.n
        return gymnasium.spaces.MultiBinary(int(n) if np.ndim(n) == 0 else [int(k) for k in n])
    if "Dict" in kinds:
        # A list of pairs keeps gym's order (a plain dict would be sorted again).
        return gymnasium.spaces.Dict([(k, from_gym_space(s)) for k, s in space.spaces.items()])
    if "Tuple" in kinds:
        return gymnasium.spaces.Tuple([from_gym_space(s) for s in space.spaces])
    raise ValueError(
        f"Unsupported gym space {space!r}: fnrl converts gym's Box, Discrete, MultiDiscrete, "
        "MultiBinary, Dict and Tuple spaces."
    )


class GymLegacyEnv(gymnasium.Env):
    """A gym env (any version's API, see the module docstring) as a Gymnasium env.

    Attributes:
      observation_space: the env's observation space, converted by :func:`from_gym_space`.
      action_space: the env's action space, converted likewise.
      render_mode: the env's ``render_mode`` (gym 0.26), else ``None``.
      metadata: the env's metadata, with gym's older ``"render.modes"`` also as
        ``"render_modes"``.
    """

    def __init__(self, env: Any) -> None:
        """Wrap ``env``.

        Args:
          env: an object with gym's ``reset``, ``step``, ``close``, ``observation_space`` and
            ``action_space``.

        Raises:
          ValueError: a space :func:`from_gym_space` cannot convert.
        """
        self._env = env
        self.observation_space = from_gym_space(env.observation_space)
        self.action_space = from_gym_space(env.action_space)
        self.render_mode = getattr(env, "render_mode", None)
        metadata = dict(getattr(env, "metadata", None) or {})
        metadata.setdefault("render_modes", list(metadata.get("render.modes", [])))
        self.metadata = metadata
        # An observation that is itself a pair ending in a dict looks like reset's (obs, info).
        space = self.observation_space
        self._pair_observation = (
            isinstance(space, gymnasium.spaces.Tuple)
            and len(space) == 2
            and isinstance(space[1], gymnasium.spaces.Dict)
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the env, seeding it first if ``seed`` is given.

        Args:
          seed: passed as ``reset(seed=seed)``, or to ``seed(seed)`` for an env whose ``reset``
            does not take it.
          options: passed as ``reset(options=options)`` when not ``None``.

        Returns:
          ``(obs, info)``; ``info`` is ``{}`` for an env whose reset returns the observation only.
        """
        kwargs = {key: v for key, v in (("seed", seed), ("options", options)) if v is not None}
        try:
            result = self._env.reset(**kwargs)
        except TypeError as error:
            # gym before 0.22 seeds with seed() and its reset takes no keywords.
            old_seeding = seed is not None and "'seed'" in str(error)
            if not old_seeding or not callable(getattr(self._env, "seed", None)):
                raise
            self._env.seed(seed)
            del kwargs["seed"]
            result = self._env.reset(**kwargs)
        is_pair = isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)
        if is_pair and self._pair_observation:
            is_pair = isinstance(result[0], tuple)
        if is_pair:
            return result[0], dict(result[1])
        return result, {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step the env; gym's 4-tuple becomes Gymnasium's 5-tuple.

        Args:
          action: an element of :attr:`action_space`.

        Returns:
          ``(obs, reward, terminated, truncated, info)``. From a 4-tuple, ``done`` is a
          truncation where ``info["TimeLimit.truncated"]`` is true and a termination otherwise.

        Raises:
          ValueError: ``step`` returned neither 4 nor 5 values.
        """
        result = self._env.step(action)
        if len(result) == 5:
            obs, reward, terminated, truncated, info = result
        elif len(result) == 4:
            obs, reward, done, info = result
            truncated = bool(done) and bool(info.get("TimeLimit.truncated", False))
            terminated = bool(done) and not truncated
        else:
            raise ValueError(
                f"{type(self._env).__name__}.step returned {len(result)} values: gym's API returns "
                "(obs, reward, done, info) or (obs, reward, terminated, truncated, info)."
            )
        return obs, float(reward), bool(terminated), bool(truncated), dict(info)

    def render(self) -> Any:
        """The env's ``render()``, in the ``render_mode`` it was made with."""
        return self._env.render()

    def close(self) -> None:
        """Close the env."""
        self._env.close()


def _import_gym() -> Any:
    """The ``gym`` module, or ``None`` where it is not installed.

    gym 0.26 prints on import, to stderr, a notice of four lines that gym is unmaintained (from
    its ``gym_notices`` dependency; no setting turns it off). fnrl asks gym only about ids that
    no maintained backend knows, most often to list close matches for an unknown id, so the
    notice would only bury the one line of fnrl's error under it: it is dropped. Only the first
    import is silenced, as only it prints, and it swaps ``sys.stderr`` for every thread.
    """
    if "gym" in sys.modules:
        return sys.modules["gym"]
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import gym
    except ImportError:
        return None
    return gym


def _gym_registry() -> Any:
    """gym's registered ids (a mapping of id to spec), empty where gym is not installed."""
    gym = _import_gym()
    if gym is None:
        return {}
    registry = gym.envs.registry
    # gym 0.26's registry is a dict; before 0.22 it was an EnvRegistry holding one.
    return getattr(registry, "env_specs", registry)


def is_gym_id(env_id: str) -> bool:
    """Whether the ``gym`` package is installed and has ``env_id`` registered.

    Args:
      env_id: an env id, without gym's ``"module:"`` prefix (see
        :func:`~fnrl.envs.import_env_module`).
    """
    return env_id in _gym_registry()


def make_gym_env(
    env_id: str,
    *,
    max_episode_steps: int | None = None,
    render_mode: str | None = None,
    disable_env_checker: bool = True,
) -> GymLegacyEnv:
    """``gym.make(env_id)``, wrapped in a :class:`GymLegacyEnv`.

    The keywords are ``gym.make``'s (and :func:`gymnasium.make`'s), so
    :class:`~fnrl.envs.gymnasium.GymnasiumEnv` can take this function in place of Gymnasium's.

    Args:
      env_id: an id registered with gym (:func:`is_gym_id`).
      max_episode_steps: steps before gym's ``TimeLimit`` truncates; ``None`` keeps the
        registered limit.
      render_mode: gym 0.26's render mode, e.g. ``"rgb_array"``.
      disable_env_checker: leave out gym's env checker, which fails under numpy 2.

    Returns:
      The wrapped env.

    Raises:
      ValueError: gym is not installed, or making the env fails (one line naming it and the
        cause; for an env that uses ``np.bool8`` where numpy has none, what to do).
    """
    gym = _import_gym()
    if gym is None:
        raise ValueError(f"cannot make the gym env {env_id!r}: the gym package is not installed")
    kwargs: dict[str, Any] = {"disable_env_checker": disable_env_checker}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    try:
        env = gym.make(env_id, **kwargs)
    except Exception as error:  # a user's env may raise anything: one line naming it
        if isinstance(error, AttributeError) and "bool8" in str(error):
            raise ValueError(
                f"cannot make the gym env {env_id!r}: it uses np.bool8, which numpy "
                f"{np.__version__} no longer has (removed in numpy 2); port the env to "
                "Gymnasium or install numpy<2"
            ) from error
        raise ValueError(f"cannot make the gym env {env_id!r}: {error_line(error)}") from error
    return GymLegacyEnv(env)
