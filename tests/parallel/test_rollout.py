"""The compiled rollout and trainer against the host loop: same trajectories, same semantics."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fnrl.agents import (
    ActOutput,
    init_train_state,
    make_actor_critic,
    make_update,
    sample_actions,
)
from fnrl.config import ImpalaConfig, TrainConfig, make_config
from fnrl.distributions import Gaussian
from fnrl.envs import make_env
from fnrl.networks import ModularNetwork
from fnrl.parallel.impala import train_impala
from fnrl.parallel.local import train_local
from fnrl.parallel.resume import ResumableEnv
from fnrl.parallel.rollout import (
    CompiledTrainer,
    HostTrainer,
    PhaseTimer,
    collect,
    make_compiled_rollout,
    make_trainer,
)
from fnrl.specs import DiscreteSpec, is_continuous


def _random_act(spec):
    """A policy that samples random actions from its key and counts steps since ``first``.

    Discrete actions are uniform; continuous ones Gaussian with a standard deviation of
    ``2 * (high - low)``, so that most fall outside the bounds. Both rollouts derive the same
    per-step keys, so they send the same actions; the carry shows where each path reset it.
    """

    def act(params, key, carry, obs, first):
        del params, obs
        if is_continuous(spec):
            scale = 2.0 * (np.asarray(spec.high) - np.asarray(spec.low))
            shape = (*first.shape, *spec.shape)
            policy = Gaussian(jnp.zeros(shape), jnp.broadcast_to(jnp.log(scale), shape))
        else:
            policy = jnp.zeros((*first.shape, spec.num_values), jnp.float32)
        actions = sample_actions(key, {"action": policy})
        carry = jnp.where(first, 0, carry) + 1
        return actions, carry, ActOutput({"action": policy}, carry.astype(jnp.float32))

    return act


def _host_and_compiled(env_id, num_envs, length, segments, **env_options):
    """``segments`` rollouts of each path on fresh envs with the same seeds."""
    results = []
    for compiled in (False, True):
        env = make_env(env_id, num_envs, seed=3, **env_options)
        act = _random_act(env.spec.actions["action"])
        timestep, carry = env.reset(), jnp.zeros(num_envs, jnp.int32)
        if compiled:
            handle, step = env.xla()
            rollout = jax.jit(make_compiled_rollout(step, act, length))
        jit_act = jax.jit(act)
        segments_out = []
        for index in range(segments):
            key = jax.random.PRNGKey(index)
            if compiled:
                handle, trajectory, timestep, carry, _ = rollout(handle, None, key, timestep, carry)
            else:
                result = collect(env, jit_act, None, key, timestep, carry, length, PhaseTimer())
                trajectory, timestep, carry = result.trajectory, result.timestep, result.carry
            segments_out.append((trajectory, timestep, carry))
        env.close()
        results.append(jax.device_get(segments_out))
    return results


def _assert_trees_equal(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize(
    "env_id, options",
    [
        ("CartPole-v1", dict(max_episode_steps=15)),  # terminations and truncations
        ("PongNoFrameskip-v4", dict(max_episode_steps=12, frame_stack=4)),  # frame stacks
        ("BreakoutNoFrameskip-v4", dict(frame_stack=2)),  # life losses within a game
        ("Pendulum-v1", dict(max_episode_steps=25)),  # continuous actions
    ],
)
def test_compiled_rollout_gives_the_host_loops_trajectory(env_id, options):
    length, segments = 60 if "NoFrameskip" in env_id else 30, 3
    host, compiled = _host_and_compiled(env_id, 4, length, segments, **options)
    assert len(host) == len(compiled) == segments
    _assert_trees_equal(host, compiled)  # trajectories, last TimeSteps and carries
    trajectories = [segment[0] for segment in compiled]
    first = np.concatenate([t.first[1:] for t in trajectories])
    ended = np.concatenate([t.terminated | t.truncated for t in trajectories])
    # The segments exercised what the semantics are about: episode ends and carry resets.
    assert first.any() and ended.any()
    carry_starts = np.concatenate([t.initial_carry[None] for t in trajectories])
    assert carry_starts.shape == (segments, 4)
    if env_id != "BreakoutNoFrameskip-v4":
        assert np.concatenate([t.truncated for t in trajectories]).any()
    if env_id == "CartPole-v1":
        assert np.concatenate([t.terminated for t in trajectories]).any()
    if env_id == "BreakoutNoFrameskip-v4":
        # Life losses terminate for learning; the 5-life game goes on.
        terminated = np.concatenate([t.terminated for t in trajectories])
        assert terminated.any()


def test_continuous_actions_are_clipped_on_the_way_to_the_env_only():
    """The trajectory keeps the sampled actions, outside the bounds; the env got them clipped:
    replaying the clipped actions on fresh envs reproduces the trajectory's observations."""
    (trajectory, _, _), *_ = _host_and_compiled("Pendulum-v1", 4, 30, 1)[1]
    sampled = np.asarray(trajectory.actions["action"])
    assert sampled.dtype == np.float32 and sampled.shape == (30, 4, 1)
    assert (np.abs(sampled) > 2.0).mean() > 0.5  # Pendulum's torque is in [-2, 2]
    env = make_env("Pendulum-v1", 4, seed=3)
    env.reset()
    for t in range(30):
        obs = env.step({"action": np.clip(sampled[t], -2.0, 2.0)}).obs
        np.testing.assert_array_equal(obs["obs"], trajectory.obs["obs"][t + 1])
    env.close()


def test_compiled_rollout_episode_statistics_equal_the_host_loops():
    env_id, num_envs, length = "CartPole-v1", 4, 40
    host_returns, compiled_returns = [], []
    for compiled in (False, True):
        env = make_env(env_id, num_envs, seed=0, max_episode_steps=25)
        act = _random_act(DiscreteSpec(2))
        timestep, carry = env.reset(), jnp.zeros(num_envs, jnp.int32)
        key = jax.random.PRNGKey(7)
        if compiled:
            handle, step = env.xla()
            rollout = jax.jit(make_compiled_rollout(step, act, length))
            _, _, _, _, stats = jax.device_get(rollout(handle, None, key, timestep, carry))
            compiled_returns = list(
                zip(stats.returns[stats.done], stats.length[stats.done], strict=True)
            )
        else:
            result = collect(env, jax.jit(act), None, key, timestep, carry, length, PhaseTimer())
            host_returns = [(e.returns, e.length) for e in result.episodes]
        env.close()
    assert len(host_returns) >= 4
    assert [(float(r), int(n)) for r, n in compiled_returns] == host_returns


def _cartpole_agent_and_state(num_envs):
    env = make_env("CartPole-v1", num_envs, seed=0)
    network = ModularNetwork(spec=env.spec, network_body="Linear", normalize=False)
    agent = make_actor_critic(network, env.spec)
    optimizer = optax.rmsprop(1e-3, eps_in_sqrt=False)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    return env, agent, make_update(agent, optimizer), state


def _train(env, trainer, state, counts):
    timestep, carry, first_update, metrics, episodes = env.reset(), (), 0, [], []
    for count in counts:
        state, timestep, carry, results = trainer(state, timestep, carry, first_update, count)
        first_update += count
        metrics += [r.metrics for r in results]
        episodes += [e for r in results for e in r.episodes]
    return jax.device_get(state), metrics, episodes


def test_compiled_updates_do_not_depend_on_how_they_are_split_into_calls():
    outcomes = []
    for counts in ([6], [1, 2, 3], [4, 1, 1]):
        env, agent, update, state = _cartpole_agent_and_state(8)
        trainer = CompiledTrainer(env, agent.act, update, 10, PhaseTimer(), capacity=6)
        outcomes.append(_train(env, trainer, state, counts))
        env.close()
    reference = outcomes[0]
    assert len(reference[1]) == 6 and reference[2]  # six updates; some episodes ended
    for outcome in outcomes[1:]:
        _assert_trees_equal(outcome[0], reference[0])
        assert outcome[1] == reference[1]
        assert outcome[2] == reference[2]


def test_compiled_trainer_learns_like_the_host_trainer():
    """Same keys, same env semantics: the first update's losses agree to float32 rounding."""
    metrics = []
    for trainer_class in (HostTrainer, CompiledTrainer):
        env, agent, update, state = _cartpole_agent_and_state(8)
        trainer = trainer_class(env, agent.act, update, 10, PhaseTimer())
        metrics.append(_train(env, trainer, state, [1])[1][0])
        env.close()
    host, compiled = metrics
    assert host.keys() == compiled.keys()
    for name in host:
        np.testing.assert_allclose(compiled[name], host[name], rtol=1e-5, atol=1e-6)


def test_compiled_trainer_records_the_actions_it_sent_and_compiles_once():
    env, agent, update, state = _cartpole_agent_and_state(4)
    env = ResumableEnv(env)
    trainer = CompiledTrainer(env, agent.act, update, 5, PhaseTimer(), capacity=4)
    timestep = env.reset()
    state, timestep, carry, _ = trainer(state, timestep, (), 0, 1)
    compilations = []

    def count_compilations(event, seconds, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compilations.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(count_compilations)
    try:
        state, timestep, carry, results = trainer(state, timestep, carry, 1, 3)
    finally:
        jax.monitoring.unregister_event_duration_listener(count_compilations)
    assert compilations == []  # another count, same executable
    assert len(results) == 3 and len(env.log) == 4 * 5
    assert env.last is timestep
    env.close()


def test_make_trainer_picks_compiled_for_envpool_and_host_otherwise():
    timer = PhaseTimer()
    env, agent, update, _ = _cartpole_agent_and_state(2)
    assert isinstance(make_trainer("auto", env, agent.act, update, 5, timer), CompiledTrainer)
    assert isinstance(make_trainer("host", env, agent.act, update, 5, timer), HostTrainer)
    assert CompiledTrainer(env, agent.act, update, 5, timer).capacity == 64
    env.close()
    # On the CPU, conv gradients run far slower inside a loop: one update per call.
    pong = make_env("PongNoFrameskip-v4", 2, seed=0)
    assert CompiledTrainer(pong, agent.act, update, 5, timer).capacity == 1
    pong.close()
    gym_env = make_env("Taxi-v4", 2, seed=0)
    assert isinstance(make_trainer("auto", gym_env, agent.act, update, 5, timer), HostTrainer)
    with pytest.raises(ValueError, match="--rollout compiled: it needs envpool envs"):
        make_trainer("compiled", gym_env, agent.act, update, 5, timer)
    gym_env.close()


@pytest.mark.parametrize("config_class", [TrainConfig, ImpalaConfig])
def test_a_compiled_rollout_of_a_gymnasium_env_is_refused_before_anything_is_written(
    tmp_path, config_class
):
    config = make_config(config_class, env_id="Taxi-v4", rollout="compiled", log_dir=str(tmp_path))
    train = train_local if config_class is TrainConfig else train_impala
    with pytest.raises(ValueError, match="--rollout compiled: it needs envpool envs"):
        train(config)
    assert not list(tmp_path.iterdir())
