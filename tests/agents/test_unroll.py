"""``fnrl.agents.unroll``: a network's own ``unroll`` when it has one, else step by step."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.agents import unroll
from fnrl.networks import ModularNetwork, NetworkOutput
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

T, B, D = 5, 3, 4


class RunningSumNetwork(nn.Module):
    """Not a ``ModularNetwork`` and no ``unroll`` of its own: a batch-normalized Dense whose
    outputs a carry sums over the episode, so every step depends on the steps before it."""

    @nn.compact
    def __call__(self, carry, obs, first, *, train):
        x = nn.Dense(D)(obs["x"])
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        carry = jnp.where(first[:, None], 0.0, carry) + x
        return carry, NetworkOutput({"action": nn.Dense(2)(carry)}, nn.Dense(1)(carry)[:, 0])

    def initial_carry(self, batch_size):
        return jnp.zeros((batch_size, D), jnp.float32)


class SelfUnrollingNetwork(RunningSumNetwork):
    """Unrolls itself: returns a marker that the generic path could not produce."""

    @nn.nowrap
    def unroll(self, params, carry, obs, first):
        value = jnp.full(first.shape, 7.0) + jnp.sum(carry)
        return NetworkOutput({"action": jnp.zeros((*first.shape, 2))}, value), {"own": first}


def _step(obs, t):
    return jax.tree.map(lambda x: x[t], obs)


def _sequence(rng):
    obs = {"x": rng.normal(size=(T, B, 3)).astype(np.float32)}
    first = rng.random((T, B)) < 0.3
    first[0] = True
    return obs, first


@pytest.mark.parametrize("jit", [False, True])
def test_a_network_without_its_own_unroll_runs_step_by_step(jit):
    """Outputs equal applying the network step by step with the carry passed along, and the
    statistics move once, by the mean of what the steps would write."""
    rng = np.random.default_rng(0)
    network = RunningSumNetwork()
    assert not hasattr(network, "unroll")
    obs, first = _sequence(rng)
    params = network.init(
        jax.random.PRNGKey(0), network.initial_carry(B), _step(obs, 0), first[0], train=False
    )
    run = jax.jit(unroll, static_argnums=0) if jit else unroll
    outputs, state = run(network, params, network.initial_carry(B), obs, first)

    carry, values, logits, writes = network.initial_carry(B), [], [], []
    for t in range(T):
        (carry, out), written = network.apply(
            params,
            carry,
            _step(obs, t),
            first[t],
            train=True,
            mutable=["batch_stats"],
        )
        values.append(out.value)
        logits.append(out.logits["action"])
        writes.append(written)
    assert outputs.value.shape == (T, B) and outputs.logits["action"].shape == (T, B, 2)
    np.testing.assert_allclose(outputs.value, np.stack(values), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(outputs.logits["action"], np.stack(logits), rtol=1e-5, atol=1e-6)
    mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *writes)
    assert jax.tree.structure(state) == jax.tree.structure(mean)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(mean), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The statistics moved: the generic path returns what the steps wrote, not the params'.
    before = params["batch_stats"]["BatchNorm_0"]["mean"]
    assert not np.allclose(state["batch_stats"]["BatchNorm_0"]["mean"], before)


def test_a_network_with_its_own_unroll_is_unrolled_by_it():
    rng = np.random.default_rng(1)
    network = SelfUnrollingNetwork()
    obs, first = _sequence(rng)
    params = network.init(
        jax.random.PRNGKey(0), network.initial_carry(B), _step(obs, 0), first[0], train=False
    )
    carry = network.initial_carry(B) + 1.0
    outputs, state = unroll(network, params, carry, obs, first)
    np.testing.assert_array_equal(outputs.value, np.full((T, B), 7.0 + B * D))
    np.testing.assert_array_equal(state["own"], first)


def test_a_modular_network_is_unrolled_by_its_own_unroll():
    """``fnrl.agents.unroll`` gives exactly ``ModularNetwork.unroll``'s outputs and
    collections, masks and observation statistics included."""
    spec = EnvSpec(
        {"x": ArraySpec((3,), np.float32), "allowed": ArraySpec((2,), np.dtype(bool))},
        {"action": DiscreteSpec(2, mask="allowed")},
    )
    network = ModularNetwork(spec, network_body="Linear", hidden_size=8, zscore_norm_env=True)
    rng = np.random.default_rng(2)
    obs, first = _sequence(rng)
    allowed = rng.random((T, B, 2)) < 0.5
    allowed[..., 0] = True
    obs = {**obs, "allowed": allowed}
    params = network.init(jax.random.PRNGKey(0), (), _step(obs, 0), first[0], train=False)
    outputs, state = unroll(network, params, (), obs, first)
    own_outputs, own_state = network.unroll(params, (), obs, first)
    for got, want in zip(
        jax.tree.leaves((outputs, state)), jax.tree.leaves((own_outputs, own_state)), strict=True
    ):
        np.testing.assert_array_equal(got, want)
    assert set(state) == {"batch_stats", "obs_stats"}
    assert np.all(np.isneginf(outputs.logits["action"]) == ~allowed)
