"""The A2C agent: its loss against a Python loop, unrolling, compilation, batch norm."""

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

from fnrl.agents import make_act, make_actor_critic, make_update, unroll
from fnrl.agents.base import init_train_state
from fnrl.networks import ModularNetwork
from fnrl.optimizers import make_rmsprop
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory


def _reference_a2c_loss(logits, values, traj, discount, lam, entropy_coef):
    """adept's A2C loss written as plain loops, with truncation and reset-step masking, and the
    [N, 2] (return, value) pairs of the N valid steps."""
    states = np.asarray(traj.obs["state"])
    T, B = traj.rewards.shape
    v = values[states]  # [T + 1, B]
    total_pg = total_v = total_ent = 0.0
    count, fit = 0, []
    for b in range(B):
        ret = v[T, b]
        adv = 0.0
        for t in reversed(range(T)):
            d = 0.0 if traj.terminated[t, b] else discount
            cut = 0.0 if traj.truncated[t, b] else 1.0
            ret = traj.rewards[t, b] + d * ((1 - cut) * v[t + 1, b] + cut * ret)
            delta = traj.rewards[t, b] + d * v[t + 1, b] - v[t, b]
            adv = delta + d * lam * cut * adv
            if traj.first[t + 1, b]:
                continue  # the automatic reset step: no learning signal
            logp = log_softmax(logits[states[t, b]])
            total_pg += -logp[traj.actions["action"][t, b]] * adv
            total_v += 0.5 * (ret - v[t, b]) ** 2
            total_ent += np.sum(np.exp(logp) * logp)
            count += 1
            fit.append((ret, v[t, b]))
    return (total_pg + total_v + entropy_coef * total_ent) / count, np.array(fit)


@pytest.mark.parametrize("lam", [1.0, 0.9])
def test_a2c_loss_equals_python_loop_with_truncation_and_resets(lam):
    rng = np.random.default_rng(0)
    traj = table_trajectory(rng, 7, 3, random_behaviour=False)
    agent = make_actor_critic(TableNetwork(), TABLE_SPEC, discount=0.9, gae_lambda=lam)
    params = agent.init(jax.random.PRNGKey(0))
    loss, aux = jax.jit(agent.loss)(params, traj)
    expected, fit = _reference_a2c_loss(
        np.asarray(params["params"]["logits"]),
        np.asarray(params["params"]["values"]),
        traj,
        discount=0.9,
        lam=lam,
        entropy_coef=0.01,
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert aux.metrics["total_loss"] == loss
    assert loss.dtype == jnp.float32 and loss.shape == ()
    # The update logs how much of the n-step returns' variance the values explain (SB3's).
    assert_update_logs_explained_variance(agent, params, traj, fit)


def test_a2c_loss_without_gae_uses_n_step_advantages():
    traj = table_trajectory(np.random.default_rng(1), 7, 3, random_behaviour=False)
    with_gae = make_actor_critic(TableNetwork(), TABLE_SPEC, gae_lambda=1.0)
    without = make_actor_critic(TableNetwork(), TABLE_SPEC, gae_lambda=0.5, use_gae=False)
    params = with_gae.init(jax.random.PRNGKey(3))
    # GAE with lambda = 1 is the n-step advantage, whatever lambda the n-step agent was given
    np.testing.assert_allclose(without.loss(params, traj)[0], with_gae.loss(params, traj)[0], 1e-6)


def test_reset_steps_do_not_change_the_loss():
    rng = np.random.default_rng(2)
    traj = table_trajectory(rng, 7, 3, random_behaviour=False)
    agent = make_actor_critic(TableNetwork(), TABLE_SPEC)
    params = agent.init(jax.random.PRNGKey(0))
    reset_step = traj.first[1:]
    assert reset_step.any()
    changed = traj._replace(
        actions={"action": np.where(reset_step, 0, traj.actions["action"]).astype(np.int32)},
        rewards=np.where(reset_step, 100.0, traj.rewards).astype(np.float32),
    )
    np.testing.assert_allclose(agent.loss(params, traj)[0], agent.loss(params, changed)[0], 1e-6)


def _vector_setup(body="LSTM", normalize=True, B=4):
    spec = EnvSpec({"obs": ArraySpec((4,), np.float32)}, {"action": DiscreteSpec(2)})
    network = ModularNetwork(spec=spec, network_body=body, normalize=normalize, hidden_size=16)
    agent = make_actor_critic(network, spec)
    return spec, network, agent


def _random_trajectory(agent, rng, T=6, B=4):
    first, terminated, truncated = episode_flags(rng, T, B)
    return Trajectory(
        obs={"obs": rng.normal(size=(T + 1, B, 4)).astype(np.float32)},
        first=first,
        actions={"action": rng.integers(0, 2, (T, B)).astype(np.int32)},
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        behaviour_logits={"action": np.zeros((T, B, 2), np.float32)},
        initial_carry=agent.initial_carry(B),
    )


@pytest.mark.parametrize("body", ["LSTM", "Linear"])  # scanned over time; all steps at once
def test_unroll_equals_acting_step_by_step_with_resets(body):
    _, network, agent = _vector_setup(body)
    params = agent.init(jax.random.PRNGKey(0))
    traj = _random_trajectory(agent, np.random.default_rng(0))
    outputs, _ = unroll(network, params, traj.initial_carry, traj.obs, traj.first)
    act = jax.jit(make_act(network))
    carry = traj.initial_carry
    for t in range(traj.first.shape[0]):
        obs_t = {"obs": traj.obs["obs"][t]}
        _, carry, out = act(params, jax.random.PRNGKey(t), carry, obs_t, traj.first[t])
        np.testing.assert_allclose(outputs.value[t], out.value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            outputs.logits["action"][t], out.logits["action"], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    ("normalization", "trunk", "layer"),
    [
        ("running", "Identity", ("body", "bn_linear", "linear")),
        ("running", "Linear", ("trunk_obs", "bn1", "linear1")),
        ("batch", "Linear", ("trunk_obs", "bn1", "linear1")),
    ],
)
def test_unroll_normalizes_every_step_as_acting_did_and_moves_the_statistics_once(
    normalization, trunk, layer
):
    """The trunks run on all steps at once and the body step by step; either way every step
    computes what acting computed, and the layer whose input is the observation (``layer``:
    module, batch norm, Dense) moves its statistics once, towards the steps' mean statistics."""
    spec = EnvSpec({"obs": ArraySpec((4,), np.float32)}, {"action": DiscreteSpec(2)})
    network = ModularNetwork(
        spec,
        discrete_network=trunk,
        network_body="Linear",
        hidden_size=16,
        normalization=normalization,
    )
    agent = make_actor_critic(network, spec)
    params = agent.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    # Past the first update (count 3), so that "running" normalizes with these statistics.
    params["batch_stats"] = jax.tree.map(
        lambda v: (
            np.float32(3.0)
            if v.ndim == 0
            else (rng.uniform(0.5, 2.0, v.shape) if v.mean() == 1 else rng.normal(size=v.shape))
        ),
        params["batch_stats"],
    )
    traj = _random_trajectory(agent, rng)
    outputs, state = unroll(network, params, traj.initial_carry, traj.obs, traj.first)
    act = jax.jit(make_act(network))
    for t in range(traj.first.shape[0]):
        _, _, out = act(
            params, jax.random.PRNGKey(t), (), {"obs": traj.obs["obs"][t]}, traj.first[t]
        )
        np.testing.assert_allclose(outputs.value[t], out.value, rtol=1e-5, atol=1e-6)
    # One moving-average step (torch's momentum 0.1) towards the mean of the steps' batch
    # statistics, the variance unbiased as torch's.
    module, norm, dense = layer
    pre = traj.obs["obs"].astype(np.float64) @ np.asarray(params["params"][module][dense]["kernel"])
    before = params["batch_stats"][module][norm]
    moved = state["batch_stats"][module][norm]
    expected_mean = 0.9 * before["mean"] + 0.1 * pre.mean(axis=1).mean(axis=0)
    expected_var = 0.9 * before["var"] + 0.1 * pre.var(axis=1, ddof=1).mean(axis=0)
    np.testing.assert_allclose(moved["mean"], expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(moved["var"], expected_var, rtol=1e-5, atol=1e-6)
    counts = jax.tree.leaves(jax.tree.map(lambda v: v if v.ndim == 0 else None, state))
    assert counts and all(float(c) == 4.0 for c in counts)


@pytest.mark.parametrize("body", ["LSTM", "Linear"])
def test_act_and_update_do_not_recompile(body):
    spec, _, agent = _vector_setup(body)
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
            state, metrics = update(state, _random_trajectory(agent, rng))
        compilations.append(len(compiled))
    assert compilations[0] >= 2 and compilations[1] == 0  # act and update, compiled once
    assert int(state.step) == 2
    assert set(metrics) >= {"total_loss", "policy_loss", "value_loss", "entropy_loss", "grad_norm"}
    explained = metrics["explained_variance"]
    assert explained.dtype == jnp.float32 and explained.shape == () and np.isfinite(explained)


def test_batch_norm_statistics_change_in_update_never_in_act():
    spec = EnvSpec({"obs": ArraySpec((4,), np.float32)}, {"action": DiscreteSpec(2)})
    network = ModularNetwork(spec=spec, network_body="Linear", normalize=True, hidden_size=16)
    agent = make_actor_critic(network, spec)
    optimizer = make_rmsprop(7e-4)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    assert "batch_stats" in state.params
    before = jax.tree.map(np.array, state.params["batch_stats"])
    obs = {"obs": np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)}
    agent.act(state.params, jax.random.PRNGKey(0), (), obs, np.ones(4, bool))
    jax.tree.map(np.testing.assert_array_equal, before, state.params["batch_stats"])
    traj = _random_trajectory(agent, np.random.default_rng(1))
    state, _ = make_update(agent, optimizer)(state, traj)
    changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), before, state.params["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))


def test_update_lowers_the_loss_on_a_fixed_batch():
    _, _, agent = _vector_setup("Linear", normalize=False)
    optimizer = make_rmsprop(1e-3)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(0))
    traj = _random_trajectory(agent, np.random.default_rng(0))
    update = jax.jit(make_update(agent, optimizer))
    losses = []
    for _ in range(50):
        state, metrics = update(state, traj)
        losses.append(float(metrics["total_loss"]))
    assert losses[-1] < losses[0] - 0.5
    assert all(np.diff(losses) < 0)


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="discount"):
        make_actor_critic(TableNetwork(), TABLE_SPEC, discount=1.5)
    with pytest.raises(ValueError, match="tau"):
        make_actor_critic(TableNetwork(), TABLE_SPEC, gae_lambda=-0.1)
