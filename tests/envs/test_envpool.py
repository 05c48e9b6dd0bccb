"""envpool adapter: classic control and Atari, including what envpool's flags mean."""

import warnings

import jax
import numpy as np
import pytest

from fnrl.envs import (
    ATARI_6_ENVS,
    ATARI_ENVS,
    EnvpoolEnv,
    atari_task_id,
    env_kind,
    make_atari_env,
    make_env,
    make_envpool_env,
)
from fnrl.parallel.rollout import check_rollout, supports_compiled_rollout
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec


def _random_actions(env, rng):
    return {
        name: rng.integers(0, spec.num_values, env.num_envs)
        for name, spec in env.spec.actions.items()
    }


def _rollout(env, num_steps, rng):
    steps = [env.reset()]
    steps += [env.step(_random_actions(env, rng)) for _ in range(num_steps)]
    return steps


def test_atari_ids_map_to_envpool_tasks():
    assert len(ATARI_ENVS) == 60 and set(ATARI_6_ENVS) <= set(ATARI_ENVS)
    assert atari_task_id("PongNoFrameskip-v4") == "Pong-v5"
    assert atari_task_id("MontezumaRevengeNoFrameskip-v4") == "MontezumaRevenge-v5"
    assert atari_task_id("Pong-v5") == "Pong-v5"
    assert all(atari_task_id(env_id) is not None for env_id in ATARI_ENVS)
    for not_atari in ("CartPole-v1", "PongDeterministic-v4", "ALE/Pong-v5", "Nope-v5"):
        assert atari_task_id(not_atari) is None


def test_cartpole_spec_shapes_and_dtypes():
    env = make_env("CartPole-v1", 3, seed=0)
    try:
        assert isinstance(env, EnvpoolEnv)
        assert env.num_envs == 3
        assert env.spec.observations == {"obs": ArraySpec((4,), np.dtype(np.float32))}
        assert env.spec.actions == {"action": DiscreteSpec(2)}
        for ts in _rollout(env, 5, np.random.default_rng(0)):
            assert ts.obs["obs"].shape == (3, 4) and ts.obs["obs"].dtype == np.float32
            for flags in (ts.terminated, ts.truncated, ts.first, ts.episode.done):
                assert flags.shape == (3,) and flags.dtype == bool
            assert ts.reward.shape == (3,) and ts.reward.dtype == np.float32
            assert ts.episode.returns.dtype == np.float32
            assert ts.episode.length.dtype == np.int32
    finally:
        env.close()


def test_cartpole_next_step_autoreset_and_episode_stats():
    env = make_env("CartPole-v1", 2, seed=1)
    steps = _rollout(env, 60, np.random.default_rng(1))
    env.close()
    ended = 0
    for prev, ts in zip(steps[:-1], steps[1:], strict=True):
        restarted = prev.terminated | prev.truncated
        np.testing.assert_array_equal(ts.first, restarted)
        assert (ts.reward[restarted] == 0).all()
        assert not (ts.terminated | ts.truncated)[restarted].any()
        assert (ts.episode.length[restarted] == 0).all()
        np.testing.assert_array_equal(ts.episode.done, ts.terminated | ts.truncated)
        # CartPole pays 1 per step, so a finished episode's return equals its length.
        done = ts.episode.done
        np.testing.assert_array_equal(ts.episode.returns[done], ts.episode.length[done])
        ended += done.sum()
    assert ended >= 2  # random CartPole episodes last ~20 steps


def test_same_seed_same_observations_different_seed_different():
    def observations(seed):
        env = make_envpool_env("CartPole-v1", 2, seed)
        steps = _rollout(env, 30, np.random.default_rng(0))
        env.close()
        return np.stack([ts.obs["obs"] for ts in steps])

    first = observations(3)
    np.testing.assert_array_equal(first, observations(3))
    assert not np.array_equal(first, observations(4))
    # adept: env i gets seed + i, so env 1 of seed 3 starts like env 0 of seed 4.
    np.testing.assert_array_equal(first[0, 1], observations(4)[0, 0])


def test_envpool_spaces_convert_without_gymnasium_precision_warnings(recwarn):
    """envpool builds float32 Boxes from float64 bounds, for which Gymnasium warns on every
    access; fnrl silences exactly that warning where it converts the spaces."""
    make_envpool_env("CartPole-v1", 2, seed=0).close()
    assert env_kind("Pendulum-v1") == "continuous"  # from envpool.make_spec, without a pool
    assert [str(w.message) for w in recwarn if "precision" in str(w.message)] == []


def test_continuous_envpool_tasks_step_on_the_host_and_compiled_alike():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # envpool's float64 bounds warn in Gymnasium, not here
        host, compiled = make_env("Pendulum-v1", 2, seed=0), make_env("Pendulum-v1", 2, seed=0)
    try:
        assert host.spec.actions == {"action": BoxSpec((1,), (-2.0,), (2.0,))}
        assert host.xla_problem is None
        actions = np.random.default_rng(0).normal(0.0, 3.0, (5, 2, 1)).astype(np.float32)
        handle, step = compiled.xla()
        timestep = compiled.reset()
        host.reset()
        for a in actions:
            handle, timestep = jax.jit(step)(handle, timestep, {"action": a})
            jax.tree.map(np.testing.assert_array_equal, host.step({"action": a}), timestep)
    finally:
        host.close()
        compiled.close()


def test_mujoco_tasks_step_on_the_host_and_say_why_not_compiled():
    """envpool's MuJoCo tasks take float64 actions, which JAX lacks without x64."""
    env = make_env("HalfCheetah-v4", 2, seed=0)
    try:
        assert env.spec.actions == {"action": BoxSpec((6,), (-1.0,) * 6, (1.0,) * 6)}
        assert env.spec.observations["obs"].shape == (17,)
        env.reset()
        timestep = env.step({"action": np.full((2, 6), 5.0, np.float32)})  # clipped to 1
        assert timestep.reward.shape == (2,) and np.isfinite(timestep.reward).all()
        assert "takes float64 actions" in env.xla_problem
        assert not supports_compiled_rollout(env)
        with pytest.raises(ValueError, match="--rollout compiled: this envpool task takes float64"):
            check_rollout("compiled", env)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", ["Pong-v5", "PongNoFrameskip-v4"])
def test_pong_screen_spec_and_clipped_rewards(env_id):
    env = make_env(env_id, 2, seed=0)
    try:
        assert env.spec.observations == {"screen": ArraySpec((84, 84, 4), np.dtype(np.uint8))}
        assert env.spec.actions == {"action": DiscreteSpec(6)}
        steps = _rollout(env, 300, np.random.default_rng(0))
    finally:
        env.close()
    for ts in steps:
        assert ts.obs["screen"].shape == (2, 84, 84, 4) and ts.obs["screen"].dtype == np.uint8
        assert ((ts.reward >= -1) & (ts.reward <= 1)).all()
    assert any((ts.reward != 0).any() for ts in steps)  # random Pong concedes points
    # The screens stack channels-last in time order: each step drops the oldest frame.
    for prev, ts in zip(steps[:-1], steps[1:], strict=True):
        keep = ~ts.first
        np.testing.assert_array_equal(
            ts.obs["screen"][keep, ..., :-1], prev.obs["screen"][keep, ..., 1:]
        )


def test_atari_max_episode_steps_counts_agent_steps():
    env = make_atari_env("Pong-v5", 1, seed=0, max_episode_steps=20)
    steps = _rollout(env, 21, np.random.default_rng(0))
    env.close()
    assert not any(ts.truncated[0] for ts in steps[:20])
    assert steps[20].truncated[0] and not steps[20].terminated[0]
    assert steps[20].episode.done[0] and steps[20].episode.length[0] == 20
    assert steps[21].first[0] and steps[21].episode.length[0] == 0


def test_breakout_life_loss_terminates_but_only_game_over_ends_the_episode():
    """Breakout has 5 lives: 4 life losses set terminated without episode.done, then game over."""
    env = make_atari_env("BreakoutNoFrameskip-v4", 1, seed=0, clip_rewards=False)
    rng = np.random.default_rng(0)
    ts = env.reset()
    life_losses, played, raw_return = 0, 0, 0.0
    try:
        for _ in range(5000):
            ts = env.step(_random_actions(env, rng))
            if ts.first[0]:
                # Frame stack restarts at every episode start, life losses included (adept).
                screen = ts.obs["screen"][0]
                assert (screen == screen[..., -1:]).all()
                continue
            played += 1
            raw_return += float(ts.reward[0])
            if ts.episode.done[0]:
                break
            life_losses += int(ts.terminated[0])
    finally:
        env.close()
    assert ts.episode.done[0] and ts.terminated[0] and not ts.truncated[0]
    assert life_losses == 4
    assert ts.episode.length[0] == played
    assert ts.episode.returns[0] == raw_return


def test_breakout_without_episodic_life_terminates_only_at_game_over():
    env = make_atari_env("Breakout-v5", 1, seed=0, episodic_life=False, frame_stack=1)
    assert env.spec.observations["screen"].shape == (84, 84, 1)
    rng = np.random.default_rng(0)
    env.reset()
    try:
        for _ in range(5000):
            ts = env.step(_random_actions(env, rng))
            np.testing.assert_array_equal(ts.terminated, ts.episode.done)
            if ts.episode.done[0]:
                break
    finally:
        env.close()
    assert ts.episode.done[0]


def test_atari_factory_rejects_non_atari_ids_and_bad_counts():
    with pytest.raises(ValueError, match="not an Atari id"):
        make_atari_env("CartPole-v1", 1, seed=0)
    with pytest.raises(ValueError, match="frame_stack must be at least 1"):
        make_atari_env("Pong-v5", 1, seed=0, frame_stack=0)
    with pytest.raises(ValueError, match="use make_atari_env"):
        make_envpool_env("Pong-v5", 1, seed=0)


def test_raw_envpool_info_fields_mean_what_the_adapter_assumes():
    """Pins envpool's Atari flags: life loss vs game over, lives, elapsed_step in agent steps."""
    import envpool

    pool = envpool.make("Breakout-v5", env_type="gymnasium", num_envs=1, seed=0, episodic_life=True)
    rng = np.random.default_rng(0)
    pool.reset()
    lives, played, reset_next = 5, 0, False
    try:
        for _ in range(5000):
            _, reward, terminated, truncated, info = pool.step(rng.integers(0, 4, 1))
            if reset_next:  # next-step autoreset: action ignored, reward 0, no flags
                assert reward[0] == 0 and not (terminated[0] or truncated[0])
                reset_next = False
                continue
            played += 1
            assert info["elapsed_step"][0] == played  # agent steps, over the whole game
            if info["lives"][0] < lives:  # a life loss terminates; only the last is game over
                assert terminated[0]
                assert info["terminated"][0] == (info["lives"][0] == 0)
                lives = info["lives"][0]
            else:
                assert not terminated[0] and info["terminated"][0] == 0
            reset_next = bool(terminated[0] or truncated[0])
            if info["terminated"][0]:
                break
    finally:
        pool.close()
    assert lives == 0
