"""PyTorch-default initializers and the torch-exact BatchNorm."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.networks._layers import BatchNorm, kaiming_normal_fan_out, torch_conv, torch_dense


def _bn_reference_train(x, scale, bias, mean, var, momentum=0.1, eps=1e-5):
    """torch.nn.BatchNorm2d.forward in training mode, channels-last, in numpy."""
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])
    batch_mean = x.mean(axis=axes)
    batch_var = x.var(axis=axes)  # biased: used to normalize
    y = (x - batch_mean) / np.sqrt(batch_var + eps) * scale + bias
    new_mean = (1 - momentum) * mean + momentum * batch_mean
    new_var = (1 - momentum) * var + momentum * batch_var * n / (n - 1)  # unbiased: running
    return y, new_mean, new_var


def test_batch_norm_init_values_are_torch_defaults():
    x = jnp.ones((2, 3, 3, 4))
    variables = BatchNorm().init(jax.random.key(0), x, train=False)
    np.testing.assert_array_equal(variables["params"]["scale"], np.ones(4))
    np.testing.assert_array_equal(variables["params"]["bias"], np.zeros(4))
    np.testing.assert_array_equal(variables["batch_stats"]["mean"], np.zeros(4))
    np.testing.assert_array_equal(variables["batch_stats"]["var"], np.ones(4))


def test_batch_norm_train_matches_torch_and_updates_running_stats_with_unbiased_var():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(3, 5, 5, 4)).astype(np.float32)
    scale = rng.normal(size=4).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    mean = rng.normal(size=4).astype(np.float32)
    var = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    variables = {
        "params": {"scale": scale, "bias": bias},
        "batch_stats": {"mean": mean, "var": var},
    }

    y, updates = jax.jit(lambda v, x: BatchNorm().apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x
    )

    y_ref, mean_ref, var_ref = _bn_reference_train(x, scale, bias, mean, var)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], mean_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], var_ref, rtol=1e-6, atol=1e-6)


def test_batch_norm_eval_uses_running_stats_and_updates_nothing():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6)).astype(np.float32)
    mean = rng.normal(size=6).astype(np.float32)
    var = rng.uniform(0.5, 2.0, size=6).astype(np.float32)
    variables = {
        "params": {"scale": np.full(6, 2.0, np.float32), "bias": np.full(6, 0.5, np.float32)},
        "batch_stats": {"mean": mean, "var": var},
    }
    y, updates = BatchNorm().apply(variables, x, train=False, mutable=["batch_stats"])
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * 2.0 + 0.5, rtol=1e-5)
    np.testing.assert_array_equal(updates["batch_stats"]["mean"], mean)
    np.testing.assert_array_equal(updates["batch_stats"]["var"], var)


def test_batch_norm_train_without_mutable_normalizes_with_batch_stats():
    x = jnp.arange(12.0).reshape(4, 3)
    variables = BatchNorm().init(jax.random.key(0), x, train=False)
    y = BatchNorm().apply(variables, x, train=True)
    np.testing.assert_allclose(y.mean(axis=0), np.zeros(3), atol=1e-6)


@pytest.mark.parametrize("fan_in", [3, 100])
def test_torch_dense_init_is_uniform_within_inverse_sqrt_fan_in(fan_in):
    params = torch_dense(64, fan_in).init(jax.random.key(0), jnp.zeros((1, fan_in)))["params"]
    bound = 1 / math.sqrt(fan_in)
    for leaf in (params["kernel"], params["bias"]):
        assert np.abs(leaf).max() <= bound
        assert np.abs(leaf).max() > 0.9 * bound  # spans the whole range, not a narrower one
    assert params["kernel"].shape == (fan_in, 64)


def test_torch_conv_init_scales_weights_by_relu_gain():
    conv = torch_conv(32, 3, 2, 1, in_channels=16, use_bias=True)
    params = conv.init(jax.random.key(0), jnp.zeros((1, 8, 8, 16)))["params"]
    fan_in = 16 * 3 * 3
    assert np.abs(params["kernel"]).max() <= math.sqrt(2) / math.sqrt(fan_in)
    assert np.abs(params["kernel"]).max() > 0.9 * math.sqrt(2) / math.sqrt(fan_in)
    assert np.abs(params["bias"]).max() <= 1 / math.sqrt(fan_in)


def test_torch_conv_padding_matches_torch_output_size():
    # torch: floor((84 + 2 * 1 - 7) / 2) + 1 = 40
    conv = torch_conv(4, 7, 2, 1, in_channels=1, use_bias=False)
    out = jax.eval_shape(conv.init_with_output, jax.random.key(0), jnp.zeros((1, 84, 84, 1)))[0]
    assert out.shape == (1, 40, 40, 4)


def test_running_mode_normalizes_with_running_stats_after_the_first_update():
    rng = np.random.default_rng(2)
    x = rng.normal(3.0, 2.0, size=(5, 4)).astype(np.float32)
    bn = BatchNorm(use_batch_statistics=False)
    variables = bn.init(jax.random.key(0), x, train=False)
    assert float(variables["batch_stats"]["count"]) == 0.0
    # count == 0: the batch normalizes and the first update replaces mean 0 / variance 1.
    y, updates = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(updates["batch_stats"]["mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(updates["batch_stats"]["var"], x.var(0, ddof=1), rtol=1e-5)
    assert float(updates["batch_stats"]["count"]) == 1.0
    # count > 0: the running statistics (before this call's update) normalize.
    variables = {**variables, **updates}
    z = x + 1.0
    y, updates = bn.apply(variables, z, train=True, mutable=["batch_stats"])
    mean = np.asarray(variables["batch_stats"]["mean"])
    var = np.asarray(variables["batch_stats"]["var"])
    np.testing.assert_allclose(y, (z - mean) / np.sqrt(var + 1e-5), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        updates["batch_stats"]["mean"], 0.9 * mean + 0.1 * z.mean(0), rtol=1e-6
    )
    # Acting (not mutable) reads the same statistics and writes nothing.
    np.testing.assert_allclose(bn.apply(variables, z, train=True), y, rtol=1e-6)


def test_batch_mode_counts_updates_like_torch_num_batches_tracked():
    x = jnp.arange(12.0).reshape(4, 3)
    variables = BatchNorm().init(jax.random.key(0), x, train=False)
    _, updates = BatchNorm().apply(variables, x, train=True, mutable=["batch_stats"])
    assert float(updates["batch_stats"]["count"]) == 1.0
    # torch's first update moves 10% from mean 0 / variance 1, it does not replace them.
    np.testing.assert_allclose(updates["batch_stats"]["mean"], 0.1 * np.asarray(x).mean(0))


def test_kaiming_normal_fan_out_matches_torch_variance():
    kernel = kaiming_normal_fan_out()(jax.random.key(0), (3, 3, 64, 128))
    np.testing.assert_allclose(np.std(kernel), math.sqrt(2 / (128 * 9)), rtol=0.02)
