"""StarCraft II through pysc2 (the ``sc2`` extra): adept's six minigames as a ``BatchedEnv``.

IMPURE host code: every env is a StarCraft II game, driven by pysc2 in its own subprocess
(Gymnasium's ``AsyncVectorEnv``). The extra installs ``pysc2-evolved``, the maintained fork of
DeepMind's pysc2 (import name ``pysc2_evolved``): pysc2 4.0.0 does not import on Python 3.11
with protobuf 7 (it needs the regenerated ``s2clientprotocol`` of ``pys2clientprotocol`` and a
patch for ``random.shuffle``'s removed argument), the fork needs neither. pysc2 is imported the
first time an SC2 env is made, never with fnrl.

adept's settings (``adept/environments/deepmind_sc2.py``): an 84x84 feature screen and minimap,
``step_mul`` 8, the map's own episode length, and learning rewards scaled per game
(DefeatRoaches x0.1, DefeatZerglingsAndBanelings x0.2; episode returns stay the game's score).

Observations, per env:

* ``vision``: ``[84, 84, S + M]`` float32, the feature screen's ``S`` layers then the minimap's
  ``M``, channels-last, each divided by its pysc2 ``scale`` (into ``[0, 1)``), adept's stack;
* ``control_groups``: ``[20]`` float32, the ten groups' (unit type, count), flattened;
* ``available_actions``: ``[F]`` float32, 1 for each of pysc2's ``F`` functions available now.

Actions: adept's dict: ``func_id`` (one of the ``F`` functions, masked by
``available_actions``: an unavailable one is never chosen), and one head per argument value:
``screen_x``, ``screen_y``, ``minimap_x``, ``minimap_y``, ``screen2_x``, ``screen2_y``,
``queued``, ``control_group_act``, ... each ``used_when`` the chosen function takes that
argument (:class:`~fnrl.specs.DiscreteSpec`), so that the arguments a function ignores add
nothing to the loss. :func:`function_call` assembles the ``FunctionCall``; a function that is
not available (possible only for a policy that ignores the mask) becomes a no-op.

Without the game (``SC2PATH/Versions``), making an env ends with one line naming both. pysc2's
own ``mock_sc2_env.SC2TestEnv`` stands in for the game with :func:`use_game` (the tests do).
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from fnrl.envs.base import EpisodeTracker
from fnrl.envs.gymnasium import GymnasiumEnv
from fnrl.specs import DiscreteSpec, EnvSpec

# adept's SC2_ENVS: the minigames of DeepMind's SC2LE paper (Vinyals et al. 2017).
SC2_ENVS = (
    "BuildMarines",
    "CollectMineralShards",
    "DefeatRoaches",
    "DefeatZerglingsAndBanelings",
    "FindAndDefeatZerglings",
    "MoveToBeacon",
)
REWARD_SCALES = {"DefeatRoaches": 0.1, "DefeatZerglingsAndBanelings": 0.2}  # adept's
FEATURE_SIZE = 84  # pixels on a side of the feature screen and minimap
STEP_MUL = 8  # game steps per agent step
SC2_EXTRA = "pip install 'fnrl[sc2]'"
_GAME_DIRS = {  # where pysc2 looks for the game without SC2PATH
    "Linux": "~/StarCraftII",
    "Darwin": "/Applications/StarCraft II",
    "Windows": "C:/Program Files (x86)/StarCraft II",
}
NO_OP = 0  # pysc2's function 0


def is_sc2_id(env_id: str) -> bool:
    """True for adept's StarCraft II minigame ids."""
    return env_id in SC2_ENVS


@functools.cache
def pysc2() -> Any:
    """The ``pysc2_evolved`` package, imported quietly (no pygame banner, no timeout notice).

    Raises:
      ValueError: the ``sc2`` extra is not installed; the message names it.
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    # pysc2_evolved logs a warning on import; a handler of our own keeps logging from
    # installing its default one on the root logger, and the level drops the warning.
    root, quiet = logging.getLogger(), logging.NullHandler()
    level = root.level
    root.addHandler(quiet)
    root.setLevel(logging.ERROR)
    try:
        import pysc2_evolved
        from pysc2_evolved.env import sc2_env  # noqa: F401
        from pysc2_evolved.lib import actions, features  # noqa: F401
    except ImportError as error:
        raise ValueError(
            f"StarCraft II ids need the sc2 extra (pysc2-evolved; {error}): {SC2_EXTRA}"
        ) from error
    finally:
        root.setLevel(level)
        root.removeHandler(quiet)
    return pysc2_evolved


def game_dir() -> Path:
    """Where pysc2 looks for StarCraft II: ``SC2PATH``, else the platform's default."""
    default = _GAME_DIRS.get(platform.system(), _GAME_DIRS["Linux"])
    return Path(os.environ.get("SC2PATH", default)).expanduser()


def check_game_installed() -> None:
    """Raises ``ValueError`` naming ``SC2PATH`` and the directory when the game is missing."""
    versions = game_dir() / "Versions"
    if not versions.is_dir():
        raise ValueError(
            f"StarCraft II is not installed: pysc2 looked for the game's {versions} directory; "
            "install the game and set SC2PATH to the directory that holds Versions"
        )


def launch_game(**settings: Any) -> Any:
    """A real game: ``pysc2.env.sc2_env.SC2Env(**settings)``, once the game is found."""
    check_game_installed()
    from absl import flags

    if not flags.FLAGS.is_parsed():  # pysc2 reads its run-config flags
        flags.FLAGS.mark_as_parsed()
    return pysc2().env.sc2_env.SC2Env(**settings)


_launcher: Callable[..., Any] = launch_game


def use_game(launcher: Callable[..., Any]) -> None:
    """Play every SC2 env made from now on with ``launcher(**settings)`` instead of the game.

    ``settings`` are ``SC2Env``'s keywords (:func:`game_settings`), so pysc2's
    ``mock_sc2_env.SC2TestEnv`` fits. The launcher goes to the env subprocesses by reference:
    it must be importable there (a module-level class or function).
    """
    global _launcher
    _launcher = launcher


def game_settings(map_name: str, seed: int | None) -> dict[str, Any]:
    """adept's ``SC2Env`` keywords for a minigame."""
    features = pysc2().lib.features
    return {
        "map_name": map_name,
        "step_mul": STEP_MUL,
        "game_steps_per_episode": 0,  # the map's own length
        "agent_interface_format": features.AgentInterfaceFormat(
            feature_dimensions=features.Dimensions(screen=FEATURE_SIZE, minimap=FEATURE_SIZE)
        ),
        "random_seed": seed,
    }


@functools.cache
def argument_heads() -> dict[str, tuple[str, int]]:
    """Action head name -> (pysc2 argument type, values): ``screen_x`` -> ``("screen", 84)``.

    A point argument (screen, minimap, screen2) gets an ``_x`` and a ``_y`` head.
    """
    features = pysc2().lib.features
    interface = game_settings("", None)["agent_interface_format"]
    heads = {}
    for arg in features.Features(interface).action_spec().types:
        if len(arg.sizes) == 2:
            heads[f"{arg.name}_x"] = (arg.name, arg.sizes[0])
            heads[f"{arg.name}_y"] = (arg.name, arg.sizes[1])
        else:
            heads[arg.name] = (arg.name, arg.sizes[0])
    return heads


@functools.cache
def _scales() -> np.ndarray:
    """``[S + M]`` float32: each feature layer's pysc2 scale, screen then minimap."""
    features = pysc2().lib.features
    layers = [*features.SCREEN_FEATURES, *features.MINIMAP_FEATURES]
    return np.array([layer.scale for layer in layers], np.float32)


def num_functions() -> int:
    """How many functions pysc2 has: the values of ``func_id``."""
    return len(pysc2().lib.actions.FUNCTIONS)


def sc2_spec(spec: EnvSpec) -> EnvSpec:
    """The converted Gymnasium spec with the SC2 action rules: ``func_id`` masked by
    ``available_actions``, each argument head used only by the functions that take it."""
    functions = pysc2().lib.actions.FUNCTIONS
    takes = [{arg.name for arg in function.args} for function in functions]
    actions = {"func_id": DiscreteSpec(len(functions), mask="available_actions")}
    for head, (arg, values) in argument_heads().items():
        actions[head] = DiscreteSpec(values, used_when=("func_id", tuple(arg in t for t in takes)))
    return spec._replace(actions=actions)


def function_call(action: Mapping[str, Any], available: np.ndarray) -> Any:
    """The pysc2 ``FunctionCall`` of one env's action dict: its function (a no-op where it is
    not ``available``) with the argument heads that function takes."""
    functions = pysc2().lib.actions
    function = int(action["func_id"])
    if not available[function]:
        function = NO_OP
    arguments = []
    for arg in functions.FUNCTIONS[function].args:
        if len(arg.sizes) == 2:
            arguments.append([int(action[f"{arg.name}_x"]), int(action[f"{arg.name}_y"])])
        else:
            arguments.append([int(action[arg.name])])
    return functions.FunctionCall(function, arguments)


class SC2GameEnv(gymnasium.Env):
    """One minigame as a Gymnasium env (dict observations and actions, see the module).

    The game starts at the first ``reset``, seeded with its seed. An episode ends, terminated,
    at pysc2's last step.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        map_name: str,
        *,
        launcher: Callable[..., Any] = launch_game,
        max_episode_steps: int | None = None,
        disable_env_checker: bool = True,
    ) -> None:
        """Declare the spaces; no game yet.

        Args:
          map_name: a minigame, one of :data:`SC2_ENVS`.
          launcher: makes the game from :func:`game_settings` (see :func:`use_game`).
          max_episode_steps: must be None: a minigame ends when its map says (adept's
            ``game_steps_per_episode=0``).
          disable_env_checker: ignored (the env is built for fnrl's adapter).
        """
        del disable_env_checker
        if max_episode_steps is not None:
            raise ValueError(
                f"{map_name} ends when its map says; --max-episode-length does not apply"
            )
        self._map_name, self._launcher, self._game = map_name, launcher, None
        box = functools.partial(gymnasium.spaces.Box, dtype=np.float32)
        self.observation_space = gymnasium.spaces.Dict(
            {
                "vision": box(0.0, 1.0, (FEATURE_SIZE, FEATURE_SIZE, len(_scales()))),
                "control_groups": box(0.0, np.inf, (20,)),
                "available_actions": gymnasium.spaces.MultiBinary(num_functions()),
            }
        )
        heads = {"func_id": num_functions(), **{h: n for h, (_, n) in argument_heads().items()}}
        self.action_space = gymnasium.spaces.Dict(
            {head: gymnasium.spaces.Discrete(n) for head, n in heads.items()}
        )
        # MultiBinary's own dtype: the adapter checks the first observations against the space.
        self._available = np.zeros(num_functions(), np.int8)

    def _observation(self, timestep: Any) -> dict[str, np.ndarray]:
        obs = timestep.observation
        layers = np.concatenate(
            [np.asarray(obs["feature_screen"]), np.asarray(obs["feature_minimap"])]
        )
        self._available = np.zeros(num_functions(), np.int8)
        self._available[np.asarray(obs["available_actions"], np.int64)] = 1
        return {
            "vision": (layers.astype(np.float32) / _scales()[:, None, None]).transpose(1, 2, 0),
            "control_groups": np.asarray(obs["control_groups"], np.float32).reshape(20),
            "available_actions": self._available.copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start the game (the first time, seeded) or its next episode."""
        super().reset(seed=seed)
        if self._game is None:
            self._game = self._launcher(**game_settings(self._map_name, seed))
        (timestep,) = self._game.reset()
        return self._observation(timestep), {}

    def step(
        self, action: Mapping[str, Any]
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Play one agent step (``STEP_MUL`` game steps) of the action's ``FunctionCall``."""
        (timestep,) = self._game.step([function_call(action, self._available)])
        return self._observation(timestep), float(timestep.reward), timestep.last(), False, {}

    def close(self) -> None:
        """End the game."""
        if self._game is not None:
            self._game.close()
            self._game = None


class SC2Env(GymnasiumEnv):
    """B minigames, each in its own subprocess, as a :class:`~fnrl.envs.base.BatchedEnv`.

    Attributes:
      spec: the module's observations and actions (:func:`sc2_spec`).
      num_envs: B.
      frames_per_step: 1 (an agent step is ``STEP_MUL`` game steps).
    """

    def __init__(self, env_id: str, num_envs: int, seed: int, *, render: bool = False) -> None:
        """Start the B env processes; each starts its game at the first reset.

        Raises:
          ValueError: the ``sc2`` extra or the game is missing (one line naming what to
            install), or ``render``: pysc2's feature layers are not an RGB frame.
        """
        pysc2()
        if render:
            raise ValueError(f"{env_id} cannot render: StarCraft II renders in its own window")
        if _launcher is launch_game:
            check_game_installed()  # here, before B processes start, rather than in each
        make = functools.partial(SC2GameEnv, launcher=_launcher)
        super().__init__(env_id, num_envs, seed, asynchronous=True, make=make)
        self.spec = sc2_spec(self.spec)
        self._tracker = EpisodeTracker(
            num_envs, clip_rewards=False, reward_scale=REWARD_SCALES.get(env_id, 1.0)
        )
