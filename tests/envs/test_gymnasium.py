"""Gymnasium adapter: a Gymnasium-only id (Taxi-v4) and a custom env with Dict spaces."""

import gymnasium
import numpy as np

from fnrl.envs import GymnasiumEnv, make_env
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec

_CHAIN_ID = "fnrl_test/Chain-v0"


class _ChainEnv(gymnasium.Env):
    """Walk right along 5 cells; reaching cell 4 terminates with reward 10, each step costs 1."""

    observation_space = gymnasium.spaces.Dict(
        {"cell": gymnasium.spaces.Discrete(5), "noise": gymnasium.spaces.Box(-1, 1, (2,))}
    )
    action_space = gymnasium.spaces.Dict(
        {"move": gymnasium.spaces.Discrete(2), "speed": gymnasium.spaces.Discrete(2, start=1)}
    )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._cell = 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self._cell = min(4, self._cell + int(action["move"]) * int(action["speed"]))
        terminated = self._cell == 4
        return self._obs(), 10.0 if terminated else -1.0, terminated, False, {}

    def _obs(self):
        noise = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"cell": self._cell, "noise": noise}


if _CHAIN_ID not in gymnasium.envs.registry:
    gymnasium.register(_CHAIN_ID, entry_point=_ChainEnv, max_episode_steps=6)


def _random_actions(env, rng):
    return {
        name: rng.integers(0, spec.num_values, env.num_envs)
        for name, spec in env.spec.actions.items()
    }


def test_taxi_spec_one_hot_observations_and_time_limit():
    env = make_env("Taxi-v4", 2, seed=0)  # registered in Gymnasium, not in envpool
    try:
        assert isinstance(env, GymnasiumEnv)
        assert env.spec.observations == {"obs": ArraySpec((500,), np.dtype(np.float32))}
        assert env.spec.actions == {"action": DiscreteSpec(6)}
        rng = np.random.default_rng(0)
        steps = [env.reset()] + [env.step(_random_actions(env, rng)) for _ in range(201)]
    finally:
        env.close()
    for ts in steps:
        assert ts.obs["obs"].shape == (2, 500) and ts.obs["obs"].dtype == np.float32
        np.testing.assert_array_equal(ts.obs["obs"].sum(axis=1), [1.0, 1.0])  # one-hot
        assert ts.reward.dtype == np.float32
    end = steps[200]  # random Taxi almost never delivers within the 200-step limit
    assert end.truncated.all() and not end.terminated.any() and end.episode.done.all()
    np.testing.assert_array_equal(end.episode.length, [200, 200])
    expected = np.sum([ts.reward for ts in steps[1:201]], axis=0)
    np.testing.assert_allclose(end.episode.returns, expected)
    after = steps[201]
    assert after.first.all() and (after.reward == 0).all()
    np.testing.assert_array_equal(after.episode.length, [0, 0])


def test_dict_spaces_next_step_autoreset_and_stats():
    env = make_env(_CHAIN_ID, 2, seed=0)
    assert env.spec.observations == {
        "cell": ArraySpec((5,), np.dtype(np.float32)),
        "noise": ArraySpec((2,), np.dtype(np.float32)),
    }
    assert env.spec.actions == {"move": DiscreteSpec(2), "speed": DiscreteSpec(2)}
    # Env 0 moves 2 cells a step (speed index 1 -> speed 2), env 1 stands still.
    actions = {"move": np.array([1, 0]), "speed": np.array([1, 0])}
    steps = [env.reset()] + [env.step(actions) for _ in range(7)]
    env.close()
    np.testing.assert_array_equal(steps[1].obs["cell"][0], [0, 0, 1, 0, 0])
    assert steps[2].terminated[0] and steps[2].episode.done[0]
    assert steps[2].episode.returns[0] == 9.0 and steps[2].episode.length[0] == 2
    assert steps[3].first[0] and steps[3].reward[0] == 0.0
    np.testing.assert_array_equal(steps[3].obs["cell"][0], [1, 0, 0, 0, 0])
    # Env 1 never arrives: its TimeLimit of 6 steps truncates it.
    assert steps[6].truncated[1] and not steps[6].terminated[1] and steps[6].episode.done[1]
    assert steps[6].episode.returns[1] == -6.0 and steps[6].episode.length[1] == 6
    assert steps[7].first[1]


def test_same_seed_same_observations_different_seed_different():
    def observations(seed):
        env = GymnasiumEnv(_CHAIN_ID, 2, seed)
        rng = np.random.default_rng(0)
        steps = [env.reset()] + [env.step(_random_actions(env, rng)) for _ in range(10)]
        env.close()
        return np.stack([ts.obs["noise"] for ts in steps])

    first = observations(5)
    np.testing.assert_array_equal(first, observations(5))
    assert not np.array_equal(first, observations(6))
    np.testing.assert_array_equal(first[0, 1], observations(6)[0, 0])  # env i: seed + i


def test_continuous_actions_reach_a_gymnasium_env_clipped_to_its_box():
    env = GymnasiumEnv("MountainCarContinuous-v0", 2, seed=0)
    try:
        assert env.spec.actions == {"action": BoxSpec((1,), (-1.0,), (1.0,))}
        env.reset()
        # The env's reward charges 0.1 a^2 per step: a force of 5 is sent as 1.
        timestep = env.step({"action": np.array([[5.0], [-0.5]], np.float32)})
        np.testing.assert_allclose(timestep.reward, [-0.1, -0.025], rtol=1e-5)
    finally:
        env.close()


def test_asynchronous_matches_synchronous():
    """AsyncVectorEnv (spawned subprocesses, adept's choice) gives the same TimeSteps."""

    def rollout(asynchronous):
        env = GymnasiumEnv("CartPole-v1", 2, seed=7, asynchronous=asynchronous)
        rng = np.random.default_rng(0)
        steps = [env.reset()] + [env.step(_random_actions(env, rng)) for _ in range(40)]
        env.close()
        return steps

    for sync, spawned in zip(rollout(False), rollout(True), strict=True):
        np.testing.assert_array_equal(sync.obs["obs"], spawned.obs["obs"])
        np.testing.assert_array_equal(sync.first, spawned.first)
        np.testing.assert_array_equal(sync.episode.returns, spawned.episode.returns)
