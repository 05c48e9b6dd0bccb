"""envpool adapter: Atari with adept's DeepMind preprocessing, and envpool's other discrete tasks.

IMPURE host code: envpool runs the simulators in C++ threads; this module steps them
synchronously (``batch_size == num_envs``) and converts their output to :class:`TimeStep`.

What envpool 1.2.5 does, checked empirically (``tests/envs/test_envpool.py`` pins it):

* Autoreset is next-step: the step after a done ignores its action and returns the reset
  observation with reward 0 and ``terminated = truncated = False``. Outputs come in env-id order
  in synchronous mode.
* ``max_episode_steps`` counts agent steps (each of ``frame_skip`` frames): ``elapsed_step`` is
  incremented once per step and ``truncated`` is set when it reaches the limit. adept's
  ``-mel 10000`` (a ``TimeLimit`` of ``10000 * skip_rate`` raw frames) is therefore
  ``max_episode_steps=10000``. With ``episodic_life`` the counter runs over the whole game, not
  per life, and does not count the automatic-reset steps.
* Atari ``info["lives"]`` is the lives left after the step (0 for games without lives, such as
  Pong); ``info["terminated"]`` is 1 exactly where the ALE reports a real game over (a life loss
  or a time limit alone never sets it); ``info["reward"]`` is the reward before envpool's
  ``reward_clip`` (this adapter leaves that off and clips on the host, so it equals the reward);
  ``info["elapsed_step"]`` is the step counter above. Where a game over and the time limit
  coincide envpool reports ``truncated`` only; ``info["terminated"]`` makes it a termination.
* With ``episodic_life=True`` a life loss sets ``terminated``; the following automatic-reset step
  does not restart the game but plays the random no-ops and FIRE of envpool's reset. envpool's
  own frame stack is not cleared there, so this adapter stacks frames on the host (envpool
  ``stack_num=1``) and restarts the stack on every ``first`` step, life losses included, as
  adept's ``FrameStack`` did on each ``reset()``.

Unlike the envs written in Python (:class:`~fnrl.envs.gymnasium.GymnasiumEnv`), envpool's
observations are not checked against their spaces on the first steps: envpool's C++ fills
buffers of the very shapes and dtypes its spec declares, and its spaces are built from that spec.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import envpool
import jax
import jax.numpy as jnp
import numpy as np
from envpool.registration import registry as _envpool_registry

from fnrl.envs.base import (
    EpisodeTracker,
    SpaceConverter,
    _check_positive,
    _env_seeds,
    next_timestep,
)
from fnrl.specs import ArraySpec, EnvSpec
from fnrl.types import Action, TimeStep

# ``step(handle, timestep, actions) -> (handle, timestep)``, see EnvpoolEnv.xla.
XlaStep = Callable[[Any, TimeStep, Action], tuple[Any, TimeStep]]

# adept's environment lists (adept.registries.environment).
ATARI_6_ENVS: tuple[str, ...] = (
    "BeamRiderNoFrameskip-v4",
    "BreakoutNoFrameskip-v4",
    "QbertNoFrameskip-v4",
    "SeaquestNoFrameskip-v4",
    "SpaceInvadersNoFrameskip-v4",
    "PongNoFrameskip-v4",
)
ATARI_ENVS: tuple[str, ...] = tuple(
    f"{game}NoFrameskip-v4"
    for game in (
        "AirRaid Alien Amidar Assault Asterix Asteroids Atlantis BankHeist BattleZone BeamRider "
        "Berzerk Bowling Boxing Breakout Carnival Centipede ChopperCommand CrazyClimber "
        "DemonAttack DoubleDunk ElevatorAction Enduro FishingDerby Freeway Frostbite Gopher "
        "Gravitar Hero IceHockey Jamesbond JourneyEscape Kangaroo Krull KungFuMaster "
        "MontezumaRevenge MsPacman NameThisGame Phoenix Pitfall Pong Pooyan PrivateEye Qbert "
        "Riverraid RoadRunner Robotank Seaquest Skiing Solaris SpaceInvaders StarGunner Tennis "
        "TimePilot Tutankham UpNDown Venture VideoPinball WizardOfWor YarsRevenge Zaxxon"
    ).split()
)

# Gym ids whose game runs without frame skipping or sticky actions, so adept's preprocessing on
# envpool reproduces them. Other Gym variants (Pong-v4, PongDeterministic-v4, ALE/Pong-v5) have
# built-in skipping or sticky actions and are not mapped.
_GYM_ATARI_SUFFIXES = ("NoFrameskip-v4", "NoFrameskip-v0")


def is_envpool_task(task_id: str) -> bool:
    """True if envpool registers ``task_id`` (see ``envpool.list_all_envs()``)."""
    return task_id in _envpool_registry.specs


def atari_task_id(env_id: str) -> str | None:
    """Map an adept/Gym Atari id to envpool's Atari task id.

    Args:
      env_id: ``"PongNoFrameskip-v4"`` (adept's ids, also ``...NoFrameskip-v0``) or an envpool
        Atari id such as ``"Pong-v5"``.

    Returns:
      The envpool task id (``"Pong-v5"``), or ``None`` if ``env_id`` names no Atari game.
    """
    task_id = env_id
    for suffix in _GYM_ATARI_SUFFIXES:
        if env_id.endswith(suffix):
            task_id = env_id[: -len(suffix)] + "-v5"
            break
    entry = _envpool_registry.specs.get(task_id)
    # registry entry: (import path, spec class, kwargs); Atari tasks live in envpool.atari.
    return task_id if entry is not None and entry[0] == "envpool.atari" else None


class EnvpoolEnv:
    """A synchronous envpool as a :class:`~fnrl.envs.base.BatchedEnv`.

    Build it with :func:`make_atari_env` or :func:`make_envpool_env`.

    Attributes:
      spec: per-env specs; Atari observes ``{"screen": uint8 [84, 84, frame_stack]}``.
      num_envs: B.
      frames_per_step: emulator frames per agent step (Atari's frame skip, else 1).
    """

    def __init__(self, pool: Any, *, clip_rewards: bool, frame_stack: int | None = None) -> None:
        """Wrap an envpool made with ``env_type="gymnasium"`` and ``batch_size == num_envs``.

        Args:
          pool: the envpool.
          clip_rewards: clip learning rewards to ``[-1, 1]``.
          frame_stack: Atari only (``None`` otherwise): the pool was made with ``stack_num=1``
            and this many grayscale frames are stacked on the host, channels-last.
        """
        self._pool = pool
        self.num_envs = int(pool.config["num_envs"])
        self.frames_per_step = int(pool.config.get("frame_skip", 1))
        observation_space, action_space = gymnasium_spaces(pool)
        self._converter = SpaceConverter(observation_space, action_space)
        self.xla_problem = _xla_problem(action_space)  # why xla() cannot work, or None
        self._frame_stack = frame_stack
        spec = self._converter.spec
        if frame_stack is not None:
            _, height, width = observation_space.shape  # [1, H, W]: one gray frame
            screen = ArraySpec((height, width, frame_stack), np.dtype(np.uint8))
            spec = EnvSpec(observations={"screen": screen}, actions=spec.actions)
        self.spec = spec
        self._tracker = EpisodeTracker(self.num_envs, clip_rewards=clip_rewards)

    def reset(self) -> TimeStep:
        """Reset every env; see :meth:`BatchedEnv.reset`."""
        obs, _ = self._pool.reset()
        return self._tracker.reset(self._observation(obs, None, None, np))

    def step(self, actions: Mapping[str, np.ndarray]) -> TimeStep:
        """Step every env; see :meth:`BatchedEnv.step`."""
        last = self._tracker.last
        output = self._pool.step(self._converter.action(actions, self.num_envs))
        obs, reward, terminated, truncated, game_over = self._raw(output, last, np)
        return self._tracker.step(obs, reward, terminated, truncated, game_over)

    def xla(self) -> tuple[Any, XlaStep]:
        """envpool's XLA interface, stepping TimeSteps inside compiled code.

        Returns:
          ``(handle, step)``: the pool's handle, and the pure
          ``step(handle, timestep, actions) -> (handle, timestep)`` that sends one action per
          env (name -> ``[B]`` int) and receives the TimeStep after ``timestep``, computed as
          :meth:`step` computes it on the host (the same conversion, frame stack and
          :func:`~fnrl.envs.base.next_timestep`, with ``jax.numpy``). Thread the returned
          handle through the computation: it orders the steps. Host steps and XLA steps drive
          the same envs, so they can follow one another.
        """
        handle, recv, send, _ = self._pool.xla()
        env_ids = np.arange(self.num_envs, dtype=np.int32)

        def step(handle: Any, timestep: TimeStep, actions: Action) -> tuple[Any, TimeStep]:
            handle = send(handle, self._converter.action(actions, self.num_envs, jnp), env_ids)
            handle, output = recv(handle)
            obs, reward, terminated, truncated, game_over = self._raw(output, timestep, jnp)
            return handle, next_timestep(
                timestep,
                obs,
                reward,
                terminated,
                truncated,
                game_over,
                clip_rewards=self._tracker.clip_rewards,
                xp=jnp,
            )

        return handle, step

    def render(self) -> np.ndarray:
        """Env 0's RGB screen ``[H, W, 3]`` uint8 (Atari: the ALE's 210x160 colour frame).

        Raises:
          ValueError: the env was made without ``render=True``.
        """
        if getattr(self._pool, "render_mode", None) != "rgb_array":
            raise ValueError("this env cannot render: make it with render=True")
        return np.asarray(self._pool.render())[0]

    def close(self) -> None:
        """Stop envpool's threads."""
        self._pool.close()

    def _raw(self, output: tuple, previous: TimeStep, xp: Any) -> tuple:
        """``(obs, reward, terminated, truncated, game_over)`` of one envpool output."""
        obs, reward, terminated, truncated, info = output
        first = previous.terminated | previous.truncated
        obs = self._observation(obs, previous.obs, first, xp)
        game_over = None if self._frame_stack is None else xp.asarray(info["terminated"], bool)
        return obs, reward, terminated, truncated, game_over

    def _observation(
        self, obs: Any, previous: dict[str, Any] | None, first: Any, xp: Any
    ) -> dict[str, Any]:
        """fnrl's observation dict; Atari frames stacked onto ``previous`` (None at reset)."""
        if self._frame_stack is None:
            return self._converter.observation(obs, xp)
        frame = obs[:, 0, :, :, None]  # [B, 1, H, W] -> [B, H, W, 1]
        restart = xp.repeat(frame, self._frame_stack, axis=-1)
        if previous is None:
            return {"screen": restart}
        # The stack restarts on every first step, life losses included (module docstring).
        stacked = xp.concatenate([previous["screen"][..., 1:], frame], axis=-1)
        return {"screen": xp.where(first[:, None, None, None], restart, stacked)}


def _xla_problem(action_space: Any) -> str | None:
    """Why a pool with ``action_space`` cannot be stepped inside XLA, or None if it can.

    envpool's XLA send takes actions of exactly the dtype the task declares; MuJoCo tasks
    declare float64, which JAX computes only with ``jax_enable_x64``.
    """
    if getattr(action_space, "dtype", None) == np.float64 and not jax.config.jax_enable_x64:
        return "this envpool task takes float64 actions, which JAX computes only with x64 enabled"
    return None


def gymnasium_spaces(source: Any) -> tuple[Any, Any]:
    """The Gymnasium (observation, action) spaces of an envpool pool or of a task's spec.

    envpool builds float32 Boxes from float64 bounds, for which Gymnasium warns on every access
    that it cast them. fnrl reads every bound as float32 anyway, so the warning tells a user
    nothing to act on and is silenced here.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*Box (low|high)'s precision lowered", UserWarning)
        if hasattr(source, "gymnasium_observation_space"):  # an envpool.make_spec spec
            return source.gymnasium_observation_space, source.gymnasium_action_space
        return source.observation_space, source.action_space


def _make_pool(task_id: str, num_envs: int, seed: int, render: bool, **settings: Any) -> Any:
    """A synchronous gymnasium-style envpool of ``num_envs`` envs, env i seeded ``seed + i``."""
    if render:
        settings["render_mode"] = "rgb_array"
    return envpool.make(
        task_id,
        env_type="gymnasium",
        num_envs=num_envs,
        batch_size=num_envs,
        seed=_env_seeds(seed, num_envs),
        **settings,
    )


def make_atari_env(
    env_id: str,
    num_envs: int,
    seed: int,
    *,
    skip_rate: int = 4,
    max_episode_steps: int = 10_000,
    frame_stack: int = 4,
    episodic_life: bool = True,
    clip_rewards: bool = True,
    render: bool = False,
) -> EnvpoolEnv:
    """An Atari game on envpool with adept's DeepMind preprocessing.

    adept's stack (``adept.environments.openai_gym``): NoopReset (1-30 raw frames) -> MaxAndSkip
    (``skip_rate`` frames, max of the last two) -> EpisodicLife -> FireReset, TimeLimit of
    ``max_episode_steps * skip_rate`` frames, grayscale 84x84 INTER_AREA resize, frame stack,
    rewards clipped to ``[-1, 1]`` for learning only. envpool implements the same operations;
    differences: after a life loss envpool's reset plays random no-ops and one raw FIRE frame
    where adept played one no-op step and FIRE and action 2 steps, and the FIRE reset is
    skipped for games whose minimal action set has no FIRE.

    Args:
      env_id: ``"PongNoFrameskip-v4"`` or ``"Pong-v5"`` (see :func:`atari_task_id`).
      num_envs: B; env i is seeded with ``seed + i``.
      seed: the run's seed.
      skip_rate: frames per agent step (adept ``--skip-rate``).
      max_episode_steps: agent steps before truncation (adept ``-mel``, default 10000).
      frame_stack: grayscale frames stacked on the last axis (adept used 4 for Linear bodies, 1
        for recurrent ones).
      episodic_life: a life loss terminates the episode for learning (adept's EpisodicLife);
        episode statistics still count whole games.
      clip_rewards: clip learning rewards to ``[-1, 1]`` (adept's ``Clip``).
      render: also render RGB frames (:meth:`EnvpoolEnv.render`).

    Returns:
      The env, observing ``{"screen": uint8 [B, 84, 84, frame_stack]}``.
    """
    task_id = atari_task_id(env_id)
    if task_id is None:
        raise ValueError(
            f"{env_id!r} is not an Atari id such as 'PongNoFrameskip-v4' or 'Pong-v5'."
        )
    _check_positive(
        num_envs=num_envs,
        skip_rate=skip_rate,
        max_episode_steps=max_episode_steps,
        frame_stack=frame_stack,
    )
    pool = _make_pool(
        task_id,
        num_envs,
        seed,
        render,
        max_episode_steps=max_episode_steps,
        frame_skip=skip_rate,
        stack_num=1,  # stacked on the host, restarted at life losses (see module docstring)
        noop_max=30,
        episodic_life=episodic_life,
        zero_discount_on_life_loss=False,
        reward_clip=False,  # clipped by EpisodeTracker, which also logs the raw reward
        use_fire_reset=True,
        repeat_action_probability=0.0,
        full_action_space=False,
        img_height=84,
        img_width=84,
        gray_scale=True,
        use_inter_area_resize=True,
    )
    return EnvpoolEnv(pool, clip_rewards=clip_rewards, frame_stack=frame_stack)


def make_envpool_env(
    task_id: str,
    num_envs: int,
    seed: int,
    *,
    max_episode_steps: int | None = None,
    clip_rewards: bool = False,
    render: bool = False,
) -> EnvpoolEnv:
    """One of envpool's non-Atari tasks with a discrete action space, e.g. ``"CartPole-v1"``.

    Args:
      task_id: an id from ``envpool.list_all_envs()``.
      num_envs: B; env i is seeded with ``seed + i``.
      seed: the run's seed.
      max_episode_steps: steps before truncation; ``None`` keeps the task's default.
      clip_rewards: clip learning rewards to ``[-1, 1]``.
      render: also render RGB frames (:meth:`EnvpoolEnv.render`).

    Returns:
      The env. Observations are converted by :class:`~fnrl.envs.base.SpaceConverter`; their
      layout is envpool's (only Atari screens are transposed to channels-last).
    """
    if not is_envpool_task(task_id):
        raise ValueError(f"{task_id!r} is not an envpool task; see envpool.list_all_envs().")
    if atari_task_id(task_id) is not None:
        raise ValueError(f"{task_id!r} is an Atari game: use make_atari_env.")
    _check_positive(num_envs=num_envs, max_episode_steps=max_episode_steps)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    pool = _make_pool(task_id, num_envs, seed, render, **kwargs)
    try:
        return EnvpoolEnv(pool, clip_rewards=clip_rewards)
    except ValueError:
        pool.close()
        raise
