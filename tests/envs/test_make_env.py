"""make_env routing, argument checks and the package's public API."""

import re
import sys

import numpy as np
import pytest

import fnrl.envs
from fnrl.envs import BatchedEnv, EnvpoolEnv, GymnasiumEnv, make_env


def test_every_public_name_is_importable_and_documented():
    for name in fnrl.envs.__all__:
        obj = getattr(fnrl.envs, name)
        if callable(obj):
            assert obj.__doc__, name


@pytest.mark.parametrize(
    ("env_id", "kind"),
    [
        ("PongNoFrameskip-v4", EnvpoolEnv),
        ("Breakout-v5", EnvpoolEnv),
        ("CartPole-v1", EnvpoolEnv),
        ("Taxi-v4", GymnasiumEnv),
    ],
)
def test_routing(env_id, kind):
    env = make_env(env_id, 1, seed=0)
    try:
        assert isinstance(env, kind) and isinstance(env, BatchedEnv)
    finally:
        env.close()


def test_clip_rewards_defaults_to_atari_only():
    def max_abs_reward(env_id, **kwargs):
        env = make_env(env_id, 1, seed=0, **kwargs)
        env.reset()
        rewards = [env.step({"action": np.array([5])}).reward for _ in range(40)]
        env.close()
        return np.abs(rewards).max()

    assert max_abs_reward("Taxi-v4") == 10.0  # an illegal drop-off (action 5) costs 10
    assert max_abs_reward("Taxi-v4", clip_rewards=True) <= 1.0


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(
        ValueError, match=r"Unknown env id 'PongNoFramesikp-v4'.*PongNoFrameskip-v4"
    ):
        make_env("PongNoFramesikp-v4", 1, seed=0)
    with pytest.raises(ValueError, match=r"Unknown env id 'ALE/Pong-v5'.*'Pong-v5'"):
        make_env("ALE/Pong-v5", 1, seed=0)
    # CartPole-v1 is registered by envpool, Gymnasium and gym: it is suggested once, first.
    with pytest.raises(ValueError, match="Did you mean") as error:
        make_env("CartPol-v1", 1, seed=0)
    suggested = re.findall(r"'([^']+)'", str(error.value).split("Did you mean")[1])
    assert suggested[0] == "CartPole-v1" and len(suggested) == len(set(suggested)) > 1


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Taxi-v4", "Pong-v5"])
def test_bad_counts_and_seeds_raise(env_id):
    with pytest.raises(ValueError, match="num_envs must be at least 1, got 0"):
        make_env(env_id, 0, seed=0)
    with pytest.raises(ValueError, match="max_episode_steps must be at least 1"):
        make_env(env_id, 1, seed=0, max_episode_steps=0)
    with pytest.raises(ValueError, match="seed"):
        make_env(env_id, 1, seed=-1)


@pytest.mark.parametrize(
    ("env_id", "shape"),
    [("PongNoFrameskip-v4", (210, 160, 3)), ("CartPole-v1", (400, 600, 3))],
)
def test_render_gives_env_0s_rgb_frame_only_when_asked(env_id, shape):
    env = make_env(env_id, 2, seed=0, render=True)
    try:
        env.reset()
        frame = env.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[-1] == 3
        assert frame.shape == shape
        assert frame.std() > 0  # a picture, not a blank
    finally:
        env.close()
    plain = make_env(env_id, 1, seed=0)
    try:
        plain.reset()
        with pytest.raises(ValueError, match="make it with render=True"):
            plain.render()
    finally:
        plain.close()


def test_a_gymnasium_env_without_its_renderer_fails_with_one_clear_message(monkeypatch):
    # Taxi draws with pygame, which fnrl does not install (the sc2 extra does): hidden here.
    monkeypatch.setitem(sys.modules, "pygame", None)
    env = make_env("Taxi-v4", 1, seed=0, render=True)
    try:
        env.reset()
        with pytest.raises(ValueError, match="^cannot render Taxi-v4: pygame is not installed"):
            env.render()
    finally:
        env.close()
