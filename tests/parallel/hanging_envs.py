"""A Gymnasium env whose ``step`` never returns after a while (``hanging_envs:Hangs-v0``).

It counts steps over all its instances in the process; from step ``HANG_AFTER`` on, ``step``
touches the file ``$FNRL_TEST_HANG_MARKER`` (when set) and sleeps for an hour.
"""

import itertools
import os
import time
from pathlib import Path

import gymnasium
import numpy as np

HANG_AFTER = 400
_steps = itertools.count()


class Hangs(gymnasium.Env):
    """One constant observation, two actions, reward 1; hangs in ``step`` after a while."""

    observation_space = gymnasium.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if next(_steps) >= HANG_AFTER:
            if marker := os.environ.get("FNRL_TEST_HANG_MARKER"):
                Path(marker).touch()
            time.sleep(3600)
        return np.zeros(2, np.float32), 1.0, False, False, {}


gymnasium.register("Hangs-v0", entry_point=Hangs, max_episode_steps=50)
