"""Gymnasium adapter: any registered Gymnasium env id, vectorised with next-step autoreset.

Old gym ids take the same path, each env wrapped by :mod:`fnrl.envs.gym_legacy`.

IMPURE host code. adept ran its envs in subprocesses; here the default is
``gymnasium.vector.SyncVectorEnv`` in the calling thread, because the envs this path serves
(toy text, classic control, user envs without an envpool port) step in microseconds, where the
pipe round trip of a subprocess costs more than the step: 8 CartPole envs on 2 cores ran 16,000
vector steps/s with ``SyncVectorEnv`` and 1,200 with ``AsyncVectorEnv``. ``asynchronous=True``
selects ``AsyncVectorEnv`` for slow envs. Its workers start with ``"spawn"``, because forking a
process that already runs JAX's threads can deadlock; a spawned worker re-imports the parent's
``__main__`` module (a script importing fnrl pays JAX's import per worker), and the env id must be
registered in a fresh interpreter (built-in Gymnasium envs, or envs registered on import of an
installed package).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium
import numpy as np

from fnrl.envs.base import (
    EnvOutputError,
    EpisodeTracker,
    SpaceConverter,
    _check_positive,
    _env_seeds,
    _shown,
    check_observation,
)
from fnrl.plugins import error_line
from fnrl.types import TimeStep


def _make_gymnasium_env(env_id: str, **kwargs: Any) -> gymnasium.Env:
    """``gymnasium.make(env_id, **kwargs)``; an env whose making fails is one line naming it.

    A user's env class may raise anything from its constructor; the commands print a
    ``ValueError`` as their one line of error, so every failure becomes one.

    Raises:
      ValueError: ``cannot make the env 'Id': RuntimeError: the cause``.
    """
    try:
        return gymnasium.make(env_id, **kwargs)
    except Exception as error:
        raise ValueError(f"cannot make the env {env_id!r}: {error_line(error)}") from error


def _render_modes(env_id: str, make: Callable[..., gymnasium.Env]) -> list[str]:
    """The render modes an env id declares in its class's ``metadata``."""
    env = make(env_id, disable_env_checker=True)
    try:
        return list(env.metadata.get("render_modes", []))
    finally:
        env.close()


class _FirstStepsChecked(gymnasium.Wrapper):
    """One env whose first reset and first step are checked before a vector env batches them.

    Checked here, per env, because ``SyncVectorEnv`` copies each observation into a batch
    array of the declared dtype and shape at once, where a wrong one fails with numpy's words
    and no env named. Each method, once it has checked, is replaced on the instance by the env's
    own: later calls go straight to the env, so the check costs nothing per step. It takes the
    place of Gymnasium's env checker (the envs are made without it), whose warnings and
    assertions would come before fnrl's one line and which stays in every step.
    """

    def __init__(self, env: gymnasium.Env, env_id: str) -> None:
        """Wrap ``env``, named ``env_id`` in errors."""
        super().__init__(env)
        self._env_id = env_id

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The env's first reset, checked; see :func:`~fnrl.envs.base.check_observation`."""
        result = self.env.reset(seed=seed, options=options)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise EnvOutputError(
                f"env {self._env_id!r}: reset() returned {_returned(result)}, not Gymnasium's "
                "(obs, info)"
            )
        check_observation(self.observation_space, result[0], env_id=self._env_id, source="reset()")
        self.reset = self.env.reset  # checked: later resets go straight to the env
        return result

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """The env's first step, checked; see :func:`~fnrl.envs.base.check_observation`."""
        result = self.env.step(action)
        if not (isinstance(result, tuple) and len(result) == 5):
            raise EnvOutputError(
                f"env {self._env_id!r}: step() returned {_returned(result)}, not Gymnasium's "
                "(obs, reward, terminated, truncated, info)"
            )
        check_observation(self.observation_space, result[0], env_id=self._env_id, source="step()")
        self.step = self.env.step  # checked: later steps go straight to the env
        return result


def _returned(result: Any) -> str:
    """What a reset or step returned: ``"4 values"`` for a tuple, else the value shortly."""
    return f"{len(result)} values" if isinstance(result, tuple) else _shown(result)


def _make_checked(make: Callable[..., gymnasium.Env], env_id: str, **kwargs: Any) -> gymnasium.Env:
    """``make(env_id, **kwargs)`` with its first steps checked (:class:`_FirstStepsChecked`)."""
    return _FirstStepsChecked(make(env_id, **kwargs), env_id)


class GymnasiumEnv:
    """B copies of a Gymnasium env as a :class:`~fnrl.envs.base.BatchedEnv`.

    Episodes end where the env terminates or its ``TimeLimit`` truncates; every end is a whole
    game for :class:`~fnrl.types.EpisodeStats`. Env i is seeded with ``seed + i`` at the first
    :meth:`reset` only; later resets continue each env's random stream (as envpool does). Each
    env's first reset and first step are checked against its spaces
    (:func:`~fnrl.envs.base.check_observation`: ``EnvOutputError``, one line naming the env);
    Gymnasium's own env checker is left out.

    Attributes:
      spec: per-env specs from :class:`~fnrl.envs.base.SpaceConverter`.
      num_envs: B.
      frames_per_step: 1 (Gymnasium envs report their own frames).
    """

    frames_per_step = 1

    def __init__(
        self,
        env_id: str,
        num_envs: int,
        seed: int,
        *,
        max_episode_steps: int | None = None,
        clip_rewards: bool = False,
        asynchronous: bool = False,
        render: bool = False,
        make: Callable[..., gymnasium.Env] = gymnasium.make,
    ) -> None:
        """Make the vector env.

        Args:
          env_id: an id that ``make`` knows: by default one in ``gymnasium.envs.registry``.
          num_envs: B.
          seed: the run's seed.
          max_episode_steps: steps before truncation; ``None`` keeps the registered default.
          clip_rewards: clip learning rewards to ``[-1, 1]``.
          asynchronous: step the envs in subprocesses (``AsyncVectorEnv``) instead of in this
            thread (see the module docstring).
          render: make the envs with ``render_mode="rgb_array"`` (:meth:`render`).
          make: makes one env from ``env_id`` and the keywords ``max_episode_steps``,
            ``render_mode`` and ``disable_env_checker``, as :func:`gymnasium.make` does (and
            :func:`~fnrl.envs.gym_legacy.make_gym_env` for ids registered with old gym).

        Raises:
          ValueError: ``render`` for an env without an ``rgb_array`` render mode.
        """
        _check_positive(num_envs=num_envs, max_episode_steps=max_episode_steps)
        self._seeds = _env_seeds(seed, num_envs)
        kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
        if render:
            modes = _render_modes(env_id, make)
            if "rgb_array" not in modes:
                raise ValueError(
                    f"cannot render {env_id}: it has no 'rgb_array' render mode (it has {modes})"
                )
            kwargs["render_mode"] = "rgb_array"
        self._env_id = env_id
        # fnrl checks the first observations itself, in place of Gymnasium's env checker.
        kwargs["disable_env_checker"] = True
        env_fns = [functools.partial(_make_checked, make, env_id, **kwargs)] * num_envs
        autoreset = gymnasium.vector.AutoresetMode.NEXT_STEP
        if asynchronous:
            self._envs = gymnasium.vector.AsyncVectorEnv(
                env_fns, autoreset_mode=autoreset, context="spawn"
            )
        else:
            self._envs = gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=autoreset)
        try:
            self._converter = SpaceConverter(
                self._envs.single_observation_space, self._envs.single_action_space
            )
        except ValueError:
            self._envs.close()
            raise
        self.num_envs = num_envs
        self.spec = self._converter.spec
        self._tracker = EpisodeTracker(num_envs, clip_rewards=clip_rewards)

    def reset(self) -> TimeStep:
        """Reset every env; see :meth:`BatchedEnv.reset`."""
        obs, _ = self._envs.reset(seed=self._seeds)
        self._seeds = None  # seed once: later resets continue the envs' streams
        return self._tracker.reset(self._converter.observation(obs))

    def step(self, actions: Mapping[str, np.ndarray]) -> TimeStep:
        """Step every env; see :meth:`BatchedEnv.step`."""
        obs, reward, terminated, truncated, _ = self._envs.step(
            self._converter.action(actions, self.num_envs)
        )
        return self._tracker.step(self._converter.observation(obs), reward, terminated, truncated)

    def render(self) -> np.ndarray:
        """Env 0's RGB frame ``[H, W, 3]`` uint8.

        Raises:
          ValueError: the envs were made without ``render=True``, or their renderer fails
            (e.g. pygame is missing).
        """
        if self._envs.render_mode != "rgb_array":
            raise ValueError("this env cannot render: make it with render=True")
        try:
            frame = self._envs.call("render")[0]
        except Exception as e:  # a missing renderer (pygame, OpenGL) fails here, not at make
            raise ValueError(f"cannot render {self._env_id}: {e}") from e
        if frame is None:
            raise ValueError(f"cannot render {self._env_id}: its renderer returned no frame")
        return np.asarray(frame, np.uint8)

    def close(self) -> None:
        """Close the envs (and their subprocesses)."""
        self._envs.close()
