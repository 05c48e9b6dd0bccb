"""Exact resume: a stopped (or killed) and resumed run equals an uninterrupted one, bit for bit."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_params,
)
from fnrl.config import TrainConfig, agent_config_class, make_config
from fnrl.envs import make_env
from fnrl.parallel.local import train_local
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.specs import is_continuous
from fnrl.train import parse_args

# An LSTM body (its carry must survive the resume) after a batch-normalized trunk (its running
# statistics too); summaries at every update, so that every loss is logged; an evaluation every
# 1000 steps, whose games must also be the same.
SETTINGS = dict(
    env_id="CartPole-v1",
    nb_env=16,
    exp_length=25,
    max_train_steps=4000,
    discrete_network="Linear",
    network_body="LSTM",
    normalize=True,
    nb_eval_env=0,
    eval_every=1000,
    eval_episodes=2,
    summary_frequency=1e-9,
    log_interval=1,
)
LOSSES = ("macro_loss/total_loss", "loss/policy_loss", "loss/value_loss", "loss/entropy_loss")


def _logged(run_dir, tag):
    """step -> value of a scalar logged once per update, over all event files of a run
    (tensorboard's merge), which holds no repeated or backwards step."""
    events = EventAccumulator(str(run_dir))
    events.Reload()
    steps = [e.step for e in events.Scalars(tag)]
    assert steps == sorted(set(steps)), f"{tag}: repeated or backwards steps {steps}"
    return {e.step: e.value for e in events.Scalars(tag)}


def _assert_same_state(a, b):
    same = jax.tree.map(lambda x, y: np.array_equal(np.asarray(x), np.asarray(y)), a, b)
    assert all(jax.tree.leaves(same))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 4000-step run."""
    return train_local(TrainConfig(**SETTINGS, log_dir=str(tmp_path_factory.mktemp("reference"))))


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The same run stopped at 2000 steps (tests resume copies of it)."""
    config = TrainConfig(**SETTINGS, log_dir=str(tmp_path_factory.mktemp("stopped")))
    return train_local(dataclasses.replace(config, max_train_steps=2000))


def _copy(run, tmp_path):
    target = tmp_path / run.run_dir.name
    shutil.copytree(run.run_dir, target)
    return target


def test_stopped_and_resumed_run_equals_uninterrupted_run(tmp_path, reference, stopped):
    first = stopped
    assert first.env_steps == 2000 and first.last_checkpoint.name == "step_2000"
    run_dir = _copy(first, tmp_path)
    second = train_local(TrainConfig(**SETTINGS, resume=str(run_dir)))
    ref = reference
    assert (second.run_dir, second.env_steps, second.updates) == (run_dir, 4000, 10)
    assert (second.start_env_steps, second.start_updates) == (2000, 5)
    assert "batch_stats" in second.state.params and second.state.params["batch_stats"]
    _assert_same_state(second.state, ref.state)  # params, batch stats, optimizer, key, step
    assert first.metrics + second.metrics == ref.metrics
    assert first.episode_returns + second.episode_returns == ref.episode_returns
    for tag in LOSSES:
        logged = _logged(second.run_dir, tag)
        assert logged == _logged(ref.run_dir, tag), tag
        assert len(logged) == 10
    for csv in ("episodes.csv", "eval.csv"):  # the stopped run's rows, then the resumed ones
        assert (second.run_dir / csv).read_text() == (ref.run_dir / csv).read_text(), csv
    assert len((ref.run_dir / "eval.csv").read_text().splitlines()) == 1 + 4
    assert _logged(second.run_dir, "reward/eval") == _logged(ref.run_dir, "reward/eval")
    assert second.resumed_from.name == "step_2000" and second.replayed_steps == 125


def test_resume_with_zscore_norm_env_is_exact_and_checkpoints_hold_the_statistics(tmp_path):
    """The running observation statistics are saved and restored with the params."""
    settings = {**SETTINGS, "zscore_norm_env": True, "max_train_steps": 2000}
    reference = train_local(TrainConfig(**settings, log_dir=str(tmp_path / "reference")))
    first = train_local(
        TrainConfig(**{**settings, "max_train_steps": 800}, log_dir=str(tmp_path / "stopped"))
    )
    stats = first.state.params["obs_stats"]["zscore_obs"]
    assert float(stats.count) == pytest.approx(800 + 1e-4)  # every observation learned from
    assert not np.allclose(stats.mean, 0.0) and not np.allclose(stats.var, 1.0)
    saved = load_params(first.last_checkpoint, jax.eval_shape(lambda: first.state.params))
    _assert_same_state(saved, first.state.params)
    second = train_local(TrainConfig(**settings, resume=str(first.run_dir)))
    assert (second.start_env_steps, second.env_steps) == (800, 2000)
    _assert_same_state(second.state, reference.state)
    assert first.metrics + second.metrics == reference.metrics
    assert first.episode_returns + second.episode_returns == reference.episode_returns
    with pytest.raises(ValueError, match="--zscore-norm-env cannot change when resuming"):
        train_local(
            TrainConfig(**{**settings, "zscore_norm_env": False}, resume=str(first.run_dir))
        )


def test_a_continuous_ppo_run_resumes_exactly(tmp_path):
    """Gaussian policies, float actions in the log, PPO's minibatch keys: all survive a resume."""
    settings = dict(
        agent="PPO",
        env_id="Pendulum-v1",
        nb_env=2,
        exp_length=64,
        epochs=2,
        minibatches=2,
        max_train_steps=1024,
        nb_eval_env=0,
        summary_frequency=1e-9,
        log_interval=1,
    )
    config_class = agent_config_class(TrainConfig, "PPO")
    reference = train_local(make_config(config_class, **settings, log_dir=str(tmp_path / "ref")))
    first = train_local(
        make_config(config_class, **{**settings, "max_train_steps": 512}, log_dir=str(tmp_path))
    )
    second = train_local(make_config(config_class, **settings, resume=str(first.run_dir)))
    assert (second.start_env_steps, second.env_steps) == (512, 1024)
    assert "log_std_action" in second.state.params["params"]
    _assert_same_state(second.state, reference.state)
    assert first.metrics + second.metrics == reference.metrics


_KILL_DURING_SAVE = textwrap.dedent(
    """
    import json, os, signal, sys
    from fnrl import checkpoint
    from fnrl.config import TrainConfig, agent_config_class, make_config
    from fnrl.parallel.local import train_local

    write = checkpoint._write_synced

    def write_then_die(path, data):
        if path.name == "state.msgpack" and path.parent.name.startswith(".step_2000"):
            with open(path, "wb") as f:  # half the file reaches the disk, then the process dies
                f.write(data[: len(data) // 2])
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        write(path, data)

    checkpoint._write_synced = write_then_die
    train_local(TrainConfig(**json.loads(sys.argv[1])))
    """
)


def test_run_killed_during_a_save_resumes_from_the_previous_checkpoint_exactly(tmp_path, reference):
    settings = {**SETTINGS, "epoch_len": 1000, "log_dir": str(tmp_path)}
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_DURING_SAVE, json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    checkpoints = run_dir / "checkpoints"
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step_400", "step_1200"]
    assert any(p.name.startswith(".step_2000.tmp") for p in checkpoints.iterdir())

    resumed = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "--resume", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "finished: 4000 steps" in resumed.stdout
    assert "resuming from" in resumed.stdout and "step_1200" in resumed.stdout
    ref = reference
    latest = latest_checkpoint(checkpoints)
    assert latest.name == "step_4000"
    restored, meta = load_checkpoint(latest, ref.state)
    _assert_same_state(restored, ref.state)
    assert meta["updates"] == 10
    assert not any(p.name.startswith(".") for p in checkpoints.iterdir())
    # tensorboard drops the steps the killed run logged past its checkpoint
    assert _logged(run_dir, "loss/policy_loss") == _logged(ref.run_dir, "loss/policy_loss")


def test_resume_without_exact_envs_warns_and_differs(tmp_path, stopped, reference):
    run_dir = _copy(stopped, tmp_path)
    config = TrainConfig(**SETTINGS, resume=str(run_dir), exact_resume=False)
    with pytest.warns(ResumeWarning, match="envs restart fresh"):
        result = train_local(dataclasses.replace(config, max_train_steps=2400))
    assert result.env_steps == 2400
    assert result.metrics != reference.metrics[5:6]
    assert "WARNING: --exact-resume is false" in (run_dir / "train_log.txt").read_text()


def test_resume_refuses_to_change_the_envs_or_the_network(tmp_path, stopped):
    run_dir = _copy(stopped, tmp_path)
    with pytest.raises(ValueError, match="--nb-env cannot change when resuming: the run used 16"):
        train_local(TrainConfig(**{**SETTINGS, "nb_env": 4}, resume=str(run_dir)))
    with pytest.raises(ValueError, match="--network-body cannot change"):
        train_local(TrainConfig(**{**SETTINGS, "network_body": "Linear"}, resume=str(run_dir)))


def test_resume_when_every_checkpoint_is_corrupt_names_the_newest_file(tmp_path, stopped):
    run_dir = _copy(stopped, tmp_path)
    for checkpoint in list_checkpoints(run_dir / "checkpoints"):
        state_file = checkpoint / "state.msgpack"
        os.truncate(state_file, state_file.stat().st_size // 3)
    newest = r"step_2000 is corrupt: state.msgpack does not match its checksum"
    with pytest.raises(CheckpointError, match=f"no checkpoint is intact; the newest: .*{newest}"):
        train_local(TrainConfig(**SETTINGS, resume=str(run_dir)))


def test_cli_resume_uses_the_stored_config_and_warns_about_overrides(tmp_path, stopped, capsys):
    run_dir = _copy(stopped, tmp_path)
    mode, config = parse_args(["--resume", str(run_dir), "-mts", "6000", "--nb-eval-env", "0"])
    stored = json.loads((run_dir / "config.json").read_text())
    assert mode == "local"
    expected = {**stored, "max_train_steps": 6000, "resume": str(run_dir)}
    assert config == make_config(TrainConfig, **expected)
    assert config.exp_length == 25 and config.nb_env == 16  # stored, not the CartPole preset
    err = capsys.readouterr().err
    assert "warning: --max-train-steps 6000 overrides the run's 2000" in err
    assert "--nb-eval-env" not in err  # same value as stored: no warning


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "fnrl.train", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_resume_errors_are_one_clear_line(tmp_path, stopped):
    missing = _cli("--resume", str(tmp_path / "nowhere"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "not a run directory" in missing.stderr
    run_dir = _copy(stopped, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    empty = _cli("--resume", str(run_dir))
    assert empty.returncode != 0 and "Traceback" not in empty.stderr
    assert "the run saved no checkpoint" in empty.stderr


def test_resume_refuses_a_meta_json_whose_mode_is_not_the_runs(tmp_path, stopped):
    run_dir = _copy(stopped, tmp_path)
    meta_file = latest_checkpoint(run_dir / "checkpoints") / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["meta_sha256"]  # as an older fnrl wrote it, without a checksum that would catch it
    meta_file.write_text(json.dumps({**meta, "mode": "impala"}))
    done = _cli("--resume", str(run_dir))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"fnrl.train: error: --resume {run_dir}: step_2000/meta.json says mode "
        "'impala', but config.json is a local run's (a corrupt meta.json?) (see -h)"
    ]


def test_resume_of_a_finished_run_says_so_in_one_line(tmp_path, stopped):
    """It replayed every step and printed '0 frames/s, bound by replay'."""
    run_dir = _copy(stopped, tmp_path)
    done = _cli("--resume", str(run_dir))
    assert (done.returncode, done.stderr.splitlines()) == (
        1,
        [
            f"fnrl.train: error: --resume {run_dir}: the run already finished its 2000 steps "
            "(--max-train-steps 2000); raise --max-train-steps to train on"
        ],
    )


@pytest.mark.parametrize(
    "flag, value, stored",
    [("--normalization", "layer", "'batch'"), ("--optimizer", "adam", "'rmsprop'")],
)
def test_cli_resume_refuses_a_changed_network_or_optimizer_in_one_line(
    tmp_path, stopped, flag, value, stored
):
    """They change the shapes of the saved state: refused before anything loads, with no
    warning that the flag overrides the stored value."""
    run_dir = _copy(stopped, tmp_path)
    done = _cli("--resume", str(run_dir), flag, value)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"fnrl.train: error: {flag} cannot change when resuming: the run used "
        f"{stored}, got {value!r} (see -h)"
    ]


@pytest.mark.parametrize(
    "env_id, frame_stack",
    [
        ("CartPole-v1", 4),  # envpool classic control
        ("BreakoutNoFrameskip-v4", 4),  # envpool Atari: life losses, no-op resets, frame stack
        ("FrozenLake-v1", 4),  # Gymnasium, slippery (random transitions from the env's seed)
        ("Pendulum-v1", 4),  # continuous actions, out of bounds half of the time
    ],
)
def test_replaying_the_action_log_restores_the_envs_exactly(env_id, frame_stack):
    rng = np.random.default_rng(0)
    env = ResumableEnv(make_env(env_id, 3, 7, frame_stack=frame_stack))
    spec = env.spec.actions["action"]

    def random_action():
        if is_continuous(spec):
            return rng.normal(0.0, 4.0, (3, *spec.shape)).astype(np.float32)
        return rng.integers(0, spec.num_values, 3).astype(np.int32)

    timestep, firsts = env.reset(), 0
    for _ in range(300):
        timestep = env.step({"action": random_action()})
        firsts += int(timestep.first.sum())
    env.close()
    assert firsts > 0  # episodes (or lives) ended and the envs reset themselves
    log = ActionLog(env.spec.actions, 3, env.log.arrays())
    dtype = np.float32 if is_continuous(spec) else np.uint8
    assert len(log) == 300 and log.arrays()["action"].dtype == dtype
    replay = ResumableEnv(make_env(env_id, 3, 7, frame_stack=frame_stack), log)
    replayed = replay.reset()
    try:
        assert timestep_fingerprint(replayed) == timestep_fingerprint(timestep)
        jax.tree.map(np.testing.assert_array_equal, replayed, timestep)
        # and the envs go on exactly as the originals would have
        assert replay.step({"action": random_action()}).obs.keys() == timestep.obs.keys()
        assert len(replay.log) == 301
    finally:
        replay.close()
    other_seed = ResumableEnv(make_env(env_id, 3, 8, frame_stack=frame_stack), log)
    try:
        assert timestep_fingerprint(other_seed.reset()) != timestep_fingerprint(timestep)
    finally:
        other_seed.close()
