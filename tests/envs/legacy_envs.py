"""Hand-written envs with old gym's APIs, and stand-ins for gym's spaces, importing no gym.

ToyKeys in three API flavours: it observes one of three states, one-hot, and takes a
MultiDiscrete([2, 3]) action; component 0 earns 1 when it equals the state's parity, component 1
when it equals the state. An action earning nothing ends the episode (a termination); after
``max_steps`` steps it is truncated, as gym's ``TimeLimit`` would.

* :class:`OldToyKeys`: gym < 0.22, ``seed()``, ``reset() -> obs``, ``step -> (obs, r, done, info)``
  with ``info["TimeLimit.truncated"]`` at the time limit.
* :class:`MidToyKeys`: gym 0.22-0.25, ``reset(seed=...) -> obs``, the same 4-tuple.
* :class:`NewToyKeys`: gym 0.26, ``reset(seed=..., options=...) -> (obs, info)``, the 5-tuple.

The spaces come from ``spaces``: this module's stand-ins by default, gym's when registered with
gym (``gym_toy_envs``).
"""

import types

import numpy as np


class Box:
    """Stand-in for gym's Box: ``low`` and ``high`` arrays of ``shape`` and ``dtype``."""

    def __init__(self, low, high, shape, dtype):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.low = np.full(shape, low, self.dtype)
        self.high = np.full(shape, high, self.dtype)


class Discrete:
    """Stand-in for gym's Discrete: ``n`` values from ``start``."""

    def __init__(self, n, start=0):
        self.n, self.start = n, start


class MultiDiscrete:
    """Stand-in for gym's MultiDiscrete (which has no ``start``)."""

    def __init__(self, nvec, dtype=np.int64):
        self.nvec, self.dtype = np.asarray(nvec, dtype), np.dtype(dtype)


class MultiBinary:
    """Stand-in for gym's MultiBinary."""

    def __init__(self, n):
        self.n = n


class Dict:
    """Stand-in for gym's Dict: ``spaces`` in the given order."""

    def __init__(self, spaces):
        self.spaces = dict(spaces)


class Tuple:
    """Stand-in for gym's Tuple."""

    def __init__(self, spaces):
        self.spaces = tuple(spaces)


class Sequence:
    """A kind of space fnrl does not convert."""


STAND_IN_SPACES = types.SimpleNamespace(Box=Box, MultiDiscrete=MultiDiscrete)


def correct_action(obs):
    """The action earning 2 in the state ``obs`` shows."""
    state = int(np.argmax(obs))
    return np.array([state % 2, state])


class OldToyKeys:
    """ToyKeys with gym < 0.22's API (see the module docstring)."""

    metadata = {"render.modes": []}

    def __init__(self, max_steps=20, spaces=STAND_IN_SPACES):
        self.observation_space = spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = spaces.MultiDiscrete([2, 3])
        self.max_steps = max_steps
        self._rng = np.random.default_rng()
        self.closed = False

    def seed(self, seed=None):
        self._rng = np.random.default_rng(seed)
        return [seed]

    def _observe(self):
        return np.eye(3, dtype=np.float32)[self._state]

    def _start(self):
        self._state, self._steps = int(self._rng.integers(3)), 0
        return self._observe()

    def reset(self):
        return self._start()

    def _advance(self, action):
        """(obs, reward, terminated, truncated) of one step."""
        reward = float(action[0] == self._state % 2) + float(action[1] == self._state)
        self._state, self._steps = int(self._rng.integers(3)), self._steps + 1
        terminated = reward == 0
        return self._observe(), reward, terminated, self._steps >= self.max_steps and not terminated

    def step(self, action):
        obs, reward, terminated, truncated = self._advance(action)
        info = {"TimeLimit.truncated": True} if truncated else {}
        return obs, reward, terminated or truncated, info

    def close(self):
        self.closed = True


class MidToyKeys(OldToyKeys):
    """ToyKeys with gym 0.22-0.25's API: seeded by reset, which returns the observation only."""

    def reset(self, seed=None):
        if seed is not None:
            self.seed(seed)
        return self._start()


class NewToyKeys(OldToyKeys):
    """ToyKeys with gym 0.26's API: ``reset -> (obs, info)`` and the 5-tuple step."""

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.seed(seed)
        return self._start(), {"options": options}

    def step(self, action):
        obs, reward, terminated, truncated = self._advance(action)
        return obs, reward, terminated, truncated, {}
