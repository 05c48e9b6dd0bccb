"""Bodies and LSTM cells: equations against numpy references, carry reset, inits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks import (
    IdentityBody,
    LinearBody,
    LSTMBody,
    LSTMCarry,
    LSTMCell,
    LSTMCellLayerNorm,
    Mnih2013Linear,
    Mnih2013LSTM,
    RMCBody,
    RMCCarry,
    reset_carry,
)

B, D, H = 3, 5, 4


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, D)).astype(np.float32)
    c = rng.normal(size=(B, H)).astype(np.float32)
    h = rng.normal(size=(B, H)).astype(np.float32)
    return x, LSTMCarry(c=c, h=h)


def _random_params(params, seed):
    """Replace every leaf by random values so zero-initialized biases are exercised too."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef, [jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, leaves, strict=True)]
    )


def test_lstm_cell_matches_torch_lstm_cell_equations():
    x, carry = _inputs()
    cell = LSTMCell(H)
    params = _random_params(cell.init(jax.random.key(0), carry, x)["params"], seed=1)
    new = jax.jit(cell.apply)({"params": params}, carry, x)

    p = jax.tree.map(np.asarray, params)
    gates = x @ p["ih"]["kernel"] + p["ih"]["bias"] + carry.h @ p["hh"]["kernel"] + p["hh"]["bias"]
    i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
    c_ref = _sigmoid(f) * carry.c + _sigmoid(i) * np.tanh(g)
    h_ref = _sigmoid(o) * np.tanh(c_ref)
    np.testing.assert_allclose(new.c, c_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new.h, h_ref, rtol=1e-5, atol=1e-5)


def test_layer_norm_lstm_cell_matches_adept_equations():
    x, carry = _inputs()
    cell = LSTMCellLayerNorm(H)
    params = _random_params(cell.init(jax.random.key(0), carry, x)["params"], seed=2)
    new = jax.jit(cell.apply)({"params": params}, carry, x)

    p = jax.tree.map(np.asarray, params)
    pre = x @ p["ih"]["kernel"] + p["ih"]["bias"] + carry.h @ p["hh"]["kernel"] + p["hh"]["bias"]
    gates = _sigmoid(pre[:, : 3 * H])  # [i, f, o | g]
    i, f, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
    g = np.tanh(pre[:, 3 * H :])
    c = f * carry.c + i * g
    c_norm = (c - c.mean(-1, keepdims=True)) / np.sqrt(c.var(-1, keepdims=True) + 1e-5)
    c_ref = c_norm * p["ln_cell"]["scale"] + p["ln_cell"]["bias"]
    h_ref = o * np.tanh(c_ref)
    np.testing.assert_allclose(new.c, c_ref, rtol=1e-5, atol=1e-5)  # carried normalized
    np.testing.assert_allclose(new.h, h_ref, rtol=1e-5, atol=1e-5)


def test_lstm_cell_init_is_uniform_inverse_sqrt_hidden_with_zero_biases():
    hidden = 64
    x = jnp.zeros((1, 300))
    carry = LSTMBody.initial_carry(1, hidden)
    params = LSTMCell(hidden).init(jax.random.key(0), carry, x)["params"]
    bound = 1 / math.sqrt(hidden)  # torch.nn.LSTMCell: U(±1/sqrt(hidden)) for both weights
    for name in ("ih", "hh"):
        assert np.abs(params[name]["kernel"]).max() <= bound
        assert np.abs(params[name]["kernel"]).max() > 0.9 * bound
        np.testing.assert_array_equal(params[name]["bias"], 0.0)  # adept fills biases with 0


def test_layer_norm_lstm_cell_init_is_torch_linear_default_with_zero_biases():
    hidden, features = 64, 300
    carry = LSTMBody.initial_carry(1, hidden)
    params = LSTMCellLayerNorm(hidden).init(jax.random.key(0), carry, jnp.zeros((1, features)))
    params = params["params"]
    for name, fan_in in (("ih", features), ("hh", hidden)):  # torch.nn.Linear defaults
        assert np.abs(params[name]["kernel"]).max() <= 1 / math.sqrt(fan_in)
        assert np.abs(params[name]["kernel"]).max() > 0.9 / math.sqrt(fan_in)
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
    np.testing.assert_array_equal(params["ln_cell"]["scale"], 1.0)
    np.testing.assert_array_equal(params["ln_cell"]["bias"], 0.0)


def test_reset_carry_zeroes_exactly_the_first_rows():
    carry = LSTMCarry(c=jnp.ones((4, 3)), h=jnp.full((4, 3), 2.0))
    first = jnp.array([True, False, True, False])
    reset = jax.jit(reset_carry)(carry, first)
    np.testing.assert_array_equal(reset.c, [[0.0] * 3, [1.0] * 3, [0.0] * 3, [1.0] * 3])
    np.testing.assert_array_equal(reset.h, [[0.0] * 3, [2.0] * 3, [0.0] * 3, [2.0] * 3])
    assert reset_carry((), first) == ()


@pytest.mark.parametrize("normalize", [True, False])
def test_lstm_body_returns_h_and_zero_initial_carry(normalize):
    body = LSTMBody(hidden_size=H, normalize=normalize)
    carry = LSTMBody.initial_carry(B, H)
    assert isinstance(carry, LSTMCarry)
    for leaf in carry:
        assert leaf.shape == (B, H) and leaf.dtype == jnp.float32
        np.testing.assert_array_equal(leaf, 0.0)
    x, _ = _inputs()
    variables = body.init(jax.random.key(0), carry, x, train=False)
    new_carry, out = body.apply(variables, carry, x, train=False)
    np.testing.assert_array_equal(out, new_carry.h)
    assert LSTMBody.recurrent


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_body_shapes_and_bias(normalize):
    body = LinearBody(hidden_size=8, normalize=normalize)
    x, _ = _inputs()
    variables = body.init(jax.random.key(0), (), x, train=False)
    carry, out = body.apply(variables, (), x, train=False)
    assert carry == () and out.shape == (B, 8) and out.dtype == jnp.float32
    assert ("bias" in variables["params"]["linear"]) is not normalize
    assert ("bn_linear" in variables.get("batch_stats", {})) is normalize
    assert not LinearBody.recurrent and LinearBody.initial_carry(B, 8) == ()


def test_identity_body_passes_features_through():
    x, _ = _inputs()
    carry, out = IdentityBody().apply({}, (), x, train=True)
    assert carry == ()
    np.testing.assert_array_equal(out, x)
    assert not IdentityBody.recurrent and IdentityBody.initial_carry(B, 8) == ()


@pytest.mark.parametrize("normalize", [True, False])
def test_mnih2013_bodies_are_256_wide_whatever_the_hidden_size(normalize):
    x = jnp.ones((2, 2592))
    linear = Mnih2013Linear(hidden_size=64, normalize=normalize)
    variables = linear.init(jax.random.key(0), (), x, train=False)
    carry, out = linear.apply(variables, (), x, train=False)
    assert carry == () and out.shape == (2, 256) and bool(jnp.all(out >= 0))
    assert ("bias" in variables["params"]["linear"]) is not normalize

    lstm = Mnih2013LSTM(hidden_size=64, normalize=normalize)
    carry = Mnih2013LSTM.initial_carry(2, 64)
    assert carry.c.shape == carry.h.shape == (2, 256)
    variables = lstm.init(jax.random.key(0), carry, x, train=False)
    params = variables["params"]
    assert params["linear"]["kernel"].shape == (2592, 256)
    assert "bias" in params["linear"]  # adept's Mnih2013LSTM keeps it even with BatchNorm
    assert ("ln_cell" in params["lstm"]) is normalize
    new, out = lstm.apply(variables, carry, x, train=False)
    np.testing.assert_array_equal(out, new.h)
    assert Mnih2013LSTM.recurrent and not Mnih2013Linear.recurrent


def test_reset_carry_to_a_given_initial_state():
    carry = RMCCarry(memory=jnp.full((3, 2, 2), 5.0))
    initial = RMCBody.initial_carry(3, 8)
    assert initial.memory.shape == (3, 4, 2)
    carry = RMCCarry(memory=jnp.full((3, 4, 2), 5.0))
    reset = jax.jit(reset_carry)(carry, jnp.array([False, True, False]), initial)
    np.testing.assert_array_equal(reset.memory[1], np.eye(4, 2))
    np.testing.assert_array_equal(reset.memory[0], 5.0)


def test_rmc_body_outputs_the_flattened_memory():
    body = RMCBody(hidden_size=16, nb_head=2)
    carry = RMCBody.initial_carry(2, 16)
    x = jnp.ones((2, 7))
    variables = body.init(jax.random.key(0), carry, x, train=False)
    new, out = body.apply(variables, carry, x, train=False)
    assert new.memory.shape == (2, 4, 4) and out.shape == (2, 16)
    np.testing.assert_array_equal(out, new.memory.reshape(2, 16))
    assert variables["params"]["rmc"]["attention"]["qk_projection"]["kernel"].shape == (4, 8)
    with pytest.raises(ValueError, match="divisible by 4 \\* nb_head = 12"):
        RMCBody(hidden_size=16, nb_head=3)
