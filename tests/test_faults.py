"""Injected faults: a run that diverges never saves a non-finite state, and says where it stopped.

The faults come in through the builder (``fnrl.parallel.build``'s optimizer and env factories):
an optimizer whose update turns the params into NaN at a chosen update, while that update's
loss and gradient stay finite (only the learner state's check sees it), and envs whose rewards
become NaN (the loss sees it).
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from saved_runs import untrained_run

from fnrl import evaluate, render
from fnrl.agents import Agent, LossOutput, make_update
from fnrl.agents.base import FINITE
from fnrl.checkpoint import (
    NonFiniteState,
    latest_good_checkpoint,
    list_checkpoints,
    save_checkpoint,
    verify_checkpoint,
)
from fnrl.config import ImpalaConfig, ToweredConfig, TrainConfig, make_config
from fnrl.parallel import build
from fnrl.parallel.build import RunHooks
from fnrl.parallel.impala import train_impala
from fnrl.parallel.local import train_local
from fnrl.parallel.run import TrainingDiverged, silent_run
from fnrl.parallel.towered import train_towered
from fnrl.types import TrainState


def nan_at(optimizer: optax.GradientTransformation, update: int) -> optax.GradientTransformation:
    """``optimizer``, except that its ``update``-th step (from 1) makes every param NaN."""

    def init(params):
        return optimizer.init(params), jnp.zeros((), jnp.int32)

    def step(grads, state, params=None):
        inner, count = state
        updates, inner = optimizer.update(grads, inner, params)
        updates = jax.tree.map(lambda u: jnp.where(count + 1 == update, jnp.nan, u), updates)
        return updates, (inner, count + 1)

    return optax.GradientTransformation(init, step)


def _diverging_optimizer(monkeypatch, update):
    make = build.make_training_optimizer
    monkeypatch.setattr(
        build, "make_training_optimizer", lambda config: nan_at(make(config), update)
    )


# 20 steps per update, a checkpoint every 2 updates (and after the first).
_SETTINGS = dict(
    env_id="CartPole-v1",
    nb_env=4,
    exp_length=5,
    epoch_len=40,
    max_train_steps=400,
    network_body="Linear",
    nb_eval_env=0,
)


def _assert_stopped_cleanly(tmp_path, error, update, last_good):
    """Only finite checkpoints up to ``last_good`` on disk; the error and the log name it."""
    (run_dir,) = tmp_path.glob("*/*")
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    assert checkpoints[-1].name == last_good
    for path in checkpoints:
        verify_checkpoint(path)  # intact and finite
    message = str(error)
    assert f"at update {update} " in message
    assert message.endswith(f"last good checkpoint: {checkpoints[-1]}")
    assert f"DIVERGED: {message}" in (run_dir / "train_log.txt").read_text().splitlines()


@pytest.mark.parametrize("rollout", ["compiled", "host"])
def test_params_turning_nan_with_a_finite_loss_stop_the_run_before_any_save(
    tmp_path, monkeypatch, rollout
):
    # Update 4 is the second of a compiled call of two (3 and 4) that ends in a save: its loss
    # and gradient are finite, its new params NaN.
    _diverging_optimizer(monkeypatch, update=4)
    config = TrainConfig(**_SETTINGS, rollout=rollout, log_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as error:
        train_local(config)
    _assert_stopped_cleanly(tmp_path, error.value, update=4, last_good="step_40")


def test_nan_rewards_stop_the_run_and_name_the_last_finite_checkpoint(tmp_path):
    make = build.make_training_env

    def nan_rewards_after_step_30(config, num_envs, seed):
        env = make(config, num_envs, seed)
        env_step, steps = env.step, []

        def step(action):
            steps.append(None)
            timestep = env_step(action)
            return (
                timestep if len(steps) <= 30 else timestep._replace(reward=timestep.reward * np.nan)
            )

        env.step = step
        return env

    config = TrainConfig(**_SETTINGS, rollout="host", log_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as error:
        train_local(config, hooks=RunHooks(make_env=nan_rewards_after_step_30))
    # vector step 31 is in update 7 (5 vector steps each); saves at 20, 40, 80 and 120 steps.
    _assert_stopped_cleanly(tmp_path, error.value, update=7, last_good="step_120")


@pytest.mark.slow  # 10 s; the two-device command line below covers towered mode too
def test_a_towered_run_stops_at_the_update_whose_params_went_nan(tmp_path, monkeypatch):
    _diverging_optimizer(monkeypatch, update=2)
    config = make_config(ToweredConfig, **_SETTINGS, log_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as error:
        train_towered(config)
    _assert_stopped_cleanly(tmp_path, error.value, update=2, last_good="step_20")


@pytest.mark.slow  # 6 s; the same run shell as local mode's
def test_an_impala_learner_stops_at_the_update_whose_params_went_nan(tmp_path, monkeypatch):
    _diverging_optimizer(monkeypatch, update=2)
    settings = dict(_SETTINGS, nb_actor=1, batch_size=1, log_dir=str(tmp_path))
    with pytest.raises(TrainingDiverged) as error:
        train_impala(make_config(ImpalaConfig, **settings))
    _assert_stopped_cleanly(tmp_path, error.value, update=2, last_good="step_20")


def test_every_towered_process_stops_at_the_same_update_on_a_nan_state(tmp_path):
    # A process other than 0 writes nothing but reads the same replicated check.
    run = silent_run(make_config(ToweredConfig, **_SETTINGS, log_dir=str(tmp_path)), "towered")
    run.record(None, {"loss": 1.0, FINITE: 1.0}, 20, [])
    with pytest.raises(TrainingDiverged, match="at update 2 .*process 0 names the last good"):
        run.record(None, {"loss": 1.0, FINITE: 0.0}, 20, [])
    assert run.budget.updates == 1


def test_the_update_reports_whether_its_new_state_is_finite():
    def loss(params, batch):
        return jnp.sum(params["params"]["w"] * batch), LossOutput(metrics={}, state={})

    agent = Agent(init=None, initial_carry=None, act=None, loss=loss)
    params = {"params": {"w": jnp.ones(3)}}
    for optimizer, expected in [(optax.sgd(0.1), 1.0), (nan_at(optax.sgd(0.1), 1), 0.0)]:
        state = TrainState(params, optimizer.init(params["params"]), jax.random.PRNGKey(0), 0)
        _, metrics = jax.jit(make_update(agent, optimizer))(state, jnp.ones(3))
        assert metrics[FINITE].dtype == jnp.float32 and float(metrics[FINITE]) == expected


def test_a_nan_state_is_never_written(tmp_path):
    state = TrainState({"params": {"w": np.array([1.0, np.inf], np.float32)}}, (), 0, 0)
    with pytest.raises(NonFiniteState, match=r"step_10 holds non-finite values \(state"):
        save_checkpoint(tmp_path, state, {}, env_steps=10)
    assert list(tmp_path.iterdir()) == []


def _poison(checkpoint):
    """Writes NaN into the params of ``checkpoint``, as an older fnrl could have saved them."""
    state = flax.serialization.msgpack_restore((checkpoint / "state.msgpack").read_bytes())
    state["params"] = jax.tree.map(lambda x: np.full_like(x, np.nan), state["params"])
    data = flax.serialization.msgpack_serialize(state)
    (checkpoint / "state.msgpack").write_bytes(data)
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["files"]["state.msgpack"] = hashlib.sha256(data).hexdigest()
    del meta["meta_sha256"]  # an older fnrl wrote no checksum of meta.json
    (checkpoint / "meta.json").write_text(json.dumps(meta))


def test_evaluate_and_render_refuse_a_nan_checkpoint_in_one_line(tmp_path, capsys):
    run_dir = untrained_run(tmp_path, env_id="CartPole-v1")
    (checkpoint,) = list_checkpoints(run_dir / "checkpoints")
    _poison(checkpoint)
    assert latest_good_checkpoint(run_dir / "checkpoints")[0] is None
    expected = f"checkpoint {checkpoint} holds non-finite values (params['params']"
    assert evaluate.main([str(run_dir), "--episodes", "1", "--nb-env", "1"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fnrl.evaluate: error: {expected}")
    assert render.main([str(run_dir), "--out", str(tmp_path / "v.gif")]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fnrl.render: error: {expected}")
    assert not (run_dir / "eval").exists() and not (tmp_path / "v.gif").exists()


_DIVERGING_CLI = textwrap.dedent(
    """
    import sys
    from fnrl.parallel import build
    from fnrl.train import main
    from test_faults import nan_at

    make = build.make_training_optimizer
    build.make_training_optimizer = lambda config: nan_at(make(config), 2)
    sys.exit(main(sys.argv[1:]))
    """
)


def test_a_diverging_two_device_towered_run_exits_non_zero_naming_its_last_checkpoint(tmp_path):
    flags = ["towered", "-n", "2", "--exp-length", "5", "-mts", "400", "-nb", "Linear"]
    flags += ["--epoch-len", "40", "--nb-eval-env", "0", "--log-dir", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, "-c", _DIVERGING_CLI, *flags],
        env={
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path]),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    (run_dir,) = tmp_path.glob("*/*")
    assert [p.name for p in list_checkpoints(run_dir / "checkpoints")] == ["step_20"]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("fnrl.train: error: non-finite loss, gradient or learner state at")
    assert error.endswith(f"last good checkpoint: {run_dir / 'checkpoints' / 'step_20'}")
