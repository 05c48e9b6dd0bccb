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

from fnrl.envs.base import EpisodeTracker, SpaceConverter, _check_positive, _env_seeds
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


class GymnasiumEnv:
    """B copies of a Gymnasium env as a :class:`~fnrl.envs.base.BatchedEnv`.

    Episodes end where the env terminates or its ``TimeLimit`` truncates; every end is a whole
    game for :class:`~fnrl.types.EpisodeStats`. Env i is seeded with ``seed + i`` at the first
    :meth:`reset` only; later resets continue each env's random stream (as envpool does).

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
        env_fns = [functools.partial(make, env_id, **kwargs)] * num_envs
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
