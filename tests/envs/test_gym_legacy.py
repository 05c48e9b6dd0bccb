"""Old gym envs through the adapter: every API flavour, exact spaces, truncation and the CLI."""

import subprocess
import sys

import gymnasium
import numpy as np
import pytest
from cli_runs import train_then_evaluate
from legacy_envs import (
    Box,
    Dict,
    Discrete,
    MidToyKeys,
    MultiBinary,
    MultiDiscrete,
    NewToyKeys,
    OldToyKeys,
    Sequence,
    Tuple,
    correct_action,
)

from fnrl.envs import (
    GymLegacyEnv,
    GymnasiumEnv,
    env_kind,
    from_gym_space,
    make_env,
    make_gym_env,
)
from fnrl.specs import ArraySpec, DiscreteSpec

FLAVOURS = [OldToyKeys, MidToyKeys, NewToyKeys]


def _wrong_action(obs):
    """An action earning nothing in the state ``obs`` shows."""
    right = correct_action(obs)
    return np.array([1 - right[0], (right[1] + 1) % 3])


def _assert_same_space(converted, expected):
    assert type(converted) is type(expected)
    assert converted == expected
    if isinstance(expected, gymnasium.spaces.Box):
        assert converted.dtype == expected.dtype and converted.shape == expected.shape
        np.testing.assert_array_equal(converted.low, expected.low)
        np.testing.assert_array_equal(converted.high, expected.high)


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        (
            Box(-1.0, 2.0, (2, 3), np.float32),
            gymnasium.spaces.Box(-1.0, 2.0, (2, 3), np.float32),
        ),
        (Box(0, 255, (84, 84, 3), np.uint8), gymnasium.spaces.Box(0, 255, (84, 84, 3), np.uint8)),
        (Discrete(5), gymnasium.spaces.Discrete(5)),
        (Discrete(np.int64(4), start=-2), gymnasium.spaces.Discrete(4, start=-2)),
        (MultiDiscrete([2, 3]), gymnasium.spaces.MultiDiscrete([2, 3])),
        (MultiBinary(4), gymnasium.spaces.MultiBinary(4)),
        (MultiBinary([2, 2]), gymnasium.spaces.MultiBinary([2, 2])),
        (
            Tuple([Discrete(2), Box(0.0, 1.0, (3,), np.float32)]),
            gymnasium.spaces.Tuple(
                [gymnasium.spaces.Discrete(2), gymnasium.spaces.Box(0.0, 1.0, (3,), np.float32)]
            ),
        ),
    ],
)
def test_stand_in_spaces_convert_to_equal_gymnasium_spaces(space, expected):
    _assert_same_space(from_gym_space(space), expected)


def test_a_dict_space_converts_entry_by_entry_in_its_own_order():
    converted = from_gym_space(Dict({"z": Discrete(3), "a": Box(-1.0, 1.0, (2,), np.float64)}))
    assert isinstance(converted, gymnasium.spaces.Dict)
    assert list(converted.spaces) == ["z", "a"]
    _assert_same_space(converted["z"], gymnasium.spaces.Discrete(3))
    _assert_same_space(converted["a"], gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float64))


def test_gymnasium_spaces_pass_and_other_spaces_are_named():
    space = gymnasium.spaces.Discrete(3)
    assert from_gym_space(space) is space
    with pytest.raises(ValueError, match="Unsupported gym space <legacy_envs.Sequence"):
        from_gym_space(Sequence())


def test_real_gym_spaces_convert_exactly():
    gym = pytest.importorskip("gym")
    low = np.array([-1.0, -np.inf], np.float32)
    pairs = [
        (gym.spaces.Box(low, -low, dtype=np.float32), gymnasium.spaces.Box(low, -low)),
        (gym.spaces.Discrete(4, start=1), gymnasium.spaces.Discrete(4, start=1)),
        (gym.spaces.MultiDiscrete([3, 2]), gymnasium.spaces.MultiDiscrete([3, 2])),
        (gym.spaces.MultiBinary(3), gymnasium.spaces.MultiBinary(3)),
        (
            gym.spaces.Dict({"b": gym.spaces.Discrete(2), "a": gym.spaces.MultiBinary(2)}),
            gymnasium.spaces.Dict(
                {"a": gymnasium.spaces.MultiBinary(2), "b": gymnasium.spaces.Discrete(2)}
            ),
        ),
        (
            gym.spaces.Tuple([gym.spaces.Discrete(2), gym.spaces.Discrete(3)]),
            gymnasium.spaces.Tuple([gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(3)]),
        ),
    ]
    for space, expected in pairs:
        _assert_same_space(from_gym_space(space), expected)


def _trajectory(env, seed, steps=8):
    """Observations and step outputs of ``steps`` correct actions after ``reset(seed=seed)``."""
    obs, info = env.reset(seed=seed)
    assert isinstance(info, dict)
    observations, outputs = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(correct_action(obs))
        assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
        assert isinstance(info, dict)
        observations.append(obs)
        outputs.append((reward, terminated, truncated))
    return np.stack(observations), outputs


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda c: c.__name__)
def test_every_api_flavour_seeds_resets_and_steps_like_gymnasium(flavour):
    inner = flavour()
    env = GymLegacyEnv(inner)
    assert env.observation_space == gymnasium.spaces.Box(0.0, 1.0, (3,), np.float32)
    assert env.action_space == gymnasium.spaces.MultiDiscrete([2, 3])
    observations, outputs = _trajectory(env, seed=3)
    assert outputs == [(2.0, False, False)] * 8
    # The same seed gives the same episode, whichever way the env takes it.
    reference, _ = _trajectory(GymLegacyEnv(NewToyKeys()), seed=3)
    np.testing.assert_array_equal(observations, reference)
    assert not np.array_equal(observations, _trajectory(env, seed=4)[0])
    env.close()
    assert inner.closed


def test_a_reset_returning_obs_and_info_passes_the_info_on():
    env = GymLegacyEnv(NewToyKeys())
    assert env.reset(seed=0, options={"level": 2})[1] == {"options": {"level": 2}}
    assert GymLegacyEnv(MidToyKeys()).reset(seed=0)[1] == {}


@pytest.mark.parametrize("flavour", FLAVOURS, ids=lambda c: c.__name__)
def test_a_time_limit_truncates_and_a_failure_terminates(flavour):
    env = GymLegacyEnv(flavour(max_steps=3))
    obs, _ = env.reset(seed=0)
    flags = []
    for _ in range(3):
        obs, _, terminated, truncated, _ = env.step(correct_action(obs))
        flags.append((terminated, truncated))
    assert flags == [(False, False), (False, False), (False, True)]
    obs, _ = env.reset()
    assert env.step(_wrong_action(obs))[2:4] == (True, False)


class _Scripted:
    """An env whose reset and step return what a script says, in turn."""

    action_space = Discrete(2)

    def __init__(self, *, resets=(0,), steps=(), observation_space=None):
        self.observation_space = Discrete(2) if observation_space is None else observation_space
        self._resets, self._steps = iter(resets), iter(steps)

    def reset(self):
        return next(self._resets)

    def step(self, action):
        return next(self._steps)


def test_the_4_tuple_done_is_a_truncation_only_with_time_limit_truncated():
    steps = [
        (1, 0.5, False, {}),
        (1, 0.5, True, {"TimeLimit.truncated": True}),
        (1, 0.5, True, {"TimeLimit.truncated": False}),
        (1, 0.5, True, {}),
        (1, np.float32(0.5), np.bool_(True), {"TimeLimit.truncated": np.bool_(True)}),
    ]
    env = GymLegacyEnv(_Scripted(steps=steps))
    assert env.reset() == (0, {})
    flags = [env.step(0)[1:4] for _ in steps]
    assert flags == [
        (0.5, False, False), (0.5, False, True), (0.5, True, False), (0.5, True, False),
        (0.5, False, True),
    ]  # fmt: skip


def test_a_step_of_another_length_is_an_error():
    env = GymLegacyEnv(_Scripted(steps=[(0, 1.0, False)]))
    with pytest.raises(ValueError, match="_Scripted.step returned 3 values"):
        env.step(0)


def test_a_tuple_observation_ending_in_a_dict_is_not_taken_for_obs_and_info():
    pair = (1, {"x": 0})
    env = GymLegacyEnv(
        _Scripted(
            resets=[pair, (pair, {"note": 1})],
            observation_space=Tuple([Discrete(2), Dict({"x": Discrete(2)})]),
        )
    )
    assert env.reset() == (pair, {})
    assert env.reset() == (pair, {"note": 1})


def test_an_adapted_env_runs_as_a_batched_gymnasium_env():
    def make(env_id, **kwargs):
        del env_id
        # GymnasiumEnv passes the time limit on, and checks the first steps itself.
        assert kwargs == {"max_episode_steps": 3, "disable_env_checker": True}
        return GymLegacyEnv(OldToyKeys(max_steps=kwargs["max_episode_steps"]))

    env = GymnasiumEnv("OldToyKeys", 2, seed=0, max_episode_steps=3, make=make)
    try:
        assert env.spec.observations == {"obs": ArraySpec((3,), np.dtype(np.float32))}
        assert env.spec.actions == {"action_0": DiscreteSpec(2), "action_1": DiscreteSpec(3)}
        step = env.reset()
        assert step.first.all()
        for _ in range(3):
            actions = np.stack([correct_action(obs) for obs in step.obs["obs"]])
            step = env.step({"action_0": actions[:, 0], "action_1": actions[:, 1]})
        assert step.truncated.all() and not step.terminated.any()
        np.testing.assert_array_equal(step.episode.returns, [6.0, 6.0])
        step = env.step({"action_0": np.zeros(2, np.int32), "action_1": np.zeros(2, np.int32)})
        assert step.first.all()
    finally:
        env.close()


def test_a_real_gym_env_is_made_and_stepped_through_make_env():
    pytest.importorskip("gym")
    env_id = "gym_toy_envs:LegacyCartPole-v1"
    assert env_kind(env_id) == "vector"
    env = make_env(env_id, 2, seed=0)
    try:
        assert isinstance(env, GymnasiumEnv)
        assert env.spec.observations == {"obs": ArraySpec((4,), np.dtype(np.float32))}
        assert env.spec.actions == {"action": DiscreteSpec(2)}
        env.reset()
        ended = np.zeros(2, bool)
        for _ in range(100):  # always pushing left drops the pole within some 10 steps
            step = env.step({"action": np.zeros(2, np.int32)})
            assert not step.truncated.any()
            ended |= step.terminated
        assert ended.all()
    finally:
        env.close()
    truncated = make_env(env_id, 1, seed=0, max_episode_steps=2)
    try:
        truncated.reset()
        steps = [truncated.step({"action": np.array([k % 2])}) for k in range(2)]
        assert steps[-1].truncated.all() and not steps[-1].terminated.any()
    finally:
        truncated.close()


def test_gym_ids_that_fail_are_named_in_one_line():
    pytest.importorskip("gym")
    import gym_toy_envs  # noqa: F401  (registers the ids)

    with pytest.raises(ValueError, match=r"^Unknown env id 'LegacyCartPole-v2'.*or gym\..*"):
        make_env("LegacyCartPole-v2", 1, seed=0)
    if hasattr(np, "bool8"):
        pytest.skip("this numpy still has np.bool8")
    with pytest.raises(ValueError, match="^cannot make the gym env 'LegacyBool8-v0'") as error:
        make_gym_env("LegacyBool8-v0")
    assert "np.bool8" in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_id_is_one_line_without_gyms_unmaintained_notice(tmp_path):
    """gym prints four lines on import; fnrl imports it to suggest ids for an unknown one."""
    pytest.importorskip("gym")
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "--env-id", "NotAnEnv-v9", "-mts", "64", "-n", "2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("fnrl.train: error: Unknown env id 'NotAnEnv-v9'")
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.slow  # two processes that import JAX: 25-45 s on 2 cores
def test_an_old_gym_module_env_trains_then_evaluates_from_a_new_process(tmp_path):
    pytest.importorskip("gym")
    train_then_evaluate("gym_toy_envs:LegacyToyKeys-v0", tmp_path)
