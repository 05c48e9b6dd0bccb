"""Envs registered with the old ``gym`` package on import (``gym_toy_envs:<Id>``).

* ``LegacyToyKeys-v0``: ``legacy_envs.OldToyKeys`` (gym < 0.22's API) as a ``gym.Env`` with
  gym's spaces, 20 steps per episode at most.
* ``LegacyCartPole-v1``: gym's own CartPole under an id that envpool and Gymnasium do not know.
* ``LegacyBool8-v0``: an env that uses ``np.bool8`` when made (fails under numpy 2).
"""

import gym
import numpy as np
from legacy_envs import OldToyKeys


class GymToyKeys(OldToyKeys, gym.Env):
    """OldToyKeys with gym's spaces, as an old gym env was written."""

    def __init__(self):
        super().__init__(spaces=gym.spaces)


class Bool8Env(GymToyKeys):
    """GymToyKeys whose constructor checks a flag's type with ``np.bool8``, as gym 0.26 did."""

    def __init__(self):
        super().__init__()
        self.flag_type = np.bool8


gym.register("LegacyToyKeys-v0", entry_point=GymToyKeys)
gym.register(
    "LegacyCartPole-v1",
    entry_point="gym.envs.classic_control.cartpole:CartPoleEnv",
    max_episode_steps=500,
)
gym.register("LegacyBool8-v0", entry_point=Bool8Env)
