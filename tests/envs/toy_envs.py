"""A Gymnasium env outside every registry until its module is imported (``toy_envs:ToyKeys-v0``).

ToyKeys observes one of three states, one-hot, and takes a MultiDiscrete([2, 3]) action:
component 0 earns 1 when it equals the state's parity, component 1 when it equals the state.
"""

import gymnasium
import numpy as np


class ToyKeys(gymnasium.Env):
    """Three one-hot states, a two-component discrete action, 1 reward per matching component."""

    observation_space = gymnasium.spaces.Box(0.0, 1.0, (3,), np.float32)
    action_space = gymnasium.spaces.MultiDiscrete([2, 3])

    def _observe(self):
        return np.eye(3, dtype=np.float32)[self._state]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = int(self.np_random.integers(3))
        return self._observe(), {}

    def step(self, action):
        reward = float(action[0] == self._state % 2) + float(action[1] == self._state)
        self._state = int(self.np_random.integers(3))
        return self._observe(), reward, False, False, {}


gymnasium.register("ToyKeys-v0", entry_point=ToyKeys, max_episode_steps=20)
