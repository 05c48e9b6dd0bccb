"""The builder: the parts of a run, what it closes, and a run shell that writes nothing."""

import inspect

import jax
import numpy as np
import pytest

from fnrl.agents import init_train_state, make_init
from fnrl.config import ToweredConfig, make_config
from fnrl.parallel import build
from fnrl.parallel.build import RunHooks, build_run
from fnrl.parallel.checkpointer import Checkpointer, NoCheckpoints
from fnrl.parallel.evaluation import Evaluations, NoEvaluations
from fnrl.parallel.phases import Episode
from fnrl.parallel.resume import ResumeWarning
from fnrl.parallel.run import TrainingRun, silent_run
from fnrl.parallel.runlog import RunLog, SilentLog


def _config(tmp_path, **settings):
    base = dict(
        env_id="CartPole-v1",
        nb_env=2,
        exp_length=5,
        max_train_steps=20,
        network_body="Linear",
        log_dir=str(tmp_path / "logs"),
    )
    return make_config(ToweredConfig, **{**base, **settings})


def test_a_process_that_does_not_write_leaves_no_file_and_prints_nothing(tmp_path, capsys):
    # An evaluation thread and a progress bar would each write if this run started them.
    config = _config(tmp_path, nb_eval_env=2, eval_every=0, resume=str(tmp_path / "process_0_run"))
    with build_run(
        config, "towered", num_envs=2, seeds=[0], writes=False, show_progress=True
    ) as parts:
        run = parts.run
        assert isinstance(run.log, SilentLog)
        fresh = parts.agent.initial_carry(2)
        with pytest.warns(ResumeWarning, match="process 0: resuming with the learner state"):
            state, carry = parts.start(fresh, "Devices: 1 over 1 process(es)")
        assert carry is fresh and run.evaluations.thread is None
        env = run.checkpointer.resumable_env(parts.envs[0])
        assert env is parts.envs[0]
        env.reset()
        updates = 0
        while not run.finished:
            with run.timer.phase("learner"):
                run.record(state, {"loss": 1.0}, 10, [Episode(1.0, 10)], carry=carry)
            updates += 1
        assert (updates, run.budget.updates, run.budget.env_steps) == (2, 2, 20)  # the budget
        assert run.timer.seconds["learner"] > 0
        result = run.finish(state, carry)
        assert (result.run_dir, result.last_checkpoint, result.updates) == (None, None, 2)
    assert list(tmp_path.iterdir()) == []
    assert capsys.readouterr() == ("", "")


def test_a_silent_run_stops_when_asked(tmp_path):
    run = silent_run(_config(tmp_path), "towered")
    assert not run.finished and run.updates_before_pause(5) == 4
    run.stop.set()
    assert run.finished


def test_the_writing_process_gets_a_training_run_and_the_envs_close_on_exit(tmp_path):
    made, closed = [], []
    make_env = build.make_training_env

    def recording_make_env(config, num_envs, seed):
        env = make_env(config, num_envs, seed)
        env_close = env.close

        def close():
            closed.append(seed)
            env_close()

        env.close = close
        made.append(env)
        return env

    config = _config(tmp_path, nb_eval_env=0)
    with build_run(
        config,
        "towered",
        num_envs=2,
        seeds=[3, 5],
        in_use=lambda env: env is made[0],
        hooks=RunHooks(make_env=recording_make_env),
    ) as parts:
        assert isinstance(parts.run, TrainingRun)
        assert [env.num_envs for env in parts.envs] == [2, 2]
        state, carry = parts.start()
        assert carry is None and int(state.step) == 0
        key = jax.random.PRNGKey(config.seed)
        same = init_train_state(parts.agent, parts.optimizer, key)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(same), strict=True):
            np.testing.assert_array_equal(a, b)  # seeded by config.seed
    assert closed == [5]  # the env in use stays open
    made[0].close()


@pytest.mark.parametrize(
    ("writing", "silent"),
    [(RunLog, SilentLog), (Checkpointer, NoCheckpoints), (Evaluations, NoEvaluations)],
)
def test_the_parts_that_write_nothing_have_the_methods_of_those_that_write(writing, silent):
    def public(cls):
        return {name: getattr(cls, name) for name in dir(cls) if not name.startswith("_")}

    def parameters(method):
        return list(inspect.signature(method).parameters.values())

    writing_names, silent_names = public(writing), public(silent)
    assert set(writing_names) <= set(silent_names), set(writing_names) - set(silent_names)
    for name, member in writing_names.items():
        if callable(member):
            assert parameters(member) == parameters(silent_names[name]), name


@pytest.mark.parametrize("flag, width", [((), 512), (("--hidden-size", "64"), 64)])
def test_hidden_size_is_the_width_of_the_networks_body(flag, width):
    """adept's 512 by default; the flag once did not exist, so no run could change it."""
    from fnrl.config import NetworkSettings
    from fnrl.train import parse_args

    _, config = parse_args(["--env-id", "CartPole-v1", *flag])
    env = build.make_training_env(config, 1, 0)
    network = build.make_network(config.section(NetworkSettings), env.spec)
    env.close()
    variables = jax.eval_shape(make_init(network, env.spec), jax.random.PRNGKey(0))
    body = variables["params"]["body"]
    assert {leaf.shape[-1] for leaf in jax.tree.leaves(body)} == {width}
