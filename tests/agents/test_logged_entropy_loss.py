"""The logged entropy loss is weighted by the entropy coefficient, as adept logs it."""

import jax
import numpy as np
import pytest
from agent_helpers import TABLE_SPEC, TableNetwork, log_softmax, table_trajectory

from fnrl.agents import make_actor_critic, make_actor_critic_vtrace, make_ppo

FACTORIES = {
    "ActorCritic": make_actor_critic,
    "ActorCriticVtrace": make_actor_critic_vtrace,
    "PPO": make_ppo,
}


def _logged_losses(name, entropy_coef):
    """The metrics of one loss on a fixed table trajectory, and that trajectory."""
    traj = table_trajectory(np.random.default_rng(0), 6, 4, random_behaviour=True)
    agent = FACTORIES[name](TableNetwork(), TABLE_SPEC, entropy_coef=entropy_coef)
    params = agent.init(jax.random.PRNGKey(0))
    batch = traj if agent.prepare is None else jax.jit(agent.prepare)(params, traj)[0]
    _, aux = jax.jit(agent.loss)(params, batch)
    return jax.device_get(aux.metrics), params, traj


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_logged_entropy_loss_is_the_coefficient_times_the_negative_entropy(name):
    metrics, params, traj = _logged_losses(name, entropy_coef=0.05)
    logp = log_softmax(np.asarray(params["params"]["logits"])[np.asarray(traj.obs["state"])[:-1]])
    valid = ~np.asarray(traj.first[1:])  # the automatic-reset steps carry no signal
    negative_entropy = (np.exp(logp) * logp).sum(-1)[valid].mean()
    np.testing.assert_allclose(metrics["entropy_loss"], 0.05 * negative_entropy, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_logged_entropy_loss_scales_with_the_coefficient_and_nothing_else_does(name):
    low, _, _ = _logged_losses(name, entropy_coef=0.01)
    high, _, _ = _logged_losses(name, entropy_coef=0.04)
    np.testing.assert_allclose(high["entropy_loss"], 4 * low["entropy_loss"], rtol=1e-5)
    np.testing.assert_allclose(high["policy_loss"], low["policy_loss"], rtol=1e-6)
    np.testing.assert_allclose(high["value_loss"], low["value_loss"], rtol=1e-6)
    if name != "PPO":  # PPO weights its value loss; the A2C losses sum to the total as logged
        total = high["policy_loss"] + high["value_loss"] + high["entropy_loss"]
        np.testing.assert_allclose(high["total_loss"], total, rtol=1e-5)
