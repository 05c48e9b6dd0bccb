"""Action masks, for any env that declares them: values an observation masks are never chosen,
and an action the env did not use adds exactly nothing to any agent's loss or gradient.

The spec is StarCraft II's shape in small: a function head ``fn`` masked by the observation
``allowed``, and an argument head ``arg`` that only function 1 takes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from agent_helpers import episode_flags

from fnrl.agents import make_actor_critic, make_actor_critic_vtrace, make_ppo
from fnrl.agents.base import unroll
from fnrl.distributions import joint_log_prob, used_actions
from fnrl.networks import ModularNetwork
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec
from fnrl.types import Trajectory

FUNCTIONS, ARGUMENTS = 4, 5
TAKES_ARG = (False, True, False, True)  # functions 1 and 3 take the argument
SPEC = EnvSpec(
    {
        "x": ArraySpec((6,), np.dtype(np.float32)),
        "allowed": ArraySpec((FUNCTIONS,), np.dtype(bool)),
    },
    {
        "fn": DiscreteSpec(FUNCTIONS, mask="allowed"),
        "arg": DiscreteSpec(ARGUMENTS, used_when=("fn", TAKES_ARG)),
    },
)
AGENTS = {
    "ActorCritic": lambda net: make_actor_critic(net, SPEC),
    "ActorCriticVtrace": lambda net: make_actor_critic_vtrace(net, SPEC),
    "PPO": lambda net: make_ppo(net, SPEC),
}


def _network():
    return ModularNetwork(SPEC, network_body="Linear", normalize=False)


def _allowed(rng, shape):
    allowed = rng.random((*shape, FUNCTIONS)) < 0.5
    allowed[..., 0] = True  # the no-op is always available
    return allowed


def _trajectory(rng, network, params, fn, T=6, B=8):
    first, terminated, truncated = episode_flags(rng, T, B)
    obs = {
        "x": rng.normal(size=(T + 1, B, 6)).astype(np.float32),
        "allowed": np.ones((T + 1, B, FUNCTIONS), bool),
    }
    carry, output = jax.vmap(lambda o, f: network.apply(params, (), o, f, train=False))(obs, first)
    return Trajectory(
        obs=obs,
        first=first,
        actions={"fn": fn, "arg": rng.integers(0, ARGUMENTS, (T, B)).astype(np.int32)},
        rewards=rng.normal(size=(T, B)).astype(np.float32),
        terminated=terminated,
        truncated=truncated,
        behaviour_logits=jax.tree.map(lambda x: x[:-1] + 0.1, output.logits),
        initial_carry=(),
    )


def _loss(agent, params, trajectory):
    batch = trajectory if agent.prepare is None else agent.prepare(params, trajectory)[0]
    (loss, _), grads = jax.value_and_grad(agent.loss, has_aux=True)(params, batch)
    return loss, grads["params"]


def test_masked_functions_are_never_sampled_nor_chosen_greedily():
    network = _network()
    agent = make_actor_critic(network, SPEC)
    params = agent.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    obs = {"x": rng.normal(size=(4096, 6)).astype(np.float32), "allowed": _allowed(rng, (4096,))}
    first = np.ones(4096, bool)
    act = jax.jit(agent.act)
    for step in range(3):  # 12,288 sampled steps
        actions, _, out = act(params, jax.random.key(step), (), obs, first)
        chosen = np.asarray(actions["fn"])
        assert obs["allowed"][np.arange(4096), chosen].all()
        assert np.isneginf(np.asarray(out.logits["fn"])[~obs["allowed"]]).all()
    # every allowed function does get sampled: the mask removes only what it should
    assert len(np.unique(chosen)) == FUNCTIONS
    _, output = network.apply(params, (), obs, first, train=False)
    greedy = np.asarray(jnp.argmax(output.logits["fn"], -1))
    assert obs["allowed"][np.arange(4096), greedy].all()
    # the learner's unroll masks as acting did
    sequence = jax.tree.map(lambda x: np.stack([x, x]), obs)
    outputs, _ = unroll(network, params, (), sequence, np.stack([first, first]))
    assert np.isneginf(np.asarray(outputs.logits["fn"])[:, ~obs["allowed"]]).all()
    assert np.isfinite(np.asarray(outputs.logits["fn"])[:, obs["allowed"]]).all()


def test_an_unused_argument_counts_zero_in_the_joint_log_prob():
    rng = np.random.default_rng(1)
    fn = np.array([0, 1, 2, 3])
    policies = {
        "fn": jnp.asarray(rng.normal(size=(4, FUNCTIONS))),
        "arg": jnp.asarray(rng.normal(size=(4, ARGUMENTS))),
    }
    actions = {"fn": jnp.asarray(fn), "arg": jnp.array([4, 3, 2, 1])}
    used = used_actions(SPEC.actions, actions)
    assert used["fn"] is None and np.asarray(used["arg"]).tolist() == list(TAKES_ARG)
    log_fn = jax.nn.log_softmax(policies["fn"])[np.arange(4), fn]
    log_arg = jax.nn.log_softmax(policies["arg"])[np.arange(4), [4, 3, 2, 1]]
    want = log_fn + np.where(TAKES_ARG, log_arg, 0.0)
    np.testing.assert_allclose(joint_log_prob(policies, actions, used), want, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_an_argument_no_chosen_function_takes_adds_nothing_to_loss_or_gradient(name):
    network = _network()
    agent = AGENTS[name](network)
    params = agent.init(jax.random.key(1))
    rng = np.random.default_rng(2)
    T, B = 6, 8
    # Functions 0 and 2 only: the argument head is never used.
    unused = rng.choice([0, 2], (T, B)).astype(np.int32)
    trajectory = _trajectory(rng, network, params, unused, T, B)
    loss, grads = _loss(agent, params, trajectory)
    head = grads["head_arg"]
    assert all(np.all(np.asarray(g) == 0.0) for g in jax.tree.leaves(head)), head
    # Other argument values: the same loss and gradients, bit for bit.
    other = trajectory._replace(
        actions={**trajectory.actions, "arg": (trajectory.actions["arg"] + 1) % ARGUMENTS}
    )
    other_loss, other_grads = _loss(agent, params, other)
    assert other_loss == loss
    jax.tree.map(np.testing.assert_array_equal, other_grads, grads)

    # Where a chosen function takes it, the argument head learns: the mask is not a constant 0.
    some = trajectory._replace(actions={**trajectory.actions, "fn": np.ones((T, B), np.int32)})
    _, grads = _loss(agent, params, some)
    assert any(np.any(np.asarray(g) != 0.0) for g in jax.tree.leaves(grads["head_arg"]))


def test_a_mask_or_rule_that_does_not_fit_the_spec_is_refused():
    bad_mask = SPEC._replace(actions={**SPEC.actions, "fn": DiscreteSpec(3, mask="allowed")})
    with pytest.raises(ValueError, match="masked by observation 'allowed'.*a \\(3,\\) array"):
        ModularNetwork(bad_mask)
    bad_rule = SPEC._replace(
        actions={**SPEC.actions, "arg": DiscreteSpec(ARGUMENTS, used_when=("fn", (True,)))}
    )
    with pytest.raises(ValueError, match="'fn' must be a discrete action with 1 values"):
        ModularNetwork(bad_rule)
