"""EpisodeTracker, next_timestep and SpaceConverter on hand-made arrays: no simulator."""

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.envs import EpisodeTracker, SpaceConverter, first_timestep, next_timestep
from fnrl.specs import ArraySpec, BoxSpec, DiscreteSpec

_B = 2
_NO = np.zeros(_B, bool)


def _flags(*values):
    return np.array(values, bool)


def test_tracker_reset_is_all_first_with_zero_reward_and_stats():
    tracker = EpisodeTracker(_B, clip_rewards=True)
    ts = tracker.reset({"obs": np.zeros((_B, 3), np.float32)})
    np.testing.assert_array_equal(ts.first, [True, True])
    np.testing.assert_array_equal(ts.reward, [0.0, 0.0])
    np.testing.assert_array_equal(ts.terminated | ts.truncated, [False, False])
    assert ts.reward.dtype == np.float32
    assert ts.episode.returns.dtype == np.float32 and ts.episode.length.dtype == np.int32
    np.testing.assert_array_equal(ts.episode.done, [False, False])


def test_tracker_step_before_reset_raises():
    with pytest.raises(RuntimeError, match="reset"):
        EpisodeTracker(_B, clip_rewards=False).step({}, np.zeros(_B), _NO, _NO)


def test_tracker_next_step_autoreset_and_episode_stats():
    """Env 0 terminates at step 2; step 3 is its automatic reset; counters restart there."""
    tracker = EpisodeTracker(_B, clip_rewards=True)
    tracker.reset({})
    ts1 = tracker.step({}, np.array([2.0, -3.0]), _NO, _NO)
    np.testing.assert_array_equal(ts1.first, [False, False])
    np.testing.assert_array_equal(ts1.reward, [1.0, -1.0])  # clipped for learning
    np.testing.assert_array_equal(ts1.episode.returns, [2.0, -3.0])  # raw for logging
    ts2 = tracker.step({}, np.array([5.0, 0.5]), _flags(True, False), _NO)
    np.testing.assert_array_equal(ts2.terminated, [True, False])
    np.testing.assert_array_equal(ts2.episode.done, [True, False])
    np.testing.assert_array_equal(ts2.episode.returns, [7.0, -2.5])
    np.testing.assert_array_equal(ts2.episode.length, [2, 2])
    # The env reports reward 0 on its reset step; the tracker enforces it regardless.
    ts3 = tracker.step({}, np.array([9.0, 1.0]), _NO, _NO)
    np.testing.assert_array_equal(ts3.first, [True, False])
    np.testing.assert_array_equal(ts3.reward, [0.0, 1.0])
    np.testing.assert_array_equal(ts3.episode.done, [False, False])
    np.testing.assert_array_equal(ts3.episode.returns, [0.0, -1.5])
    np.testing.assert_array_equal(ts3.episode.length, [0, 3])
    ts4 = tracker.step({}, np.array([1.0, 0.0]), _NO, _flags(False, True))
    np.testing.assert_array_equal(ts4.first, [False, False])
    np.testing.assert_array_equal(ts4.truncated, [False, True])
    np.testing.assert_array_equal(ts4.episode.done, [False, True])
    np.testing.assert_array_equal(ts4.episode.returns, [1.0, -1.5])
    np.testing.assert_array_equal(ts4.episode.length, [1, 4])


def test_tracker_life_loss_terminates_but_keeps_the_game_running():
    tracker = EpisodeTracker(1, clip_rewards=False)
    tracker.reset({})
    no = np.zeros(1, bool)
    yes = np.ones(1, bool)
    life_lost = tracker.step({}, np.array([3.0]), yes, no, game_over=no)
    assert life_lost.terminated[0] and not life_lost.episode.done[0]
    restart = tracker.step({}, np.array([0.0]), no, no, game_over=no)
    assert restart.first[0]
    assert restart.episode.returns[0] == 3.0 and restart.episode.length[0] == 1  # not counted
    over = tracker.step({}, np.array([4.0]), yes, no, game_over=yes)
    assert over.terminated[0] and over.episode.done[0]
    assert over.episode.returns[0] == 7.0 and over.episode.length[0] == 2
    new_game = tracker.step({}, np.array([0.0]), no, no, game_over=no)
    assert new_game.first[0] and new_game.episode.returns[0] == 0.0
    assert new_game.episode.length[0] == 0


def test_tracker_game_over_at_time_limit_counts_as_termination():
    tracker = EpisodeTracker(1, clip_rewards=False)
    tracker.reset({})
    yes, no = np.ones(1, bool), np.zeros(1, bool)
    ts = tracker.step({}, np.array([0.0]), no, yes, game_over=yes)
    assert ts.terminated[0] and not ts.truncated[0] and ts.episode.done[0]
    # Both flags from the env: termination wins, the flags stay exclusive.
    ts = EpisodeTracker(1, clip_rewards=False)
    ts.reset({})
    ts = ts.step({}, np.array([0.0]), yes, yes)
    assert ts.terminated[0] and not ts.truncated[0]


def test_converter_single_spaces():
    spaces = gymnasium.spaces
    vector = SpaceConverter(spaces.Box(-1.0, 1.0, (3,), np.float64), spaces.Discrete(4))
    assert vector.spec.observations == {"obs": ArraySpec((3,), np.dtype(np.float32))}
    assert vector.spec.actions == {"action": DiscreteSpec(4)}
    obs = vector.observation(np.ones((_B, 3), np.float64))
    assert obs["obs"].dtype == np.float32 and obs["obs"].shape == (_B, 3)

    image = SpaceConverter(spaces.Box(0, 255, (8, 8, 3), np.uint8), spaces.Discrete(2))
    assert image.spec.observations == {"screen": ArraySpec((8, 8, 3), np.dtype(np.uint8))}

    tabular = SpaceConverter(spaces.Discrete(5, start=1), spaces.Discrete(3, start=-1))
    assert tabular.spec.observations == {"obs": ArraySpec((5,), np.dtype(np.float32))}
    one_hot = tabular.observation(np.array([1, 5]))["obs"]
    np.testing.assert_array_equal(one_hot, np.eye(5, dtype=np.float32)[[0, 4]])
    np.testing.assert_array_equal(tabular.action({"action": np.array([0, 2])}, _B), [-1, 1])


def test_converter_dict_and_tuple_spaces():
    spaces = gymnasium.spaces
    converter = SpaceConverter(
        spaces.Dict({"pos": spaces.Discrete(3), "bits": spaces.MultiBinary(2)}),
        spaces.Dict({"move": spaces.Discrete(2), "speed": spaces.Discrete(3, start=1)}),
    )
    assert converter.spec.observations == {
        "pos": ArraySpec((3,), np.dtype(np.float32)),
        "bits": ArraySpec((2,), np.dtype(np.float32)),
    }
    assert converter.spec.actions == {"move": DiscreteSpec(2), "speed": DiscreteSpec(3)}
    obs = converter.observation({"pos": np.array([2, 0]), "bits": np.array([[1, 0], [0, 1]])})
    np.testing.assert_array_equal(obs["pos"], [[0, 0, 1], [1, 0, 0]])
    assert obs["bits"].dtype == np.float32
    actions = converter.action({"move": np.array([1, 0]), "speed": np.array([0, 2])}, _B)
    np.testing.assert_array_equal(actions["speed"], [1, 3])

    pair = SpaceConverter(
        spaces.Tuple((spaces.Discrete(2), spaces.Box(0, 1, (1,)))), spaces.Discrete(2)
    )
    assert set(pair.spec.observations) == {"0", "1"}
    obs = pair.observation((np.array([1, 0]), np.zeros((_B, 1))))
    assert obs["0"].shape == (_B, 2) and obs["1"].shape == (_B, 1)


def test_converter_rejects_unsupported_spaces_by_name():
    spaces = gymnasium.spaces
    with pytest.raises(ValueError, match="action space Box"):
        SpaceConverter(spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (2, 2)))
    with pytest.raises(ValueError, match="action space MultiDiscrete"):
        SpaceConverter(spaces.Box(-1, 1, (2,)), spaces.MultiDiscrete([[2, 2], [3, 3]]))
    with pytest.raises(ValueError, match="collide"):
        SpaceConverter(
            spaces.Box(-1, 1, (2,)),
            spaces.Dict({"a": spaces.MultiDiscrete([2, 2]), "a_1": spaces.Discrete(2)}),
        )
    with pytest.raises(ValueError, match="observation space Text"):
        SpaceConverter(spaces.Text(5), spaces.Discrete(2))


@pytest.mark.parametrize("xp", [np, jnp])
def test_converter_clips_continuous_actions_on_the_way_to_the_env(xp):
    """A rank-1 Box becomes a BoxSpec; a dict mixes it with discrete keys; only the env's copy of
    an action is clipped, to each entry's own bounds."""
    spaces = gymnasium.spaces
    box = spaces.Box(np.array([-1.0, 0.0]), np.array([1.0, 2.0]), dtype=np.float64)
    converter = SpaceConverter(
        spaces.Box(-1, 1, (3,)), spaces.Dict({"torque": box, "gear": spaces.Discrete(3, start=1)})
    )
    assert converter.spec.actions == {
        "torque": BoxSpec((2,), (-1.0, 0.0), (1.0, 2.0)),
        "gear": DiscreteSpec(3),
    }
    sampled = np.array([[-3.0, 0.5], [0.25, 7.0]], np.float32)
    sent = converter.action({"torque": xp.asarray(sampled), "gear": xp.asarray([0, 2])}, _B, xp)
    np.testing.assert_array_equal(sent["torque"], [[-1.0, 0.5], [0.25, 2.0]])
    assert sent["torque"].dtype == np.float32
    np.testing.assert_array_equal(sent["gear"], [1, 3])
    np.testing.assert_array_equal(sampled, [[-3.0, 0.5], [0.25, 7.0]])  # the caller's copy
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        converter.action({"torque": np.zeros((_B, 3)), "gear": np.zeros(_B, int)}, _B)


@pytest.mark.parametrize("xp", [np, jnp])
def test_multi_discrete_actions_are_one_head_per_component(xp):
    spaces = gymnasium.spaces
    converter = SpaceConverter(spaces.Box(-1, 1, (3,)), spaces.MultiDiscrete([3, 5], start=[0, -2]))
    assert converter.spec.actions == {"action_0": DiscreteSpec(3), "action_1": DiscreteSpec(5)}
    sent = converter.action(
        {"action_0": xp.asarray([2, 0]), "action_1": xp.asarray([0, 4])}, _B, xp
    )
    np.testing.assert_array_equal(sent, [[2, -2], [0, 2]])  # component i of env b, + start
    nested = SpaceConverter(
        spaces.Box(-1, 1, (3,)),
        spaces.Dict({"keys": spaces.MultiDiscrete([2, 2]), "fire": spaces.Discrete(2)}),
    )
    assert set(nested.spec.actions) == {"keys_0", "keys_1", "fire"}
    sent = nested.action({"keys_0": [1, 0], "keys_1": [0, 0], "fire": [1, 1]}, _B)
    np.testing.assert_array_equal(sent["keys"], [[1, 0], [0, 0]])


def test_converter_checks_action_keys_and_shapes():
    converter = SpaceConverter(gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(2))
    with pytest.raises(ValueError, match="Expected actions"):
        converter.action({"move": np.zeros(_B, int)}, _B)
    with pytest.raises(ValueError, match="shape"):
        converter.action({"action": np.zeros((_B, 1), int)}, _B)


@pytest.mark.parametrize("with_game_over", [False, True])
def test_next_timestep_in_jax_equals_numpy(with_game_over):
    """The compiled rollout's TimeSteps (jax.numpy, jitted) are the host adapters' (numpy)."""
    rng = np.random.default_rng(0)
    b = 64
    numpy_step = first_timestep({"obs": np.zeros((b, 2), np.float32)}, b)
    jax_step = numpy_step
    compiled = jax.jit(
        lambda previous, *raw: next_timestep(previous, *raw, clip_rewards=True, xp=jnp)
    )
    for _ in range(20):
        raw = (
            {"obs": rng.normal(size=(b, 2)).astype(np.float32)},
            rng.normal(scale=3.0, size=b).astype(np.float32),
            rng.random(b) < 0.2,
            rng.random(b) < 0.1,
            (rng.random(b) < 0.5) if with_game_over else None,
        )
        numpy_step = next_timestep(numpy_step, *raw, clip_rewards=True)
        jax_step = compiled(jax_step, *raw)
        jax.tree.map(np.testing.assert_array_equal, jax.device_get(jax_step), numpy_step)
    assert numpy_step.first.any() and numpy_step.episode.done.any()
    assert np.abs(numpy_step.reward).max() <= 1.0
