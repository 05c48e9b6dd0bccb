"""Defaults by kind of env: adept's for images, the vector preset for vectors, the continuous
preset for continuous actions."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import gymnasium
import numpy as np
import pytest

from fnrl.config import (
    CONTINUOUS_PRESET,
    PRESETS,
    SMALL_IMAGE_PRESET,
    VECTOR_PRESET,
    ImpalaConfig,
    TrainConfig,
    make_config,
    preset,
    with_agent_settings,
)
from fnrl.envs import ENV_KINDS, env_kind
from fnrl.evaluate import load_run_config
from fnrl.parallel.local import train_local
from fnrl.train import parse_args


class _ConstantEnv(gymnasium.Env):
    """A one-step env with the observation space it is given, to test the Gymnasium lookup."""

    def __init__(self, observation_space: gymnasium.Space, action_space=None):
        self.observation_space = observation_space
        self.action_space = action_space or gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, True, False, {}


_SCREEN = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
_VECTOR = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
_MIXED_ACTIONS = gymnasium.spaces.Dict({"button": gymnasium.spaces.Discrete(2), "stick": _VECTOR})
_TEST_ENVS = {
    "fnrl-test/Screen-v0": {
        "observation_space": gymnasium.spaces.Dict({"screen": _SCREEN, "pos": _VECTOR})
    },
    "fnrl-test/Vectors-v0": {
        "observation_space": gymnasium.spaces.Tuple((_VECTOR, gymnasium.spaces.Discrete(4)))
    },
    "fnrl-test/ScreenStick-v0": {"observation_space": _SCREEN, "action_space": _VECTOR},
    "fnrl-test/MixedActions-v0": {"observation_space": _VECTOR, "action_space": _MIXED_ACTIONS},
}
for _id, _spaces in _TEST_ENVS.items():
    if _id not in gymnasium.envs.registry:
        gymnasium.register(_id, entry_point=_ConstantEnv, kwargs=_spaces)


@pytest.mark.parametrize(
    "env_id, kind",
    [
        ("PongNoFrameskip-v4", "image"),  # adept's Atari ids, no lookup
        ("Pong-v5", "image"),
        ("CarRacing-v3", "image"),  # a non-Atari envpool screen
        ("fnrl-test/Screen-v0", "small_image"),  # Gymnasium: an 8x8 screen inside a Dict
        ("MinAtar/Breakout-v1", "small_image"),
        ("CartPole-v1", "vector"),
        ("Acrobot-v1", "vector"),
        ("MountainCar-v0", "vector"),
        ("LunarLander-v3", "vector"),
        ("FrozenLake-v1", "vector"),  # Gymnasium: Discrete observations, one-hot vectors
        ("fnrl-test/Vectors-v0", "vector"),  # Gymnasium: a Tuple of a Box and a Discrete
        ("Pendulum-v1", "continuous"),  # Gymnasium
        ("HalfCheetah-v4", "continuous"),  # envpool MuJoCo
        ("fnrl-test/MixedActions-v0", "continuous"),  # a Box among the action entries
        ("fnrl-test/ScreenStick-v0", "small_image"),  # a screen decides, whatever the actions
    ],
)
def test_env_kind_of_each_backend(env_id, kind):
    assert env_kind(env_id) == kind
    assert kind in ENV_KINDS


def test_unknown_env_id_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown env id 'Acrobot-v9'.*'Acrobot-v1'"):
        make_config(env_id="Acrobot-v9")


def test_every_kind_has_a_preset_of_valid_fields():
    assert set(PRESETS) == set(ENV_KINDS)
    run_class = type(make_config())  # with the default agent's settings
    fields = {f.name for f in dataclasses.fields(run_class)}
    for kind in ENV_KINDS:
        assert set(preset(kind)) <= fields, kind
        run_class(**preset(kind))  # valid
    assert preset("image") == {}
    assert preset("small_image") == SMALL_IMAGE_PRESET
    assert SMALL_IMAGE_PRESET["vision_network"] == "MinAtar"
    assert preset("vector") == VECTOR_PRESET
    assert preset("continuous") == {**VECTOR_PRESET, "entropy_coef": 0.0} == CONTINUOUS_PRESET
    with pytest.raises(ValueError, match="unknown kind of env 'grid'"):
        preset("grid")


@pytest.mark.parametrize("kind", ENV_KINDS)
def test_every_preset_checkpoints_a_few_times_over_its_budget(kind):
    """A crash late in a default run keeps a recent checkpoint: the vector preset once saved
    every 1M steps of its 500k (only the first update's and the last)."""
    config = make_config(**preset(kind))
    assert config.max_train_steps / config.epoch_len >= 4, kind


@pytest.mark.parametrize("env_id", ["PongNoFrameskip-v4", "Pong-v5", "BreakoutNoFrameskip-v4"])
def test_images_keep_adepts_defaults(env_id):
    config = make_config(env_id=env_id)
    assert config == with_agent_settings(TrainConfig(env_id=env_id))
    assert (config.nb_env, config.exp_length, config.network_body, config.normalize) == (
        32,
        20,
        "LSTM",
        True,
    )
    assert (config.normalization, config.max_grad_norm, config.max_train_steps) == (
        "batch",
        0.0,
        10_000_000,
    )
    assert not config.zscore_norm_env


@pytest.mark.parametrize(
    "env_id", ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3", "FrozenLake-v1"]
)
def test_vector_envs_get_the_vector_preset(env_id):
    config = make_config(env_id=env_id)
    assert config == with_agent_settings(TrainConfig(env_id=env_id, **VECTOR_PRESET))
    assert (config.nb_env, config.exp_length, config.network_body, config.normalize) == (
        16,
        5,
        "Linear",
        True,
    )
    assert config.normalization == "layer" and config.zscore_norm_env


def test_flags_given_win_over_the_preset():
    _, config = parse_args(["--env-id", "Acrobot-v1", "-n", "4", "--normalize", "false"])
    assert (config.nb_env, config.normalize, config.exp_length) == (4, False, 5)
    _, config = parse_args(["--env-id", "Pong-v5", "--exp-length", "5"])
    assert (config.exp_length, config.nb_env) == (5, 32)


def test_every_mode_gets_the_preset_of_its_env():
    for mode in ("local", "towered", "impala"):
        _, config = parse_args([mode, "--env-id", "Acrobot-v1"])
        assert config.network_body == "Linear" and config.exp_length == 5, mode
    assert make_config(ImpalaConfig, env_id="Acrobot-v1").agent == "ActorCriticVtrace"


def test_help_says_which_defaults_apply_to_which_envs():
    out = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "local", "-h"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "10000"},  # argparse wraps lines, also inside flags
    ).stdout
    text = " ".join(out.split())
    assert "Images (Atari" in text and "adept's Atari settings" in text
    assert "Vectors with discrete actions (classic control" in text and "Baselines3 Zoo" in text
    assert "--nb-env 16, --exp-length 5, --network-body Linear, --normalize True" in text
    assert "Continuous actions (MuJoCo" in text and "--entropy-coef 0.0" in text
    for name, value in VECTOR_PRESET.items():  # each flag's help, where the default differs
        if value != TrainConfig.__dataclass_fields__[name].default:
            assert f"(default: {value} for CartPole-v1, a vector env;" in text, name
    assert "(default: 0.01 for CartPole-v1, a vector env; 0.0 for continuous envs)" in text


@pytest.fixture(scope="module")
def acrobot_run(tmp_path_factory):
    """Three updates of the bare command on Acrobot-v1."""
    log_dir = tmp_path_factory.mktemp("acrobot")
    _, config = parse_args(["--env-id", "Acrobot-v1", "-mts", "240", "--log-dir", str(log_dir)])
    return config, train_local(config, show_progress=False)


def test_config_json_records_the_effective_values(acrobot_run):
    config, result = acrobot_run
    stored = json.loads((result.run_dir / "config.json").read_text())
    assert stored == config.to_dict()
    for name, value in VECTOR_PRESET.items():
        expected = 240 if name == "max_train_steps" else value
        assert stored[name] == expected, name
    assert result.env_steps == 240 and result.updates == 3  # 16 envs x 5 steps per update


def test_evaluate_and_resume_see_the_values_that_trained(acrobot_run):
    config, result = acrobot_run
    assert load_run_config(result.run_dir) == config
    _, resumed = parse_args(["--resume", str(result.run_dir)])
    assert resumed == dataclasses.replace(config, resume=str(result.run_dir))


def test_fields_missing_from_config_json_come_from_the_preset(acrobot_run, tmp_path):
    """A config.json written before a field existed: its env's preset fills it, not adept's."""
    _, result = acrobot_run
    stored = json.loads((result.run_dir / "config.json").read_text())
    del stored["max_grad_norm"], stored["exp_length"]
    (tmp_path / "config.json").write_text(json.dumps(stored))
    config = load_run_config(tmp_path)
    assert (config.max_grad_norm, config.exp_length) == (0.5, 5)


def test_runs_saved_before_zscore_norm_env_existed_load_without_it(acrobot_run, tmp_path):
    """They did not normalize observations (their checkpoints hold no statistics), whatever the
    vector preset says now."""
    _, result = acrobot_run
    run_dir = tmp_path / "run"
    shutil.copytree(result.run_dir, run_dir)
    stored = json.loads((run_dir / "config.json").read_text())
    del stored["zscore_norm_env"]
    (run_dir / "config.json").write_text(json.dumps(stored))
    assert not load_run_config(run_dir).zscore_norm_env
    assert not parse_args(["--resume", str(run_dir)])[1].zscore_norm_env
    assert load_run_config(result.run_dir).zscore_norm_env
