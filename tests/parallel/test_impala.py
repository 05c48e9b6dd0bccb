"""IMPALA mode end to end: budget, seeds, policy lag, shutdown, failures, learning, sharding.

The device count of a JAX process is fixed when JAX starts, so the two-device check runs
pytest in a subprocess with ``--xla_force_host_platform_device_count=2``.
"""

import json
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from process_helpers import pytest_with_two_devices
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.checkpoint import list_checkpoints
from fnrl.config import ImpalaConfig, TrainConfig, make_config
from fnrl.parallel import actors, build, impala
from fnrl.parallel.build import RunHooks
from fnrl.parallel.impala import ActorFailed, Rollout, stack_rollouts, train_impala
from fnrl.train import parse_args
from fnrl.types import Trajectory


def _config(tmp_path, **settings) -> ImpalaConfig:
    """A small CartPole run: 2 actors of 4 envs, rollouts of 5 steps, 2 rollouts per batch."""
    base = dict(
        env_id="CartPole-v1",
        nb_actor=2,
        nb_env=4,
        batch_size=2,
        exp_length=5,
        network_body="Linear",
        normalize=False,
        nb_eval_env=0,
        log_interval=1,  # every update reaches tensorboard
        log_dir=str(tmp_path),
    )
    return make_config(ImpalaConfig, **{**base, **settings})


def _scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return [e.value for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []


def _actor_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fnrl-actor")]


def _stop_when_solved(threshold):
    """Hooks that set the run's stop event once the last 20 episodes average ``threshold``."""

    def stop_if_solved(run):
        if len(run.episode_returns) >= 20 and np.mean(run.episode_returns[-20:]) >= threshold:
            run.stop.set()

    return RunHooks(on_update=stop_if_solved)


def test_config_flags_and_validation():
    mode, config = parse_args(
        ["impala", "--nb-actor", "3", "--num-rollouts-in-batch", "3", "--max-queue-length", "6"]
    )
    assert mode == "impala" and isinstance(config, ImpalaConfig)
    assert (config.nb_actor, config.batch_size, config.max_queue_length) == (3, 3, 6)
    assert config.agent == "ActorCriticVtrace" and config.nb_env == 16  # CartPole preset
    for flag in ("nb_actor", "batch_size", "max_queue_length"):
        with pytest.raises(ValueError, match="must be at least 1"):
            ImpalaConfig(**{flag: 0})


def test_stack_rollouts_concatenates_the_env_axis():
    def rollout(offset, B, T=3):
        trajectory = Trajectory(
            obs={"x": np.full((T + 1, B, 2), offset, np.float32)},
            first=np.zeros((T + 1, B), bool),
            actions={"a": np.full((T, B), offset, np.int32)},
            rewards=np.full((T, B), offset, np.float32),
            terminated=np.zeros((T, B), bool),
            truncated=np.zeros((T, B), bool),
            behaviour_logits={"a": np.zeros((T, B, 2), np.float32)},
            initial_carry=(np.full((B, 5), offset, np.float32),),
        )
        return Rollout(trajectory, 0, offset, [], {})

    stacked = stack_rollouts([rollout(1, 2), rollout(2, 3)])
    assert stacked.obs["x"].shape == (4, 5, 2) and stacked.initial_carry[0].shape == (5, 5)
    np.testing.assert_array_equal(stacked.rewards[0], [1, 1, 2, 2, 2])
    np.testing.assert_array_equal(stacked.initial_carry[0][:, 0], [1, 1, 2, 2, 2])


@pytest.mark.parametrize(
    ("rollout", "actor_phases"), [("compiled", ("rollout",)), ("host", ("env", "inference"))]
)
def test_budget_counts_learner_steps_and_logs_lag_and_phases(tmp_path, rollout, actor_phases):
    # 40 steps per update: the run does 3
    config = _config(tmp_path, max_train_steps=100, rollout=rollout)
    result = train_impala(config, show_progress=False)
    assert (result.updates, result.env_steps, result.frames) == (3, 120, 120)
    assert not _actor_threads()
    names = [p.name for p in list_checkpoints(result.run_dir / "checkpoints")]
    assert names == ["step_40", "step_120"]
    meta = json.loads((result.run_dir / "checkpoints" / "step_120" / "meta.json").read_text())
    assert meta["mode"] == "impala" and meta["config"]["nb_actor"] == 2
    for metrics in result.metrics:
        assert 0 <= metrics["policy_lag"] <= metrics["policy_lag_max"]
        assert metrics["queue_wait_seconds"] >= 0 and metrics["learner_seconds"] > 0
        assert all(metrics[f"{phase}_seconds"] > 0 for phase in actor_phases)
    # The first batch acted with the learner's own params: on-policy, every ratio 1.
    assert result.metrics[0]["policy_lag_max"] == 0
    assert result.metrics[0]["importance"] == pytest.approx(1.0, abs=1e-5)
    for tag in (
        "policy_lag",
        "queue_wait_seconds",
        "learner_seconds",
        f"{actor_phases[0]}_seconds",
    ):
        assert len(_scalars(result.run_dir, f"metric/{tag}")) >= 3, tag  # + the final summary
    assert _scalars(result.run_dir, "metric/frames_per_second")
    assert {*actor_phases, "learner", "queue_wait"} <= set(result.phase_seconds)
    log = (result.run_dir / "train_log.txt").read_text()
    assert "ACTORS: actor0:" in log and "END: steps 120" in log


def test_resume_continues_from_the_latest_checkpoint(tmp_path):
    first = train_impala(_config(tmp_path, max_train_steps=80), show_progress=False)
    assert (first.updates, first.env_steps, int(first.state.step)) == (2, 80, 2)
    config = _config(tmp_path, max_train_steps=160, resume=str(first.run_dir))
    resumed = train_impala(config, show_progress=False)
    assert resumed.run_dir == first.run_dir
    assert (resumed.start_env_steps, resumed.env_steps, resumed.updates) == (80, 160, 4)
    assert int(resumed.state.step) == 4  # the optimizer's count went on from the checkpoint
    assert resumed.metrics[0]["policy_lag_max"] == 0  # versions go on from update 2
    names = [p.name for p in list_checkpoints(first.run_dir / "checkpoints")]
    assert names[-1] == "step_160"


def test_recurrent_carry_is_stacked_with_its_rollout(tmp_path):
    # An LSTM's carry travels with each rollout: with it, the learner re-runs the very policy
    # that acted on the first batch (lag 0), so every importance ratio is 1.
    config = _config(tmp_path, network_body="LSTM", nb_env=3, max_train_steps=60)
    result = train_impala(config, show_progress=False)
    on_policy = [m for m in result.metrics if m["policy_lag_max"] == 0]
    assert on_policy and all(m["importance"] == pytest.approx(1.0, abs=1e-5) for m in on_policy)


@pytest.mark.parametrize("rollout", ["compiled", "host"])
def test_a_gaussian_policy_is_learned_on_policy_from_its_actors_rollouts(tmp_path, rollout):
    # Pendulum's torque: the actors store each Gaussian that acted, so the learner's first
    # batch (its own params) has every importance ratio exactly 1 on either rollout.
    config = _config(tmp_path, env_id="Pendulum-v1", max_train_steps=100, rollout=rollout)
    result = train_impala(config, show_progress=False)
    names = {path[-1] for path in flatten_dict(result.state.params["params"])}
    assert result.updates == 3 and "log_std_action" in names
    on_policy = [m for m in result.metrics if m["policy_lag_max"] == 0]
    assert on_policy and all(m["importance"] == pytest.approx(1.0, abs=1e-5) for m in on_policy)
    assert all(np.isfinite(m["total_loss"]) for m in result.metrics)


def test_each_actor_has_its_own_env_seeds_and_key(tmp_path, monkeypatch):
    seeds, actors = [], []
    make_env = build.make_training_env

    def recording_make_env(config, num_envs, seed):
        seeds.append(range(seed, seed + num_envs))
        return make_env(config, num_envs, seed)

    class RecordingActor(impala.Actor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            actors.append(self)

    monkeypatch.setattr(impala, "Actor", RecordingActor)
    config = _config(tmp_path, nb_actor=3, seed=7, max_train_steps=40)
    train_impala(config, show_progress=False, hooks=RunHooks(make_env=recording_make_env))
    assert seeds == [range(7, 11), range(11, 15), range(15, 19)]  # env i of actor k: 7 + 4k + i
    assert len({tuple(np.asarray(actor.key).tolist()) for actor in actors}) == 3


def _lags_with_a_slow_learner(tmp_path, monkeypatch, queue_length):
    """Per-update policy lag (from tensorboard) when the learner is the bottleneck."""

    def slow_stack(rollouts):
        time.sleep(0.02)  # a learner slower than two actors: the queue stays full
        return stack_rollouts(rollouts)

    monkeypatch.setattr(impala, "stack_rollouts", slow_stack)
    config = _config(
        tmp_path / str(queue_length),
        batch_size=1,
        max_queue_length=queue_length,
        max_train_steps=80 * 20,  # 80 updates of one rollout of 4 envs x 5 steps
    )
    result = train_impala(config, show_progress=False)
    lags = _scalars(result.run_dir, "metric/policy_lag_max")
    assert result.updates == 80 and len(lags) >= 80  # each update, and the final summary
    return np.asarray(lags[20:80])  # after the warm-up


def test_policy_lag_stays_bounded_by_the_queue(tmp_path, monkeypatch):
    # Every rollout in flight holds one of the queue's places and fetches its params once it
    # has one: with batches of one rollout its lag is at most max_queue_length updates, and
    # exactly that while the learner is the bottleneck, whatever the number of actors.
    for queue_length in (1, 6):
        lags = _lags_with_a_slow_learner(tmp_path, monkeypatch, queue_length)
        assert np.median(lags) == queue_length, (queue_length, lags)
        # A thread descheduled by a busy machine can lag more once; the steady state may not.
        assert np.quantile(lags, 0.9) <= queue_length, (queue_length, lags)


def test_stop_event_stops_every_thread_and_saves(tmp_path):
    stop = threading.Event()
    config = _config(tmp_path, max_train_steps=10_000_000)

    def stop_after_first_checkpoint():
        while not stop.is_set():
            if list(tmp_path.glob("*/*/checkpoints/step_*")):
                stop.set()
            time.sleep(0.01)

    watcher = threading.Thread(target=stop_after_first_checkpoint, daemon=True)
    watcher.start()
    result = train_impala(config, stop=stop, show_progress=False)
    assert result.interrupted and 0 < result.env_steps < config.max_train_steps
    assert result.last_checkpoint.name == f"step_{result.env_steps}"
    assert not _actor_threads()


def test_actor_failure_before_any_update_raises_promptly(tmp_path, monkeypatch):
    def failing_collect(*args, **kwargs):
        raise ValueError("observation has the wrong shape")

    monkeypatch.setattr("fnrl.parallel.rollout.collect", failing_collect)  # the host loop
    start = time.monotonic()
    with pytest.raises(ActorFailed, match="observation has the wrong shape") as raised:
        config = _config(tmp_path, max_train_steps=10_000, rollout="host")
        train_impala(config, show_progress=False)
    assert time.monotonic() - start < 60
    assert "failing_collect" in str(raised.value)  # the actor's traceback
    assert isinstance(raised.value.__cause__, ValueError)
    assert not _actor_threads()


_FAILING_ACTOR = """
import sys, time
from pathlib import Path
import fnrl.parallel.build as build

make_env = build.make_training_env

def make_training_env(config, num_envs, seed):
    env = make_env(config, num_envs, seed)
    if seed == config.seed + config.nb_env:  # actor 1's envs
        step, calls = env.step, [0]
        def failing_step(actions):
            calls[0] += 1
            if calls[0] > 200:
                Path(sys.argv[1]).write_text(str(time.time()))
                raise RuntimeError("injected env failure")
            return step(actions)
        env.step = failing_step
    return env

from fnrl.parallel.build import RunHooks
from fnrl.train import main
sys.exit(main(sys.argv[2:], hooks=RunHooks(make_env=make_training_env)))
"""


def test_actor_failure_exits_nonzero_with_its_traceback_and_a_checkpoint(tmp_path):
    failed_at = tmp_path / "failed_at"
    # The host loop steps the envs from Python, where the failure is injected.
    flags = "impala --nb-env 4 --exp-length 5 -mts 1e7 --nb-eval-env 0 --rollout host --log-dir"
    result = subprocess.run(
        [sys.executable, "-c", _FAILING_ACTOR, str(failed_at), *flags.split(), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    exited_at = time.time()
    assert result.returncode == 1, result.stderr
    assert "fnrl.train: error: actor thread 1 failed: RuntimeError: injected env failure" in (
        result.stderr
    )
    assert "Traceback" in result.stderr and "failing_step" in result.stderr
    assert exited_at - float(failed_at.read_text()) < 10  # within seconds of the failure
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    assert list_checkpoints(run_dir / "checkpoints")


@pytest.mark.slow
def test_two_actors_reach_475_on_cartpole_within_800k_steps(tmp_path):
    # The CartPole preset's learner batch (16 envs x 5 steps), from two actors of 8 envs; the
    # run stops once the last 20 episodes average 475 (local mode's threshold), which takes
    # 400k-600k steps and about 30 s on 2 busy CPU cores.
    config = _config(tmp_path, nb_env=8, max_train_steps=800_000, summary_frequency=10.0)
    result = train_impala(config, show_progress=False, hooks=_stop_when_solved(475))
    last = result.episode_returns[-20:]
    assert len(last) == 20 and np.mean(last) >= 475, (result.env_steps, np.mean(last))
    assert result.env_steps <= 800_000
    assert 0.9 < np.mean([m["importance"] for m in result.metrics[-100:]]) < 1.1


@pytest.mark.slow
def test_learner_shards_over_two_host_devices_and_learns():
    result = pytest_with_two_devices(f"{__file__}::test_sharded_learning_in_a_two_device_process")
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr


def test_sharded_learning_in_a_two_device_process(tmp_path, monkeypatch):
    """Run by the test above in a process with two CPU devices; skipped elsewhere."""
    if jax.device_count() != 2:
        pytest.skip("needs 2 devices: test_learner_shards_over_two_host_devices_and_learns")
    with pytest.raises(ValueError, match="does not split over the 2 learner devices"):
        train_impala(_config(tmp_path, nb_env=3, batch_size=1), show_progress=False)
    shardings = []
    batch_shardings = impala._batch_shardings

    def recording_batch_shardings(trajectory, mesh):
        shardings.append(batch_shardings(trajectory, mesh))
        return shardings[-1]

    monkeypatch.setattr(impala, "_batch_shardings", recording_batch_shardings)
    # A shorter threshold than the single-device test, to keep the suite short: 200 (from
    # about 20 for a random policy) within 400k steps.
    config = _config(tmp_path, nb_env=8, max_train_steps=400_000, summary_frequency=10.0)
    result = train_impala(config, show_progress=False, hooks=_stop_when_solved(200))
    assert np.mean(result.episode_returns[-20:]) >= 200, result.env_steps
    rewards = shardings[0].rewards
    assert rewards.spec == jax.sharding.PartitionSpec(None, "batch")
    assert len(rewards.device_set) == 2
    params = jax.tree.leaves(result.state.params)
    assert all(len(leaf.sharding.device_set) == 2 for leaf in params)
    assert "LEARNER: 2 device(s)" in (result.run_dir / "train_log.txt").read_text()


def test_train_impala_rejects_a_local_config(tmp_path):
    with pytest.raises(ValueError, match="needs an ImpalaConfig"):
        train_impala(TrainConfig(log_dir=str(tmp_path)))


def test_help_lists_the_impala_flags():
    out = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "impala", "-h"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for flag in (
        "--nb-actor",
        "--batch-size",
        "--num-rollouts-in-batch",
        "--max-queue-length",
        "--max-dynamic-batch",
        "--min-dynamic-batch",
        "--host-training-info-interval",
        "--use-local-buffers",
    ):
        assert flag in out


def test_impala_defaults_to_adepts_nature_trunk_and_refuses_local_buffers():
    _, config = parse_args(["impala"])
    assert config.vision_network == "Nature" and TrainConfig.vision_network == "FourConv"
    assert config.host_training_info_interval == 100
    assert (config.max_dynamic_batch, config.min_dynamic_batch, config.use_local_buffers) == (
        0,
        0,
        False,
    )
    with pytest.raises(ValueError, match="--use-local-buffers .* keep no local buffers"):
        ImpalaConfig(use_local_buffers=True)
    with pytest.raises(ValueError, match="--min-dynamic-batch .* at most --max-dynamic-batch 2"):
        ImpalaConfig(max_dynamic_batch=2, min_dynamic_batch=3)
    with pytest.raises(ValueError, match="at most --max-queue-length 4"):
        ImpalaConfig(max_dynamic_batch=8, min_dynamic_batch=5)


def test_dynamic_batch_sizes_are_the_bounds_and_the_powers_of_two_that_split():
    assert ImpalaConfig().dynamic_batch_sizes() == ()  # static batches
    assert ImpalaConfig(max_dynamic_batch=6).dynamic_batch_sizes() == (1, 2, 4, 6)
    assert ImpalaConfig(max_dynamic_batch=6, min_dynamic_batch=3).dynamic_batch_sizes() == (
        3,
        4,
        6,
    )
    # One env per rollout over 2 devices: only even rollout counts split.
    config = ImpalaConfig(max_dynamic_batch=5, min_dynamic_batch=1, nb_env=1)
    assert config.dynamic_batch_sizes(devices=2) == (2, 4)


def _queue_of(count, places=8):
    rollouts = actors.RolloutQueue(places)
    for i in range(count):
        assert rollouts.reserve(timeout=1)
        rollouts.put(Rollout(None, 0, i, [], {}))
    return rollouts


@pytest.mark.parametrize(("ready", "taken"), [(1, 1), (3, 2), (4, 4), (7, 4)])
def test_dynamic_take_takes_what_is_ready_rounded_down_to_a_compiled_size(ready, taken):
    rollouts = _queue_of(ready)
    batch = actors.take_dynamic(rollouts, (1, 2, 4), (threading.Event(),))
    assert [r.actor_id for r in batch] == list(range(taken))  # oldest first
    assert rollouts.qsize() == ready - taken  # the rest wait for the next update


def test_dynamic_take_waits_for_the_minimum_and_stops_on_an_event():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    assert actors.take_dynamic(_queue_of(1), (2, 4), (stop,)) is None
    assert time.monotonic() - start >= 0.25


def test_dynamic_batching_trains_on_the_rollouts_taken_and_logs_info_lines(tmp_path):
    config = _config(
        tmp_path,
        nb_actor=3,
        max_queue_length=6,
        max_dynamic_batch=3,
        host_training_info_interval=2,
        max_train_steps=400,
    )
    result = train_impala(config, show_progress=False)
    counts = [m["batch_rollouts"] for m in result.metrics]
    assert set(counts) <= {1.0, 2.0, 3.0}
    # Each rollout is 4 envs x 5 steps; the budget counts exactly the rollouts learned from.
    assert result.env_steps == 20 * sum(counts) >= 400
    log = (result.run_dir / "train_log.txt").read_text()
    assert "batch of (1, 2, 3) (dynamic) rollouts" in log
    assert log.count("LEARNER INFO:") == result.updates // 2


def test_impala_on_images_builds_adepts_nature_trunk():
    from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

    spec = EnvSpec({"screen": ArraySpec((84, 84, 1), np.dtype(np.uint8))}, {"a": DiscreteSpec(6)})
    kernels = {}
    for mode, vision in (("impala", "Nature"), ("local", "FourConv")):
        _, config = parse_args([mode])
        params = jax.eval_shape(build.make_agent(config, spec).init, jax.random.PRNGKey(0))
        leaves = flatten_dict(params["params"]).values()
        kernels[vision] = [leaf.shape for leaf in leaves if leaf.ndim == 4]
    # Nature DQN's three convolutions (Mnih et al. 2015): 32 8x8/4, 64 4x4/2, 64 3x3/1.
    assert sorted(kernels["Nature"]) == [(3, 3, 64, 64), (4, 4, 32, 64), (8, 8, 1, 32)]
    assert kernels["FourConv"] != kernels["Nature"]
