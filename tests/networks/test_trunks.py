"""Vision and vector trunks: feature sizes, parameter layout, flatten order."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks import (
    FourConv,
    FourConvLarger,
    IdentityTrunk,
    LinearTrunk,
    Mnih2013,
    Nature,
    flatten_chw,
)


def _trunk_shapes(trunk, x_shape):
    """(output ShapeDtypeStruct, variables shapes) without running any convolution."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    return jax.eval_shape(lambda x: trunk.init_with_output(jax.random.key(0), x, train=False), x)


@pytest.mark.parametrize(
    ("trunk_cls", "features"),
    [(FourConv, 800), (Nature, 3136), (Mnih2013, 2592), (FourConvLarger, 3200)],
)
@pytest.mark.parametrize("normalize", [True, False])
def test_vision_trunk_feature_size_for_84x84(trunk_cls, features, normalize):
    out, _ = _trunk_shapes(trunk_cls(normalize=normalize), (2, 84, 84, 4))
    assert out.shape == (2, features)
    assert out.dtype == jnp.float32
    assert trunk_cls.output_size(84, 84) == features


def test_four_conv_layers_have_adept_shapes_and_no_bias_when_normalized():
    _, variables = _trunk_shapes(FourConv(normalize=True), (1, 84, 84, 1))
    params = variables["params"]
    assert params["conv1"] == {"kernel": jax.ShapeDtypeStruct((7, 7, 1, 32), jnp.float32)}
    for i in (2, 3, 4):
        assert params[f"conv{i}"]["kernel"].shape == (3, 3, 32, 32)
        assert "bias" not in params[f"conv{i}"]
    assert set(variables["batch_stats"]) == {"bn1", "bn2", "bn3", "bn4"}

    _, variables = _trunk_shapes(FourConv(normalize=False), (1, 84, 84, 1))
    assert "batch_stats" not in variables
    assert variables["params"]["conv1"]["bias"].shape == (32,)


def test_nature_layers_have_dqn_shapes():
    _, variables = _trunk_shapes(Nature(normalize=False), (1, 84, 84, 4))
    params = variables["params"]
    assert params["conv1"]["kernel"].shape == (8, 8, 4, 32)
    assert params["conv2"]["kernel"].shape == (4, 4, 32, 64)
    assert params["conv3"]["kernel"].shape == (3, 3, 64, 64)


def test_flatten_chw_uses_pytorch_channel_major_order():
    x = jnp.arange(2 * 2 * 3 * 4).reshape(2, 2, 3, 4)  # [B, H, W, C]
    expected = np.transpose(np.asarray(x), (0, 3, 1, 2)).reshape(2, -1)  # torch .view on NCHW
    np.testing.assert_array_equal(flatten_chw(x), expected)
    # The first features are channel 0 over all positions.
    np.testing.assert_array_equal(flatten_chw(x)[0, :6], np.asarray(x)[0, :, :, 0].ravel())


def test_four_conv_runs_under_jit_and_conv_weights_lie_within_relu_gain_bound():
    trunk = FourConv(normalize=False)
    x = jax.random.uniform(jax.random.key(1), (2, 84, 84, 1))
    variables = jax.jit(lambda x: trunk.init(jax.random.key(0), x, train=False))(x)
    out = jax.jit(lambda v, x: trunk.apply(v, x, train=False))(variables, x)
    assert out.shape == (2, 800)
    assert bool(jnp.all(out >= 0))  # ReLU is last
    for name, in_channels, kernel in [("conv1", 1, 7), ("conv2", 32, 3), ("conv4", 32, 3)]:
        fan_in = in_channels * kernel * kernel
        weights = variables["params"][name]["kernel"]
        assert np.abs(weights).max() <= math.sqrt(2) / math.sqrt(fan_in)
        assert np.abs(weights).max() > 0.9 * math.sqrt(2) / math.sqrt(fan_in)
        assert np.abs(variables["params"][name]["bias"]).max() <= 1 / math.sqrt(fan_in)


def test_identity_trunk_casts_to_float32():
    x = jnp.array([[1, 2, 3]], jnp.int32)
    out = IdentityTrunk().apply({}, x, train=False)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("normalize", [True, False])
def test_linear_trunk_is_a_two_layer_relu_mlp(normalize):
    trunk = LinearTrunk(normalize=normalize)
    x = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    variables = trunk.init(jax.random.key(0), x, train=False)
    out = trunk.apply(variables, x, train=False)
    assert out.shape == (3, 64)
    assert bool(jnp.all(out >= 0))
    params = variables["params"]
    assert params["linear1"]["kernel"].shape == (4, 64)
    assert params["linear2"]["kernel"].shape == (64, 64)
    assert ("bias" in params["linear1"]) is not normalize
    assert ("batch_stats" in variables) is normalize
