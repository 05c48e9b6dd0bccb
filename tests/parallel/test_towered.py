"""Towered mode: gradient averaging, learning, and several processes on 127.0.0.1.

The device count of a JAX process is fixed when JAX starts, so multi-device checks run in
subprocesses with ``--xla_force_host_platform_device_count``.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from process_helpers import free_port, start_towered_process
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.agents import make_actor_critic
from fnrl.checkpoint import list_checkpoints
from fnrl.config import ToweredConfig, make_config
from fnrl.networks import ModularNetwork
from fnrl.parallel.towered import make_shardwise_act, train_towered
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

HERE = Path(__file__).parent


def _env(devices: int) -> dict:
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _train(*flags: str, devices: int = 1, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fnrl.train", "towered", *flags],
        env=_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _meta(log_dir: Path) -> dict:
    """The meta of the latest checkpoint of the one run under ``log_dir``."""
    (run_dir,) = log_dir.glob("*/*")
    latest = list_checkpoints(run_dir / "checkpoints")[-1]
    return json.loads((latest / "meta.json").read_text())


def test_towered_update_equals_single_device_update_on_the_whole_batch():
    result = subprocess.run(
        [sys.executable, str(HERE / "towered_equivalence.py")],
        env=_env(2),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max abs difference" in result.stdout


def test_shardwise_act_acts_as_each_device_would_on_its_part_of_the_batch():
    # Batch norm over each part's envs and one key per mesh position, as under shard_map.
    spec = EnvSpec({"obs": ArraySpec((3,), np.float32)}, {"action": DiscreteSpec(5)})
    network = ModularNetwork(
        spec=spec, discrete_network="Linear", network_body="LSTM", normalize=True, hidden_size=8
    )
    agent = make_actor_critic(network, spec)
    params = agent.init(jax.random.PRNGKey(0))
    positions, part = [1, 3], 4
    obs = {"obs": np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32) * 5}
    first = np.arange(8) % 3 == 0
    key, carry = jax.random.PRNGKey(7), agent.initial_carry(8)
    actions, carry_out, output = make_shardwise_act(agent, positions)(
        params, key, carry, obs, first
    )
    for index, position in enumerate(positions):
        rows = slice(index * part, (index + 1) * part)
        expected = agent.act(
            params,
            jax.random.fold_in(key, position),
            jax.tree.map(lambda x, rows=rows: x[rows], carry),
            {"obs": obs["obs"][rows]},
            first[rows],
        )
        got = jax.tree.map(lambda x, rows=rows: x[rows], (actions, carry_out, output))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    whole = make_shardwise_act(agent, [0])(params, key, carry, obs, first)[2].logits["action"]
    assert not np.allclose(whole[:part], output.logits["action"][:part])  # statistics differ


def test_one_device_towered_run_in_process(tmp_path):
    config = make_config(ToweredConfig, nb_env=4, max_train_steps=100, log_dir=str(tmp_path))
    result = train_towered(config)
    # 5 steps x 4 envs x 1 device per update: the budget is met after 5 updates
    assert (result.updates, result.env_steps) == (5, 100)
    assert {"rollout", "learner"} <= set(result.phase_seconds)  # compiled on envpool envs
    assert "env" not in result.phase_seconds


@pytest.mark.parametrize("devices, updates", [(1, 10), (2, 5)])
def test_nb_env_is_per_device_and_the_budget_is_global(tmp_path, devices, updates):
    result = _train("-n", "4", "-mts", "200", "--log-dir", str(tmp_path), devices=devices)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Devices: {devices} over 1 process" in result.stdout
    meta = _meta(tmp_path)
    assert (meta["env_steps"], meta["updates"]) == (200, updates)
    assert meta["config"]["nb_env"] == 4


def _digest(stdout: str, process: int = 0) -> str:
    return re.search(rf"process {process}: params digest (\w+)", stdout).group(1)


def _losses(run_dir: Path) -> dict[int, float]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {e.step: e.value for e in events.Scalars("macro_loss/total_loss")}


def test_two_device_run_stopped_and_resumed_equals_uninterrupted_run(tmp_path):
    # An LSTM carry and batch-norm statistics that must survive; 200 steps per update.
    flags = ("-n", "4", "--exp-length", "25", "-dn", "Linear", "-nb", "LSTM", "--normalize", "on")
    flags += ("--normalization", "batch", "--nb-eval-env", "0", "-sf", "1e-9")
    flags += ("--log-interval", "1")  # every update's losses, to compare them
    runs = [  # the uninterrupted run and the first part, side by side
        subprocess.Popen(
            [sys.executable, "-m", "fnrl.train", "towered", *flags, "-mts", steps, "--log-dir"]
            + [str(tmp_path / name)],
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, steps in (("whole", "1000"), ("parts", "400"))
    ]
    (whole_out, whole_err), (first_out, first_err) = (r.communicate(timeout=300) for r in runs)
    assert runs[0].returncode == 0, whole_err[-3000:]
    assert runs[1].returncode == 0, first_err[-3000:]
    (run_dir,) = (tmp_path / "parts").glob("*/*")
    second = _train("--resume", str(run_dir), "-mts", "1000", devices=2)
    assert second.returncode == 0, second.stderr[-3000:]
    log = (run_dir / "train_log.txt").read_text()
    assert "RESUME: replayed 50 vector steps (400 env steps)" in log
    assert _digest(second.stdout) == _digest(whole_out) != _digest(first_out)
    (whole_dir,) = (tmp_path / "whole").glob("*/*")
    assert _losses(run_dir) == _losses(whole_dir) and len(_losses(run_dir)) == 5
    assert (_meta(tmp_path / "parts")["env_steps"], _meta(tmp_path / "parts")["updates"]) == (
        1000,
        5,
    )


def test_bad_devices_flag_gives_one_clear_error(tmp_path):
    # --devices is the same as adept's --gpu-id, which the error names.
    result = _train("--devices", "0,5", "-mts", "100", "--log-dir", str(tmp_path), devices=2)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--gpu-id 0,5: no device 5; process 0 has 2: 0 = cpu:0, 1 = cpu:1" in result.stderr


@pytest.mark.parametrize(
    "env_flags",
    # PPO's continuous preset takes 32 minibatches of 2048-step rollouts; 4 split these 200.
    [(), ("--env-id", "Pendulum-v1", "--agent", "PPO", "--exp-length", "50", "--minibatches", "4")],
    ids=["A2C-CartPole", "PPO-Gaussian-Pendulum"],
)
def test_compiled_and_host_rollouts_train_the_same_params_on_two_devices(tmp_path, env_flags):
    # Each run's act samples per device with fold_in(key, position) in both rollouts.
    flags = ("-n", "4", "-mts", "400", "--nb-eval-env", "0", *env_flags)
    digests = {}
    for rollout in ("compiled", "host"):
        result = _train(
            *flags, "--rollout", rollout, "--log-dir", str(tmp_path / rollout), devices=2
        )
        assert result.returncode == 0, result.stderr[-3000:]
        digests[rollout] = _digest(result.stdout)
    assert digests["compiled"] == digests["host"]


@pytest.mark.slow
def test_towered_on_two_devices_learns_cartpole(tmp_path):
    # The CartPole preset's 16 envs as 8 per device; 500k steps, about a minute here.
    result = _train("-n", "8", "--log-dir", str(tmp_path), devices=2, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = tmp_path.glob("CartPole-v1/*")
    events = EventAccumulator(str(run_dir))
    events.Reload()
    returns = [e.value for e in events.Scalars("reward/train")]
    assert np.mean(returns[-20:]) >= 475, np.mean(returns[-20:])


def test_two_processes_train_together_and_only_process_0_writes(tmp_path):
    port = free_port()
    logs = [tmp_path / "process0", tmp_path / "process1"]
    processes = [start_towered_process(port, i, logs[i], "-mts", "2000") for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    digests = [_digest(out, i) for i, (out, _) in enumerate(outputs)]
    assert digests[0] == digests[1]
    assert "Devices: 2 over 2 process(es)" in outputs[0][0]
    assert _meta(logs[0])["env_steps"] == 2000  # 5 steps x 4 envs x 2 devices x 50 updates
    assert not logs[1].exists()

    # Both resume from process 0's checkpoint, which process 1 receives, and train on together.
    (run_dir,) = logs[0].glob("*/*")
    port = free_port()
    flags = ("--resume", str(run_dir), "-mts", "3000")
    processes = [start_towered_process(port, i, logs[i], *flags) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    resumed = [_digest(out, i) for i, (out, _) in enumerate(outputs)]
    assert resumed[0] == resumed[1] != digests[0]
    assert "process 1: resuming with the learner state of process 0's checkpoint" in outputs[1][1]
    assert (_meta(logs[0])["env_steps"], _meta(logs[0])["updates"]) == (3000, 75)
    assert not logs[1].exists()


@pytest.mark.parametrize(
    "killed, line",
    [
        (1, "another process of the run stopped (a collective failed)"),
        # The coordinator's process: JAX's runtime aborts the other from C++ at once.
        (0, "the coordinator (process 0) stopped or cannot be reached"),
    ],
)
def test_kill_9_of_one_process_ends_the_other_with_one_line(tmp_path, killed, line):
    port = free_port()
    flags = ("-mts", "10000000", "--heartbeat-timeout", "5")
    processes = [start_towered_process(port, i, tmp_path / f"p{i}", *flags) for i in range(2)]
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("p0/*/*/checkpoints/step_*")):  # training has started
            assert time.monotonic() < deadline, "the processes did not start training"
            time.sleep(0.5)
        processes[killed].send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        _, err = processes[1 - killed].communicate(timeout=60)
        assert time.monotonic() - killed_at < 60
        assert processes[1 - killed].returncode != 0
        (only,) = err.strip().splitlines()
        assert only.startswith("fnrl.train: error: ") and line in only
    finally:
        for process in processes:
            process.kill()
            process.communicate()
