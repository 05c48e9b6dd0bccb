"""``scan_apply`` replays a one-step network over time; ``mean_over_steps`` reduces its writes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks import mean_over_steps, scan_apply


class CountingSum(nn.Module):
    """Adds ``scale * x`` to a carry reset at episode starts and counts its calls in
    ``batch_stats``: a hand-checkable step."""

    @nn.compact
    def __call__(self, carry, x, first, *, train, scale=1.0):
        del train
        calls = self.variable("batch_stats", "calls", jnp.zeros, (), jnp.float32)
        if self.is_mutable_collection("batch_stats") and not self.is_initializing():
            calls.value = calls.value + 1.0
        carry = jnp.where(first, 0.0, carry) + scale * x
        return carry, 10.0 * carry


@pytest.mark.parametrize("jit", [False, True])
def test_scan_apply_equals_a_python_loop_and_returns_every_steps_writes(jit):
    network = CountingSum()
    x = np.arange(1.0, 7.0, dtype=np.float32).reshape(3, 2)  # [T=3, B=2]
    first = np.array([[True, True], [False, True], [True, False]])
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(2), x[0], first[0], train=False)
    run = jax.jit(scan_apply, static_argnums=0) if jit else scan_apply
    outputs, updates = run(network, params, jnp.zeros(2), x, first, scale=2.0)

    carry, want = np.zeros(2, np.float32), []
    for t in range(3):
        carry = np.where(first[t], 0.0, carry) + 2.0 * x[t]
        want.append(10.0 * carry)
    np.testing.assert_array_equal(outputs, np.stack(want))
    # Each step sees the params' statistics (0 calls) and writes 1.
    np.testing.assert_array_equal(updates["batch_stats"]["calls"], np.ones(3, np.float32))


def test_scan_apply_writes_nothing_outside_mutable():
    network = CountingSum()
    x, first = np.ones((2, 1), np.float32), np.zeros((2, 1), bool)
    params = network.init(jax.random.PRNGKey(0), jnp.zeros(1), x[0], first[0], train=False)
    outputs, updates = scan_apply(network, params, jnp.zeros(1), x, first, mutable=())
    assert updates == {}
    np.testing.assert_array_equal(outputs, [[10.0], [20.0]])


def test_mean_over_steps_averages_every_leaf_over_its_leading_axis():
    updates = {
        "batch_stats": {"mean": np.array([[1.0, 2.0], [3.0, 6.0]]), "n": np.array([1.0, 2.0])}
    }
    averaged = mean_over_steps(updates)
    np.testing.assert_array_equal(averaged["batch_stats"]["mean"], [2.0, 4.0])
    np.testing.assert_array_equal(averaged["batch_stats"]["n"], 1.5)
    assert mean_over_steps({}) == {}
