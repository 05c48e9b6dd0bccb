"""The CPU convolution: space-to-depth gives lax's outputs and gradients, and is selected on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fnrl.networks import FourConv, FourConvLarger, Mnih2013, Nature
from fnrl.networks._conv import (
    conv_general_dilated,
    conv_nhwc,
    conv_space_to_depth_input_grad,
    space_to_depth_conv,
    uses_space_to_depth,
)
from fnrl.networks._layers import torch_conv
from fnrl.networks.trunks import conv_output_size

TRUNKS = (FourConv, FourConvLarger, Nature, Mnih2013)
_NHWC = ("NHWC", "HWIO", "NHWC")


def _trunk_convs() -> list[tuple[int, int, int, int, int, int]]:
    """(size, in_channels, features, kernel, stride, padding) of every conv of TRUNKS on 84x84x4."""
    convs = set()
    for trunk in TRUNKS:
        size, channels = 84, 4
        for features, kernel, stride, padding in trunk.layers:
            convs.add((size, channels, features, kernel, stride, padding))
            size, channels = conv_output_size(size, kernel, stride, padding), features
    return sorted(convs)


TRUNK_CONVS = _trunk_convs()
# Shapes no trunk uses: kernel not a multiple of the stride, stride 3, odd sizes.
OTHER_CONVS = [(13, 3, 5, 5, 2, 0), (11, 2, 3, 3, 3, 2), (17, 3, 4, 7, 2, 3), (9, 2, 3, 1, 2, 0)]


def _lax_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), ((padding, padding),) * 2, dimension_numbers=_NHWC
    )


def _fast_conv(x, kernel, stride, padding):
    return conv_general_dilated(
        x, kernel, (stride, stride), ((padding, padding),) * 2, dimension_numbers=_NHWC
    )


def _inputs(size, channels, features, kernel, stride, padding, batch=2):
    rng = np.random.default_rng(size * 1000 + kernel * 10 + stride)
    x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, features)), jnp.float32)
    out = conv_output_size(size, kernel, stride, padding)
    dy = jnp.asarray(rng.normal(size=(batch, out, out, features)), jnp.float32)
    return x, w, dy


def _assert_close(actual, expected):
    """Equal up to float32 rounding of sums: rtol 1e-5 and atol 1e-5 of the largest magnitude."""
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


def _vjp(conv, x, w, dy, stride, padding):
    y, pullback = jax.vjp(lambda x, w: conv(x, w, stride, padding), x, w)
    return (y, *pullback(dy))


def test_trunk_convs_cover_every_trunk_layer():
    assert len(TRUNK_CONVS) == 12  # FourConv 4, FourConvLarger 3 more, Nature 3, Mnih2013 2
    assert (84, 4, 32, 8, 4, 0) in TRUNK_CONVS and (40, 32, 64, 3, 2, 1) in TRUNK_CONVS


@pytest.mark.parametrize("conv", TRUNK_CONVS + OTHER_CONVS)
def test_space_to_depth_conv_equals_lax_conv(conv):
    size, channels, features, kernel, stride, padding = conv
    x, w, dy = _inputs(*conv)
    pads = ((padding, padding),) * 2
    expected = _vjp(_lax_conv, x, w, dy, stride, padding)
    actual = _vjp(lambda x, w, s, p: space_to_depth_conv(x, w, s, pads), x, w, dy, stride, padding)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype == jnp.float32
        _assert_close(a, e)


@pytest.mark.parametrize("conv", TRUNK_CONVS + OTHER_CONVS)
def test_cpu_conv_output_and_gradients_equal_lax_conv(conv):
    size, channels, features, kernel, stride, padding = conv
    x, w, dy = _inputs(*conv)
    expected = _vjp(_lax_conv, x, w, dy, stride, padding)
    actual = jax.jit(_vjp, static_argnums=(0, 4, 5))(_fast_conv, x, w, dy, stride, padding)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        _assert_close(a, e)


def test_space_to_depth_input_grad_supports_forward_mode():
    x, w, _ = _inputs(20, 3, 4, 4, 2, 0)
    pads = ((0, 0), (0, 0))
    y, y_dot = jax.jvp(lambda x, w: conv_space_to_depth_input_grad(x, w, 2, pads), (x, w), (x, w))
    y_ref, y_dot_ref = jax.jvp(lambda x, w: conv_nhwc(x, w, 2, pads), (x, w), (x, w))
    _assert_close(y, y_ref)
    _assert_close(y_dot, y_dot_ref)


def _conv_grad_jaxpr(conv, x, w, dy):
    return jax.make_jaxpr(lambda x, w: jax.vjp(conv, x, w)[1](dy))(x, w).jaxpr


def _input_dilations(jaxpr) -> list[tuple[int, ...]]:
    return [
        tuple(eqn.params["lhs_dilation"])
        for eqn in jaxpr.eqns
        if eqn.primitive is lax.conv_general_dilated_p
    ]


def test_selection_rule_matches_the_measured_shapes():
    assert uses_space_to_depth((84, 84), (8, 8), 4)  # Nature / Mnih2013 conv1
    assert uses_space_to_depth((20, 20), (4, 4), 2)  # Nature / Mnih2013 conv2
    assert uses_space_to_depth((84, 84), (7, 7), 2)  # FourConv conv1
    assert uses_space_to_depth((40, 40), (3, 3), 2)  # FourConv conv2
    assert not uses_space_to_depth((20, 20), (3, 3), 2)  # FourConv conv3: measured slower
    assert not uses_space_to_depth((10, 10), (3, 3), 2)  # FourConv conv4: measured slower
    assert not uses_space_to_depth((9, 9), (3, 3), 1)  # stride 1: no dilated input gradient
    assert not uses_space_to_depth((84, 84), (1, 1), 2)  # kernel smaller than the stride


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the CPU path")
def test_torch_conv_takes_the_space_to_depth_input_gradient_on_cpu():
    conv = torch_conv(64, 4, 2, 0, 32, use_bias=True)  # Nature conv2
    x = jnp.ones((2, 20, 20, 32))
    variables = conv.init(jax.random.key(0), x)
    dy = jnp.ones((2, 9, 9, 64))
    jaxpr = _conv_grad_jaxpr(lambda x, v: conv.apply(v, x), x, variables, dy)
    # lax's input gradient of a stride-2 conv dilates the output gradient by 2.
    assert (2, 2) not in _input_dilations(jaxpr)
    assert (2, 2) in _input_dilations(
        _conv_grad_jaxpr(lambda x, w: _lax_conv(x, w, 2, 0), x, variables["params"]["kernel"], dy)
    )


def test_other_backends_get_lax_conv(monkeypatch):
    x, w, dy = _inputs(20, 32, 64, 4, 2, 0)
    plain = _conv_grad_jaxpr(lambda x, w: _lax_conv(x, w, 2, 0), x, w, dy)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = _conv_grad_jaxpr(lambda x, w: _fast_conv(x, w, 2, 0), x, w, dy)
    assert str(gpu) == str(plain)


@pytest.mark.parametrize("trunk_cls", [FourConv, Nature])  # every layer is checked above
def test_trunk_gradients_equal_lax_convs(trunk_cls, monkeypatch):
    trunk = trunk_cls(normalize=False)
    x = jax.random.uniform(jax.random.key(1), (1, 84, 84, 4))
    params = trunk.init(jax.random.key(0), x, train=False)

    def loss(params, x):
        features = trunk.apply(params, x, train=False)
        return jnp.sum(jnp.sin(features))

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    actual = grad(params, x)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # traced anew: lax's convs
    expected = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
        _assert_close(a, e)
