"""The evaluation policy, episode runs and the evaluation thread."""

import itertools
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.checkpoint import list_checkpoints
from fnrl.config import TrainConfig
from fnrl.evaluate import evaluate_checkpoints
from fnrl.networks import ModularNetwork
from fnrl.parallel import evaluation
from fnrl.parallel.evaluation import (
    EVAL_THREAD_SEED_OFFSET,
    EvaluationThread,
    episode_quotas,
    make_eval_policy,
    run_episodes,
    step_keys,
)
from fnrl.parallel.local import train_local
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import EpisodeStats, TimeStep

SPEC = EnvSpec({"obs": ArraySpec((3,), np.dtype(np.float32))}, {"action": DiscreteSpec(2)})


class CountdownEnv:
    """B envs whose episode e of env i lasts ``lengths[i][e]`` steps, reward 1 per step.

    Records the actions it receives; ``fail_at`` makes a step raise.
    """

    frames_per_step = 1
    spec = SPEC

    def __init__(self, lengths, fail_at=None):
        self.lengths = lengths
        self.num_envs = len(lengths)
        self.fail_at = fail_at
        self.steps = 0
        self.closed = False

    def _timestep(self, first, done, returns):
        b = self.num_envs
        obs = {"obs": np.tile(np.float32([1.0, -1.0, 0.5]), (b, 1))}
        zeros = np.zeros(b, bool)
        return TimeStep(
            obs,
            np.ones(b, np.float32),
            done,
            zeros,
            first,
            EpisodeStats(done, returns.astype(np.float32), returns.astype(np.int32)),
        )

    def reset(self):
        self.episode = np.zeros(self.num_envs, int)
        self.t = np.zeros(self.num_envs, int)
        b = self.num_envs
        return self._timestep(np.ones(b, bool), np.zeros(b, bool), np.zeros(b))

    def step(self, actions):
        self.steps += 1
        if self.steps == self.fail_at:
            raise OSError("simulator crashed")
        self.t += 1
        target = np.array(
            [
                lengths[e % len(lengths)]
                for lengths, e in zip(self.lengths, self.episode, strict=True)
            ]
        )
        done = self.t >= target
        returns = self.t.copy()
        self.episode = self.episode + done
        self.t = np.where(done, 0, self.t)
        return self._timestep(np.zeros(self.num_envs, bool), done, returns)

    def close(self):
        self.closed = True


def _policy(params, key, carry, obs, first):
    del key, obs, first
    return {"action": jnp.zeros(1, jnp.int32) + params["w"].astype(jnp.int32)}, carry


def test_episode_quotas_split_episodes_evenly():
    np.testing.assert_array_equal(episode_quotas(20, 10), [2] * 10)
    np.testing.assert_array_equal(episode_quotas(7, 3), [3, 2, 2])
    np.testing.assert_array_equal(episode_quotas(2, 4), [1, 1, 0, 0])
    with pytest.raises(ValueError, match="at least 1 episode"):
        episode_quotas(0, 2)


def test_step_keys_split_a_block_at_a_time_and_never_repeat():
    key = jax.random.PRNGKey(3)
    keys = list(itertools.islice(step_keys(key, block=4), 10))
    first = jax.random.split(key, 5)
    second = jax.random.split(first[0], 5)
    third = jax.random.split(second[0], 5)
    expected = np.concatenate([first[1:], second[1:], third[1:3]])
    np.testing.assert_array_equal(np.stack(keys), expected)
    assert keys[0].dtype == np.uint32 and keys[0].shape == (2,)
    many = np.stack(list(itertools.islice(step_keys(key), 2000)))
    assert len(np.unique(many, axis=0)) == 2000


def test_run_episodes_plays_each_envs_quota_not_the_first_to_finish():
    # env 0 has short games, env 1 long ones: the first 4 games to end would all be env 0's.
    env = CountdownEnv([[2, 3, 2, 3, 2], [10, 11]])
    games = run_episodes(env, _policy, {"w": jnp.zeros(())}, jax.random.PRNGKey(0), (), 4)
    assert [(g.returns, g.length) for g in games] == [(2, 2), (3, 3), (10, 10), (11, 11)]


def test_eval_policy_uses_running_statistics_not_the_batch():
    network = ModularNetwork(SPEC, discrete_network="Linear", network_body="Linear")
    obs = {"obs": jax.random.normal(jax.random.PRNGKey(1), (6, 3))}
    first = jnp.ones(6, bool)
    params = network.init(jax.random.PRNGKey(0), (), obs, first, train=False)
    # The initial running statistics (mean 0, variance 1) are unlike this batch's.
    policy = jax.jit(make_eval_policy(network, greedy=True))
    _, output = network.apply(params, (), obs, first, train=False)
    actions, _ = policy(params, jax.random.PRNGKey(2), (), obs, first)
    np.testing.assert_array_equal(actions["action"], np.argmax(output.logits["action"], -1))
    # each row's action is independent of the other rows of the batch (no batch statistics)
    alone, _ = policy(params, jax.random.PRNGKey(2), (), {"obs": obs["obs"][:1]}, first[:1])
    assert alone["action"][0] == actions["action"][0]
    sampled = make_eval_policy(network, greedy=False)
    keys = jax.random.split(jax.random.PRNGKey(3), 50)
    draws = jax.vmap(lambda k: sampled(params, k, (), obs, first)[0]["action"])(keys)
    assert len(np.unique(np.asarray(draws))) == 2  # sampling explores both actions


class FakeLogger:
    def __init__(self):
        self.eval = []

    def eval_episode(self, step, returns, length):
        self.eval.append((step, returns, length))


def _wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_evaluation_thread_plays_each_game_with_the_params_published_before_it():
    logger = FakeLogger()
    thread = EvaluationThread(
        CountdownEnv([[3, 4]]), _policy, (), logger, key=jax.random.PRNGKey(0), step_rate=1e6
    )
    thread.start()
    try:
        assert thread.wants_params
        for step in (100, 200, 300):
            _wait_until(lambda: thread.wants_params)
            thread.publish({"w": jnp.ones(())}, step)
        _wait_until(lambda: len(logger.eval) == 3)
    finally:
        thread.close()
    assert logger.eval == [(100, 3.0, 3), (200, 4.0, 4), (300, 3.0, 3)]
    assert [step for step, _ in thread.episodes] == [100, 200, 300]


def test_evaluation_thread_failure_is_raised_in_the_training_thread():
    env = CountdownEnv([[5]], fail_at=2)
    thread = EvaluationThread(env, _policy, (), FakeLogger(), key=jax.random.PRNGKey(0))
    thread.start()
    thread.publish({"w": jnp.zeros(())}, 10)
    _wait_until(lambda: thread.error is not None)
    with pytest.raises(RuntimeError, match="evaluation thread failed.*simulator crashed"):
        thread.check()
    with pytest.raises(RuntimeError, match="simulator crashed"):
        thread.close()
    assert env.closed


def test_evaluation_thread_stops_promptly_while_waiting_for_params():
    env = CountdownEnv([[5]])
    thread = EvaluationThread(env, _policy, (), FakeLogger(), key=jax.random.PRNGKey(0))
    thread.start()
    start = time.monotonic()
    thread.close()
    assert time.monotonic() - start < 2.0 and env.closed
    assert not any(t.name == "fnrl-evaluation" for t in threading.enumerate())


def test_an_evaluation_thread_whose_env_hangs_is_left_behind_within_a_bound(monkeypatch, capsys):
    entered, release = threading.Event(), threading.Event()

    class HangingEnv(CountdownEnv):
        def step(self, actions):
            entered.set()
            release.wait()  # hangs until the test ends
            return super().step(actions)

    monkeypatch.setattr(evaluation, "_JOIN_SECONDS", 0.5)
    env = HangingEnv([[5]])
    thread = EvaluationThread(env, _policy, (), FakeLogger(), key=jax.random.PRNGKey(0))
    thread.start()
    thread.publish({"w": jnp.zeros(())}, 10)
    assert entered.wait(10)
    start = time.monotonic()
    thread.close()
    assert 0.5 <= time.monotonic() - start < 2.0 and not env.closed
    assert "evaluation thread did not stop within 0.5 s" in capsys.readouterr().err
    release.set()


@pytest.mark.parametrize("step_rate, busy", [(0.0, 0.02), (50.0, None)])
def test_evaluation_thread_is_throttled(step_rate, busy):
    def slow_policy(params, key, carry, obs, first):
        time.sleep(0.002)  # a 2 ms policy step
        return _policy(params, key, carry, obs, first)

    env = CountdownEnv([[10**9]])
    thread = EvaluationThread(
        env, slow_policy, (), FakeLogger(), key=jax.random.PRNGKey(0), step_rate=step_rate
    )
    thread.start()
    thread.publish({"w": jnp.zeros(())}, 1)
    start = time.monotonic()
    time.sleep(1.5)
    thread.close()
    wall = time.monotonic() - start
    if busy is not None:  # automatic: about 2 percent of the wall time is spent stepping
        assert thread.busy_seconds / wall < 2 * busy
        assert env.steps < 2 * busy * wall / 0.002 + 2
    else:  # at most step_rate steps per second
        assert env.steps <= step_rate * wall + 2


def _eval_scalars(run_dir):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    if "reward/eval" not in events.Tags()["scalars"]:
        return []
    return [(e.step, e.value) for e in events.Scalars("reward/eval")]


def test_training_logs_reward_eval_of_the_latest_params(tmp_path):
    config = TrainConfig(
        env_id="CartPole-v1",
        nb_env=16,
        exp_length=5,
        network_body="Linear",
        normalize=True,
        max_train_steps=40_000,
        nb_eval_env=1,
        eval_every=0,
        eval_step_rate=1e6,  # unthrottled, so that games end within this short run
        log_dir=str(tmp_path),
    )
    result = train_local(config)
    logged = _eval_scalars(result.run_dir)
    assert logged, "the evaluation thread logged no game"
    steps = [step for step, _ in logged]
    assert steps == sorted(steps) and all(0 < s <= 40_000 and s % 80 == 0 for s in steps)
    # The first game was played by the params of the first update, which the first checkpoint
    # holds: an independent greedy evaluation of it on the thread's seed gives the same return.
    first_checkpoint = list_checkpoints(result.run_dir / "checkpoints")[0]
    assert steps[0] == 80 and first_checkpoint.name == "step_80"
    (expected,) = evaluate_checkpoints(
        result.run_dir,
        [first_checkpoint],
        episodes=1,
        nb_env=1,
        seed=config.seed + EVAL_THREAD_SEED_OFFSET,
    )
    assert logged[0][1] == expected["returns"][0]
    assert "EVAL: STEP: 80 REWARD:" in (result.run_dir / "train_log.txt").read_text()
