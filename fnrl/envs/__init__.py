"""Host-side environments: adept's env ids, batched, with next-step autoreset.

IMPURE: simulators, threads and subprocesses live here; the pure code only sees
:class:`~fnrl.types.TimeStep` and :class:`~fnrl.specs.EnvSpec`. :func:`make_env` picks the backend
from the id: Atari on envpool with adept's preprocessing, envpool's other discrete tasks, then
any Gymnasium id, then any id registered with the old ``gym`` package where it is installed.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import envpool as _envpool
import gymnasium as _gymnasium

from fnrl.envs.base import (
    BatchedEnv,
    EnvOutputError,
    EpisodeTracker,
    SpaceConverter,
    _check_positive,
    check_observation,
    first_timestep,
    next_timestep,
)
from fnrl.envs.envpool import (
    ATARI_6_ENVS,
    ATARI_ENVS,
    EnvpoolEnv,
    atari_task_id,
    gymnasium_spaces,
    is_envpool_task,
    make_atari_env,
    make_envpool_env,
)
from fnrl.envs.gym_legacy import (
    GymLegacyEnv,
    _gym_registry,
    from_gym_space,
    is_gym_id,
    make_gym_env,
)
from fnrl.envs.gymnasium import GymnasiumEnv, _make_gymnasium_env
from fnrl.envs.sc2 import SC2_ENVS, SC2Env, is_sc2_id
from fnrl.plugins import import_user_module

__all__ = [
    "ATARI_6_ENVS",
    "ATARI_ENVS",
    "ENV_KINDS",
    "MINATAR_PREFIX",
    "SC2_ENVS",
    "SMALL_IMAGE_SIDE",
    "BatchedEnv",
    "EnvOutputError",
    "EnvpoolEnv",
    "EpisodeTracker",
    "GymLegacyEnv",
    "GymnasiumEnv",
    "SC2Env",
    "SpaceConverter",
    "atari_task_id",
    "check_observation",
    "env_kind",
    "first_timestep",
    "from_gym_space",
    "import_env_module",
    "is_envpool_task",
    "is_gym_id",
    "is_sc2_id",
    "make_atari_env",
    "make_env",
    "make_envpool_env",
    "make_gym_env",
    "next_timestep",
]

# The ids of MinAtar (Young & Tian 2019), which fnrl registers with Gymnasium on first use.
MINATAR_PREFIX = "MinAtar/"

# adept's --max-episode-length default, in agent steps.
_ADEPT_MAX_EPISODE_STEPS = 10_000


def make_env(
    env_id: str,
    num_envs: int,
    seed: int,
    *,
    skip_rate: int = 4,
    max_episode_steps: int | None = None,
    frame_stack: int = 4,
    episodic_life: bool = True,
    clip_rewards: bool | None = None,
    render: bool = False,
) -> BatchedEnv:
    """Make ``num_envs`` copies of ``env_id``, env i seeded with ``seed + i`` (adept).

    Routing: (1) Atari ids (``"PongNoFrameskip-v4"``, ``"Pong-v5"``) -> envpool with adept's
    DeepMind preprocessing (:func:`make_atari_env`); adept's StarCraft II minigames
    (``"MoveToBeacon"``, :data:`SC2_ENVS`) -> :class:`SC2Env` (the ``sc2`` extra); (2) other
    envpool tasks, e.g.
    ``"CartPole-v1"`` -> envpool (:func:`make_envpool_env`); (3) any other id in
    ``gymnasium.envs.registry`` -> :class:`GymnasiumEnv`; (4) an id registered with the old
    ``gym`` package, if installed -> :class:`GymnasiumEnv` of :func:`make_gym_env`'s adapted
    envs; otherwise ``ValueError`` with close matches. The ``"module:Id"`` form imports
    ``module`` first (it registers ``Id``, with Gymnasium or gym; :func:`import_env_module`).
    Unsupported spaces raise ``ValueError`` naming the space.

    Args:
      env_id: the environment id.
      num_envs: B, at least 1.
      seed: the run's seed, non-negative.
      skip_rate: Atari only: frames per agent step (adept ``--skip-rate 4``).
      max_episode_steps: agent steps before truncation; ``None`` means adept's ``-mel 10000``
        for Atari and the task's registered limit otherwise.
      frame_stack: Atari only: stacked frames, the last axis of ``obs["screen"]``.
      episodic_life: Atari only: a life loss terminates the episode for learning.
      clip_rewards: clip learning rewards to ``[-1, 1]``; ``None`` means True for Atari (adept)
        and False otherwise. Episode statistics always use unclipped rewards.
      render: also render env 0's RGB frames: the env gains ``render() -> [H, W, 3] uint8``
        (Atari: the ALE's colour screen, not the agent's 84x84 input); ``ValueError`` for a
        Gymnasium env without an ``rgb_array`` mode.

    Returns:
      A :class:`BatchedEnv`.
    """
    _check_positive(num_envs=num_envs, max_episode_steps=max_episode_steps)
    given, env_id = env_id, import_env_module(env_id)
    if atari_task_id(env_id) is not None:
        return make_atari_env(
            env_id,
            num_envs,
            seed,
            skip_rate=skip_rate,
            max_episode_steps=(
                _ADEPT_MAX_EPISODE_STEPS if max_episode_steps is None else max_episode_steps
            ),
            frame_stack=frame_stack,
            episodic_life=episodic_life,
            clip_rewards=True if clip_rewards is None else clip_rewards,
            render=render,
        )
    if is_sc2_id(env_id):
        if max_episode_steps is not None or clip_rewards:
            raise ValueError(f"{env_id} ends when its map says, with adept's reward scaling")
        return SC2Env(env_id, num_envs, seed, render=render)
    options = dict(
        max_episode_steps=max_episode_steps, clip_rewards=bool(clip_rewards), render=render
    )
    if is_envpool_task(env_id):
        return make_envpool_env(env_id, num_envs, seed, **options)
    make = _host_env_maker(env_id)
    if make is None:
        raise _unknown_env_id(given)
    return GymnasiumEnv(env_id, num_envs, seed, make=make, **options)


# What kind of env an id names, as far as the defaults of a run go (fnrl.config.PRESETS):
# "image" if some observation is a rank-3 array, which goes through the vision trunk;
# "small_image" if every such screen is smaller than SMALL_IMAGE_SIDE on a side (MinAtar's
# 10x10 boards); "continuous" for other envs with a continuous (Box) action; "vector" for the
# rest.
ENV_KINDS: tuple[str, ...] = ("image", "small_image", "vector", "continuous")

# The smallest side adept's Atari trunks keep a feature map for: the Nature convolutions
# (8x8/4, 4x4/2, 3x3/1) need 36 pixels.
SMALL_IMAGE_SIDE = 36


def env_kind(env_id: str) -> str:
    """Whether ``env_id`` observes images, or vectors with discrete or continuous actions.

    "image" if any observation entry is a rank-3 array (a screen, which
    :class:`~fnrl.networks.ModularNetwork` sends through the vision trunk), whatever the
    actions, and "small_image" if every screen is smaller than :data:`SMALL_IMAGE_SIDE` on a
    side (MinAtar's boards); otherwise "continuous" if any action entry is a Box (a Gaussian
    head), "vector" if not (rank-1 arrays and Discrete spaces observed, which become one-hot
    vectors). Atari ids are images without any lookup; envpool tasks are read from
    ``envpool.make_spec`` without making a pool; Gymnasium and gym ids make one env to read its
    spaces and close it.

    Args:
      env_id: the environment id, as for :func:`make_env`.

    Returns:
      One of :data:`ENV_KINDS`.

    Raises:
      ValueError: an unknown id (the message of :func:`make_env`, with close matches).
    """
    given, env_id = env_id, import_env_module(env_id)
    if atari_task_id(env_id) is not None or is_sc2_id(env_id):
        return "image"
    if is_envpool_task(env_id):
        observations, actions = gymnasium_spaces(_envpool.make_spec(env_id))
    else:
        make = _host_env_maker(env_id)
        if make is None:
            raise _unknown_env_id(given)
        env = make(env_id)
        try:
            observations, actions = env.observation_space, env.action_space
        finally:
            env.close()
    screens = [s.shape for s in _leaf_spaces(observations) if len(s.shape or ()) == 3]
    if screens:
        small = all(min(height, width) < SMALL_IMAGE_SIDE for height, width, _ in screens)
        return "small_image" if small else "image"
    if any(isinstance(s, _gymnasium.spaces.Box) for s in _leaf_spaces(actions)):
        return "continuous"
    return "vector"


def import_env_module(env_id: str) -> str:
    """For the ``"module:Id"`` form (Gymnasium's and gym's), imports ``module`` (which registers
    ``Id``) and returns ``Id``; a ``"MinAtar/..."`` id registers MinAtar's Gymnasium ids (the
    ``minatar`` extra); any other id is returned as it is.

    Raises:
      ValueError: an empty module or id; a module that cannot be imported, whatever it did (one
        line naming it and the cause: :func:`fnrl.plugins.import_user_module`); or a MinAtar id
        without the ``minatar`` package.
    """
    if env_id.startswith(MINATAR_PREFIX) and env_id not in _gymnasium.envs.registry:
        _register_minatar()
    if ":" not in env_id:
        return env_id
    module, name = env_id.split(":", 1)
    if not module.strip() or not name.strip():
        raise ValueError(
            f"--env-id {env_id!r}: expected MODULE:ID, a module that registers the env id ID "
            "with Gymnasium or gym, e.g. 'my_envs:MyEnv-v0'"
        )
    import_user_module(
        module, f"--env-id {env_id!r}: cannot import the module {module!r} that registers {name!r}"
    )
    return name


def _register_minatar() -> None:
    """Registers MinAtar's Gymnasium ids (``MinAtar/Breakout-v1``, ...)."""
    try:
        from minatar.gym import register_envs
    except ImportError as error:
        raise ValueError(
            f"MinAtar ids need the minatar package ({error}): pip install 'fnrl[minatar]'"
        ) from error
    register_envs()


def _host_env_maker(env_id: str) -> Callable[..., _gymnasium.Env] | None:
    """What makes one env of a Gymnasium or gym id for :class:`GymnasiumEnv`, else ``None``."""
    if env_id in _gymnasium.envs.registry:
        return _make_gymnasium_env
    if is_gym_id(env_id):
        return make_gym_env
    return None


def _leaf_spaces(space: _gymnasium.Space) -> list[_gymnasium.Space]:
    """The spaces inside ``space``'s Dict and Tuple containers, or ``[space]``."""
    if isinstance(space, _gymnasium.spaces.Dict):
        return [leaf for entry in space.spaces.values() for leaf in _leaf_spaces(entry)]
    if isinstance(space, _gymnasium.spaces.Tuple):
        return [leaf for entry in space.spaces for leaf in _leaf_spaces(entry)]
    return [space]


def _unknown_env_id(given: str) -> ValueError:
    """The error for an id no backend knows, naming close matches.

    Args:
      given: the id as given, ``"module:Id"`` included (the module is imported already).
    """
    module, env_id = given.split(":", 1) if ":" in given else ("", given)
    gym_ids = list(_gym_registry())
    # gym registers most of Gymnasium's ids too: each is suggested once.
    known = dict.fromkeys(
        [*ATARI_ENVS, *SC2_ENVS, *_envpool.list_all_envs(), *_gymnasium.envs.registry]
    )
    known.update(dict.fromkeys(gym_ids))
    matches = difflib.get_close_matches(env_id, list(known), n=5)
    hint = f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""
    registries = "Gymnasium or gym" if gym_ids else "Gymnasium"
    imported = f" (its module {module!r} was imported and registered no such id)" if module else ""
    return ValueError(
        f"Unknown env id {env_id!r}{imported}: not an Atari id (e.g. 'PongNoFrameskip-v4', "
        f"'Pong-v5'), not in envpool.list_all_envs() and not registered in {registries}.{hint}"
    )
