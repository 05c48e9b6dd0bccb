"""Local mode end to end: reproducibility, the step budget, logs and checkpoints."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from fnrl.checkpoint import list_checkpoints, load_checkpoint, load_piece, read_meta
from fnrl.config import TrainConfig, make_config, with_agent_settings
from fnrl.parallel.local import train_local


def _scalars(run_dir, tag):
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return (
        [(e.step, e.value) for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []
    )


def test_same_seed_same_metrics_and_other_seed_differs(tmp_path):
    config = TrainConfig(
        env_id="CartPole-v1",
        nb_env=8,
        exp_length=10,
        max_train_steps=8 * 10 * 4,
        log_dir=str(tmp_path),
    )
    first = train_local(config)
    second = train_local(config)
    other = train_local(dataclasses.replace(config, seed=1))
    assert len(first.metrics) == 4
    assert first.metrics == second.metrics
    assert first.episode_returns == second.episode_returns
    assert first.metrics != other.metrics


def test_budget_stops_at_first_update_boundary_past_it(tmp_path):
    config = TrainConfig(
        env_id="CartPole-v1",
        nb_env=4,
        exp_length=5,
        max_train_steps=50,  # 2.5 updates of 20 steps: the run does 3
        network_body="Linear",
        log_dir=str(tmp_path),
    )
    result = train_local(config)
    assert (result.updates, result.env_steps, result.frames) == (3, 60, 60)
    # checkpoints: after the first update and at the end
    checkpoints = list_checkpoints(result.run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["step_20", "step_60"]
    # what exact resume needs: the actions of all 15 vector steps of the 4 envs, one byte each
    first, last = (load_piece(p, "env_actions")["action"] for p in checkpoints)
    assert first.shape == (5, 4) and last.shape == (15, 4) and last.dtype == np.uint8
    np.testing.assert_array_equal(last[:5], first)
    assert set(np.unique(last)) <= {0, 1}
    meta = read_meta(checkpoints[-1])
    assert (meta["mode"], meta["env_steps"], meta["updates"], meta["frames"]) == (
        "local",
        60,
        3,
        60,
    )


def test_pong_run_writes_config_events_and_a_loadable_checkpoint(tmp_path):
    config = TrainConfig(
        env_id="PongNoFrameskip-v4",
        nb_env=4,
        exp_length=20,
        max_train_steps=240,
        nb_eval_env=0,  # its compile would dominate this short run
        log_dir=str(tmp_path),
    )
    result = train_local(config)
    assert result.env_steps == 240 and result.frames == 960  # frame skip 4
    run_dir = result.run_dir
    assert run_dir.parent.name == "PongNoFrameskip-v4"
    stored = json.loads((run_dir / "config.json").read_text())
    assert stored == with_agent_settings(config).to_dict()  # A2C's settings included
    assert "STEP: 240" in (run_dir / "train_log.txt").read_text()
    for tag in ("macro_loss/total_loss", "loss/policy_loss", "loss/value_loss", "metric/grad_norm"):
        steps = [step for step, _ in _scalars(run_dir, tag)]
        assert steps and steps[-1] == 240, tag
    latest = list_checkpoints(run_dir / "checkpoints")[-1]
    restored, meta = load_checkpoint(latest, result.state)
    jax.tree.map(np.testing.assert_array_equal, restored, jax.device_get(result.state))
    assert meta["env_steps"] == 240 and meta["updates"] == 3


# The learning test of local mode (the CartPole preset reaches 475) is in tests/test_evaluate.py,
# which evaluates and renders the run it trains.


@pytest.mark.slow
def test_cartpole_with_normalize_reaches_475_within_500k_steps(tmp_path):
    config = make_config(normalize=True, nb_eval_env=0, log_dir=str(tmp_path))
    assert config.normalization == "layer"  # the classic-control preset's normalization
    result = train_local(config)
    last = result.episode_returns[-20:]
    assert len(last) == 20 and np.mean(last) >= 475, np.mean(last)
