"""The V-trace agent: its loss against a Python loop, on-policy properties, compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from agent_helpers import (
    TABLE_SPEC,
    TableNetwork,
    assert_update_logs_explained_variance,
    episode_flags,
    log_softmax,
    table_trajectory,
)
from compilations import counted_compilations

from fnrl.agents import AGENTS, make_actor_critic, make_actor_critic_vtrace, make_update
from fnrl.agents.base import init_train_state
from fnrl.agents.vtrace import VtraceSettings
from fnrl.config import ImpalaConfig
from fnrl.networks import ModularNetwork
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.local import make_agent
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory

VECTOR_SPEC = EnvSpec({"obs": ArraySpec((4,), np.float32)}, {"action": DiscreteSpec(2)})


def _reference_vtrace_loss(logits, values, traj, discount, lam, entropy_coef, rho_bar, c_bar):
    """adept's ActorCriticVtrace loss as plain loops: the paper's recursion per env, with
    terminations (no bootstrap), truncations (trace cut) and the reset steps masked out; with
    the mean ratio and the [N, 2] (target, value) pairs of the N valid steps."""
    states = np.asarray(traj.obs["state"])
    T, B = traj.rewards.shape
    v = values[states]  # [T + 1, B]
    total_pg = total_v = total_ent = total_rho = 0.0
    count, fit = 0, []
    for b in range(B):
        vs_next = v[T, b]
        for t in reversed(range(T)):
            d = 0.0 if traj.terminated[t, b] else discount
            lam_t = 0.0 if traj.truncated[t, b] else lam
            a = traj.actions["action"][t, b]
            log_pi = log_softmax(logits[states[t, b]])
            log_mu = log_softmax(traj.behaviour_logits["action"][t, b])
            rho = np.exp(log_pi[a] - log_mu[a])
            delta = min(rho_bar, rho) * (traj.rewards[t, b] + d * v[t + 1, b] - v[t, b])
            vs = v[t, b] + delta + d * lam_t * min(c_bar, rho) * (vs_next - v[t + 1, b])
            q = traj.rewards[t, b] + d * (lam_t * vs_next + (1 - lam_t) * v[t + 1, b])
            advantage = min(1.0, rho) * (q - v[t, b])
            vs_next = vs
            if traj.first[t + 1, b]:
                continue  # the automatic reset step: no learning signal
            total_pg += -log_pi[a] * advantage
            total_v += 0.5 * (vs - v[t, b]) ** 2
            total_ent += np.sum(np.exp(log_pi) * log_pi)
            total_rho += rho
            count += 1
            fit.append((vs, v[t, b]))
    loss = (total_pg + total_v + entropy_coef * total_ent) / count
    return loss, total_rho / count, np.array(fit)


@pytest.mark.parametrize("lam, rho_bar, c_bar", [(1.0, 1.0, 1.0), (0.9, 1.0, 1.0), (1.0, 0.5, 2.0)])
def test_vtrace_loss_equals_python_loop_off_policy_with_episode_ends(lam, rho_bar, c_bar):
    traj = table_trajectory(np.random.default_rng(0), 8, 3, random_behaviour=True)
    assert traj.terminated.any() and traj.truncated.any() and traj.first[1:].any()
    agent = make_actor_critic_vtrace(
        TableNetwork(),
        TABLE_SPEC,
        discount=0.9,
        gae_lambda=lam,
        clip_rho_threshold=rho_bar,
        clip_c_threshold=c_bar,
    )
    params = agent.init(jax.random.PRNGKey(0))
    loss, aux = jax.jit(agent.loss)(params, traj)
    expected, importance, fit = _reference_vtrace_loss(
        np.asarray(params["params"]["logits"]),
        np.asarray(params["params"]["values"]),
        traj,
        discount=0.9,
        lam=lam,
        entropy_coef=0.01,
        rho_bar=rho_bar,
        c_bar=c_bar,
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux.metrics["importance"], importance, rtol=1e-5)
    assert aux.metrics["total_loss"] == loss
    assert loss.dtype == jnp.float32 and loss.shape == ()
    assert int(aux.count) == int((~traj.first[1:]).sum())
    # The update logs how much of the V-trace targets' variance the values explain (SB3's).
    assert_update_logs_explained_variance(agent, params, traj, fit)


def _on_policy(params, traj):
    """The trajectory as the table policy itself would have logged it."""
    logits = np.asarray(params["params"]["logits"])[np.asarray(traj.obs["state"])[:-1]]
    return traj._replace(behaviour_logits={"action": logits})


@pytest.mark.parametrize("lam", [1.0, 0.9])
def test_vtrace_loss_on_policy_equals_a2c_loss(lam):
    traj = table_trajectory(np.random.default_rng(1), 8, 3, random_behaviour=True)
    vtrace = make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC, gae_lambda=lam)
    a2c = make_actor_critic(TableNetwork(), TABLE_SPEC, gae_lambda=lam)
    params = vtrace.init(jax.random.PRNGKey(1))
    traj = _on_policy(params, traj)
    loss, aux = vtrace.loss(params, traj)
    a2c_loss, a2c_aux = a2c.loss(params, traj)
    np.testing.assert_allclose(aux.metrics["importance"], 1.0, rtol=1e-6)
    # Policy gradients: V-trace advantages on-policy are GAE(lambda), as A2C's.
    np.testing.assert_allclose(
        aux.metrics["policy_loss"], a2c_aux.metrics["policy_loss"], rtol=1e-5, atol=1e-6
    )
    if lam == 1.0:  # A2C's critic targets are lambda = 1 returns; V-trace's use lambda
        np.testing.assert_allclose(loss, a2c_loss, rtol=1e-5)


def test_off_policy_data_changes_the_loss_and_clipping_caps_the_ratios():
    traj = table_trajectory(np.random.default_rng(2), 8, 3, random_behaviour=True)
    agent = make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC)
    params = agent.init(jax.random.PRNGKey(2))
    on_policy = _on_policy(params, traj)
    # A behaviour policy under which every taken action was less likely: every ratio > 1.
    behaviour = np.asarray(on_policy.behaviour_logits["action"]).copy()
    taken = np.asarray(traj.actions["action"])[..., None]
    np.put_along_axis(behaviour, taken, np.take_along_axis(behaviour, taken, -1) - np.log(10.0), -1)
    off_policy = traj._replace(behaviour_logits={"action": behaviour.astype(np.float32)})
    on_loss, on_aux = agent.loss(params, on_policy)
    off_loss, off_aux = agent.loss(params, off_policy)
    assert off_aux.metrics["importance"] > 1.5
    # With every ratio clipped to 1, V-trace gives the on-policy estimate.
    np.testing.assert_allclose(off_loss, on_loss, rtol=1e-5)
    unclipped = make_actor_critic_vtrace(
        TableNetwork(), TABLE_SPEC, clip_rho_threshold=100.0, clip_pg_rho_threshold=100.0
    )
    assert abs(unclipped.loss(params, off_policy)[0] - off_loss) > 1e-3
    assert on_aux.metrics["importance"] == pytest.approx(1.0)


def test_reset_steps_do_not_change_the_loss():
    traj = table_trajectory(np.random.default_rng(3), 8, 3, random_behaviour=True)
    agent = make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC)
    params = agent.init(jax.random.PRNGKey(0))
    reset_step = traj.first[1:]
    assert reset_step.any()
    behaviour = np.where(reset_step[..., None], 5.0, traj.behaviour_logits["action"])
    changed = traj._replace(
        actions={"action": np.where(reset_step, 0, traj.actions["action"]).astype(np.int32)},
        rewards=np.where(reset_step, 100.0, traj.rewards).astype(np.float32),
        behaviour_logits={"action": behaviour.astype(np.float32)},
    )
    np.testing.assert_allclose(agent.loss(params, traj)[0], agent.loss(params, changed)[0], 1e-6)


def _act_trajectory(agent, params, rng, T=7, B=4, warmup=3):
    """A trajectory logged by acting step by step, with resets, starting from a warm carry."""
    act = jax.jit(agent.act)
    carry = agent.initial_carry(B)
    for t in range(warmup):  # the segment starts mid-episode, from a non-zero carry
        obs = {"obs": rng.normal(size=(B, 4)).astype(np.float32)}
        _, carry, _ = act(params, jax.random.PRNGKey(100 + t), carry, obs, np.zeros(B, bool))
    first, terminated, truncated = episode_flags(rng, T, B)
    first[0] = False
    obs = {"obs": rng.normal(size=(T + 1, B, 4)).astype(np.float32)}
    initial_carry, actions, logits = carry, [], []
    for t in range(T):
        obs_t = {"obs": obs["obs"][t]}
        action, carry, out = act(params, jax.random.PRNGKey(t), carry, obs_t, first[t])
        actions.append(np.asarray(action["action"]))
        logits.append(np.asarray(out.logits["action"]))
    return Trajectory(
        obs=obs,
        first=first,
        actions={"action": np.stack(actions)},
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        behaviour_logits={"action": np.stack(logits)},
        initial_carry=initial_carry,
    )


def test_recurrent_learner_recomputes_the_acting_policy_exactly():
    # The LSTM carry is stored at the segment start and reset where `first`: re-running the
    # network in the loss must give the logits that acted, so every ratio is 1.
    network = ModularNetwork(spec=VECTOR_SPEC, network_body="LSTM", normalize=True, hidden_size=16)
    agent = make_actor_critic_vtrace(network, VECTOR_SPEC)
    params = agent.init(jax.random.PRNGKey(0))
    traj = _act_trajectory(agent, params, np.random.default_rng(4))
    assert np.abs(np.asarray(traj.initial_carry[0])).max() > 0.01
    loss_fn = jax.jit(agent.loss)
    loss, aux = loss_fn(params, traj)
    np.testing.assert_allclose(aux.metrics["importance"], 1.0, atol=1e-5)
    a2c_loss, _ = jax.jit(make_actor_critic(network, VECTOR_SPEC).loss)(params, traj)
    np.testing.assert_allclose(loss, a2c_loss, rtol=1e-4)
    zero_carry = traj._replace(initial_carry=agent.initial_carry(4))
    _, wrong = loss_fn(params, zero_carry)
    assert abs(float(wrong.metrics["importance"]) - 1.0) > 1e-3


@pytest.mark.parametrize("body", ["LSTM", "Linear"])
def test_act_and_update_do_not_recompile(body):
    network = ModularNetwork(spec=VECTOR_SPEC, network_body=body, normalize=True, hidden_size=16)
    agent = make_actor_critic_vtrace(network, VECTOR_SPEC)
    optimizer = make_rmsprop(7e-4)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    act = jax.jit(agent.act)
    update = jax.jit(make_update(agent, optimizer), donate_argnums=0)
    rng = np.random.default_rng(0)
    carry = agent.initial_carry(4)
    compilations = []
    for i in range(2):
        with counted_compilations() as compiled:
            obs = {"obs": rng.normal(size=(4, 4)).astype(np.float32)}
            actions, carry, _ = act(
                state.params, jax.random.PRNGKey(i), carry, obs, np.ones(4, bool)
            )
            assert actions["action"].shape == (4,) and actions["action"].dtype == jnp.int32
            state, metrics = update(state, _act_trajectory(agent, state.params, rng, warmup=0))
        compilations.append(len(compiled))
    assert compilations[0] >= 2 and compilations[1] == 0  # act and update, compiled once
    assert int(state.step) == 2
    assert set(metrics) >= {"total_loss", "policy_loss", "value_loss", "importance", "grad_norm"}
    explained = metrics["explained_variance"]
    assert explained.dtype == jnp.float32 and explained.shape == () and np.isfinite(explained)


def test_update_lowers_the_loss_on_a_fixed_batch():
    network = ModularNetwork(
        spec=VECTOR_SPEC, network_body="Linear", normalize=False, hidden_size=16
    )
    agent = make_actor_critic_vtrace(network, VECTOR_SPEC)
    optimizer = make_rmsprop(1e-3)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    traj = _act_trajectory(agent, state.params, np.random.default_rng(5), warmup=0)
    update = jax.jit(make_update(agent, optimizer))
    losses = []
    for _ in range(50):
        state, metrics = update(state, traj)
        losses.append(float(metrics["total_loss"]))
    assert losses[-1] < losses[0] - 0.5


def test_registered_and_built_from_a_config():
    assert AGENTS["ActorCriticVtrace"].settings is VtraceSettings
    config = ImpalaConfig(network_body="Linear", normalize=False)
    assert config.agent == "ActorCriticVtrace"
    agent = make_agent(config, VECTOR_SPEC)
    params = agent.init(jax.random.PRNGKey(0))
    traj = _act_trajectory(agent, params, np.random.default_rng(6), warmup=0)
    assert agent.loss(params, traj)[1].metrics["importance"] == pytest.approx(1.0, abs=1e-5)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="discount"):
        make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC, discount=1.5)
    with pytest.raises(ValueError, match="tau"):
        make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC, gae_lambda=-0.1)
    with pytest.raises(ValueError, match="clip_c_threshold"):
        make_actor_critic_vtrace(TableNetwork(), TABLE_SPEC, clip_c_threshold=-1.0)
