"""An agent that keeps its own experience trains, checkpoints and resumes through the modes.

The agent below is written here, against fnrl's public API only: one-step Q-learning (Watkins
1989) from a replay buffer of the last K transitions (``fnrl.replay``, Mnih et al. 2015),
with an epsilon-greedy behaviour policy. It declares its data path (``fnrl.agents.DataPath``):
its learner step adds each collected segment to the buffer it keeps in
``TrainState.agent_state`` and takes one gradient step on a uniform sample of it. Nothing of
the modes, the run shell or the checkpoints knows about it; it trains through
``fnrl.train.main`` in local mode, its buffer is a checkpoint piece, and a stopped and resumed
run ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fnrl.agents import AGENTS, ActOutput, Agent, AgentPlugin, DataPath, make_init, register_agent
from fnrl.agents.base import FINITE, learner_key, sample_actions
from fnrl.checkpoint import list_checkpoints, read_meta
from fnrl.replay import make_uniform_replay
from fnrl.settings import setting
from fnrl.train import main

AGENT = "ReplayQ"
CAPACITY = 512  # transitions kept: the last 512 of 16 envs x 4 steps per segment


@dataclass(frozen=True)
class ReplayQSettings:
    """The Q-learner's own settings."""

    discount: float = setting(0.99, "discount factor gamma", "--discount", at_least=0.0)
    epsilon: float = setting(
        0.1, "probability of a uniformly random action", "--epsilon", at_least=0.0, at_most=1.0
    )
    sample_size: int = setting(64, "transitions per gradient step", "--sample-size", at_least=1)


def _transitions(trajectory):
    """The segment's ``[T * B]`` transitions; a step that was an env's reset has ``valid`` 0."""
    flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
    return {
        "obs": jax.tree.map(lambda o: flat(o[:-1]), trajectory.obs),
        "next_obs": jax.tree.map(lambda o: flat(o[1:]), trajectory.obs),
        "action": flat(trajectory.actions["action"]),
        "reward": flat(trajectory.rewards),
        "terminal": flat(trajectory.terminated).astype(jnp.float32),
        "valid": flat(~trajectory.first[1:]).astype(jnp.float32),
    }


def make_replay_q(network, spec, config) -> Agent:
    """One-step Q-learning from a replay buffer; Q(s, .) is the network's action logits."""
    buffer = make_uniform_replay(CAPACITY, config.sample_size)

    def q_values(params, obs):
        first = jnp.zeros(jax.tree.leaves(obs)[0].shape[:1], bool)
        (_, output), _ = network.apply(params, (), obs, first, train=True, mutable=["batch_stats"])
        return output.logits["action"]

    def act(params, key, carry, obs, first):
        del first
        q = q_values(params, obs)
        greedy = jax.nn.one_hot(jnp.argmax(q, -1), q.shape[-1])
        probs = config.epsilon / q.shape[-1] + (1 - config.epsilon) * greedy
        logits = {"action": jnp.log(probs)}
        return sample_actions(key, logits), carry, ActOutput(logits, q.max(-1))

    def loss(params, batch):
        q = jnp.take_along_axis(q_values(params, batch["obs"]), batch["action"][:, None], -1)
        next_q = jax.lax.stop_gradient(q_values(params, batch["next_obs"]).max(-1))
        target = batch["reward"] + config.discount * (1 - batch["terminal"]) * next_q
        error = batch["valid"] * (q[:, 0] - target)
        return jnp.sum(error**2) / jnp.maximum(batch["valid"].sum(), 1.0)

    def init_state(params):
        example = jax.tree.map(lambda x: x[0], _transitions(_example_trajectory(spec)))
        return {"replay": buffer.init(example)}

    def make_update(agent, optimizer, *, axis_name=None):
        del agent, axis_name  # one device

        def update(state, trajectory):
            replay = buffer.add(state.agent_state["replay"], _transitions(trajectory))
            batch = buffer.sample(replay, learner_key(state))
            value, grads = jax.value_and_grad(lambda p: loss({**state.params, "params": p}, batch))(
                state.params["params"]
            )
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params["params"])
            params = {
                **state.params,
                "params": optax.apply_updates(state.params["params"], updates),
            }
            finite = jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(params)]))
            metrics = {"td_loss": value, "replay_size": replay.size, FINITE: finite}
            new = state._replace(
                params=params,
                opt_state=opt_state,
                step=state.step + 1,
                agent_state={"replay": replay},
            )
            return new, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)

        return update

    return Agent(
        make_init(network, spec),
        network.initial_carry,
        act,
        loss=None,
        data_path=DataPath(init=init_state, make_update=make_update),
    )


def _example_trajectory(spec):
    """A one-step segment of one env with ``spec``'s shapes, for the buffer's item structure."""
    from fnrl.types import Trajectory

    obs = {k: jnp.zeros((2, 1, *s.shape), s.dtype) for k, s in spec.observations.items()}
    return Trajectory(
        obs=obs,
        first=jnp.zeros((2, 1), bool),
        actions={"action": jnp.zeros((1, 1), jnp.int32)},
        rewards=jnp.zeros((1, 1)),
        terminated=jnp.zeros((1, 1), bool),
        truncated=jnp.zeros((1, 1), bool),
        behaviour_logits={},
        initial_carry=(),
    )


PLUGIN = AgentPlugin(
    make_replay_q,
    ReplayQSettings,
    defaults={"learning_rate": 1e-3, "optimizer": "adam"},
    help="one-step Q-learning from a replay buffer (a test agent)",
)

FLAGS = [
    "local",
    "--agent",
    AGENT,
    "-n",
    "16",
    "--exp-length",
    "4",
    "--zscore-norm-env",
    "false",
    "--epoch-len",
    "2048",
    "--eval-every",
    "0",
    "-sf",
    "1000",
]


@pytest.fixture(scope="module", autouse=True)
def registered():
    register_agent(AGENT, PLUGIN)
    yield
    del AGENTS[AGENT]


def _train(log_dir, *more):
    assert main([*FLAGS, "--log-dir", str(log_dir), *more]) == 0
    (run_dir,) = (log_dir / "CartPole-v1").iterdir()
    return run_dir


def _last(run_dir):
    return list_checkpoints(run_dir / "checkpoints")[-1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("whole"), "-mts", "4096")


def test_the_buffer_is_a_checkpoint_piece_that_fills_and_wraps(uninterrupted):
    checkpoint = _last(uninterrupted)
    assert read_meta(checkpoint)["env_steps"] == 4096
    saved = flax.serialization.msgpack_restore((checkpoint / "replay.msgpack").read_bytes())
    # 4096 transitions went in: the buffer is full and has wrapped round 8 times to slot 0.
    assert (int(saved["size"]), int(saved["position"])) == (CAPACITY, 0)
    assert saved["items"]["obs"]["obs"].shape == (CAPACITY, 4)
    assert np.abs(saved["items"]["obs"]["obs"]).sum() > 0  # real observations, not zeros


def test_a_stopped_and_resumed_run_ends_bit_for_bit_as_an_uninterrupted_one(
    uninterrupted, tmp_path
):
    stopped = _train(tmp_path / "parts", "-mts", "2048")
    assert read_meta(_last(stopped))["env_steps"] == 2048
    assert main(["--resume", str(stopped), "-mts", "4096"]) == 0
    whole, resumed = _last(uninterrupted), _last(stopped)
    assert resumed.name == whole.name == "step_4096"
    for piece in ("state.msgpack", "replay.msgpack", "env_actions.npz"):
        assert (resumed / piece).read_bytes() == (whole / piece).read_bytes(), piece


def test_a_resume_without_its_buffer_is_refused_with_one_line(uninterrupted, tmp_path, capsys):
    run_dir = tmp_path / uninterrupted.name
    shutil.copytree(uninterrupted, run_dir)
    for checkpoint in list_checkpoints(run_dir / "checkpoints"):
        (checkpoint / "replay.msgpack").unlink()
    capsys.readouterr()
    assert main(["--resume", str(run_dir), "-mts", "8192"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the budget's warning
    assert error.startswith("fnrl.train: error: ") and "replay.msgpack" in error, error


@pytest.mark.parametrize("mode", ["towered", "impala"])
def test_the_other_modes_call_the_same_data_path(tmp_path, mode):
    flags = [mode, *FLAGS[1:], "-n", "4", "-mts", "1024", "--log-dir", str(tmp_path)]
    assert main(flags) == 0
    (run_dir,) = (tmp_path / "CartPole-v1").iterdir()
    checkpoint = _last(run_dir)
    saved = flax.serialization.msgpack_restore((checkpoint / "replay.msgpack").read_bytes())
    assert int(saved["size"]) == min(CAPACITY, read_meta(checkpoint)["env_steps"])
