"""The CPU convolution: chunks of the batch give lax's outputs and gradients, and run on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fnrl.networks import FourConv, FourConvLarger, Mnih2013, Nature
from fnrl.networks._conv import (
    CHUNK_BYTES,
    chunk_sizes,
    chunked_conv,
    conv_general_dilated,
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
# Shapes no trunk uses: kernel not a multiple of the stride, stride 3, odd sizes, 1x1.
OTHER_CONVS = [(13, 3, 5, 5, 2, 0), (11, 2, 3, 3, 3, 2), (17, 3, 4, 7, 2, 3), (9, 2, 3, 1, 2, 0)]
BATCH = 7  # with a small chunk budget: uneven chunks


def _lax_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), ((padding, padding),) * 2, dimension_numbers=_NHWC
    )


def _fast_conv(x, kernel, stride, padding):
    return conv_general_dilated(
        x, kernel, (stride, stride), ((padding, padding),) * 2, dimension_numbers=_NHWC
    )


def _inputs(size, channels, features, kernel, stride, padding, batch=BATCH, lead=()):
    rng = np.random.default_rng(size * 1000 + kernel * 10 + stride)
    x = jnp.asarray(rng.normal(size=(*lead, batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, features)), jnp.float32)
    out = conv_output_size(size, kernel, stride, padding)
    dy = jnp.asarray(rng.normal(size=(*lead, batch, out, out, features)), jnp.float32)
    return x, w, dy


def _assert_close(actual, expected):
    """Equal up to float32 rounding of sums: rtol 1e-5 and atol 1e-5 of the largest magnitude."""
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)


def _vjp(conv, x, w, dy, stride, padding):
    y, pullback = jax.vjp(lambda x, w: conv(x, w, stride, padding), x, w)
    return (y, *pullback(dy))


def _image_bytes(size, channels, features, kernel, stride, padding):
    out = conv_output_size(size, kernel, stride, padding)
    return 4 * (size * size * channels + out * out * features)


def _chunked(x, w, stride, padding):
    """``chunked_conv`` with chunks of two images, so that every batch below is split."""
    pads = ((padding, padding),) * 2
    image = _image_bytes(x.shape[-2], x.shape[-1], w.shape[-1], w.shape[0], stride, padding)
    return chunked_conv(x, w, stride, pads, chunk_bytes=2 * image)


def test_trunk_convs_cover_every_trunk_layer():
    assert len(TRUNK_CONVS) == 12  # FourConv 4, FourConvLarger 3 more, Nature 3, Mnih2013 2
    assert (84, 4, 32, 8, 4, 0) in TRUNK_CONVS and (40, 32, 64, 3, 2, 1) in TRUNK_CONVS


def test_chunk_sizes_are_near_equal_and_within_the_budget():
    pads = ((0, 0), (0, 0))
    image = _image_bytes(84, 4, 32, 8, 4, 0)  # Nature conv1: 84x84x4 in, 20x20x32 out
    assert image == 4 * (84 * 84 * 4 + 20 * 20 * 32)
    assert chunk_sizes((96, 84, 84, 4), (8, 8, 4, 32), 4, pads) == [4] * 24
    assert chunk_sizes((10, 84, 84, 4), (8, 8, 4, 32), 4, pads, chunk_bytes=3 * image) == [
        3,
        3,
        2,
        2,
    ]
    assert chunk_sizes((3, 84, 84, 4), (8, 8, 4, 32), 4, pads, chunk_bytes=1) == [1, 1, 1]
    assert chunk_sizes((5, 9, 9, 64), (3, 3, 64, 64), 1, pads) == [5]  # fits in one call
    for batch in (1, 16, 80, 96, 97):
        sizes = chunk_sizes((batch, 20, 20, 32), (4, 4, 32, 64), 2, pads)
        assert sum(sizes) == batch and max(sizes) - min(sizes) <= 1
        assert max(sizes) * _image_bytes(20, 32, 64, 4, 2, 0) <= CHUNK_BYTES


@pytest.mark.parametrize("conv", TRUNK_CONVS + OTHER_CONVS)
def test_chunked_conv_output_and_gradients_equal_lax_conv(conv):
    size, channels, features, kernel, stride, padding = conv
    x, w, dy = _inputs(*conv)
    expected = _vjp(_lax_conv, x, w, dy, stride, padding)
    actual = jax.jit(_vjp, static_argnums=(0, 4, 5))(_chunked, x, w, dy, stride, padding)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype == jnp.float32
        _assert_close(a, e)


@pytest.mark.parametrize("conv", [(20, 32, 64, 4, 2, 0), (13, 3, 5, 5, 2, 0)])
def test_chunked_conv_under_vmap_equals_lax_conv(conv):
    """vmap over time (as the agents apply trunks) and over two axes, both gradients."""
    size, channels, features, kernel, stride, padding = conv
    for lead in ((3,), (2, 3)):
        x, w, dy = _inputs(*conv, batch=3, lead=lead)

        def mapped(fn, lead=lead):
            for _ in lead:
                fn = jax.vmap(fn, in_axes=(0, None))
            return fn

        def vjp(conv, mapped=mapped, x=x, w=w, dy=dy):
            y, pullback = jax.vjp(mapped(lambda x, w: conv(x, w, stride, padding)), x, w)
            return (y, *pullback(dy))

        expected = vjp(_lax_conv)
        actual = jax.jit(lambda x, w, dy, vjp=vjp: vjp(_chunked))(x, w, dy)
        for a, e in zip(actual, expected, strict=True):
            assert a.shape == e.shape
            _assert_close(a, e)


def test_chunked_conv_with_a_kernel_per_mapped_element_equals_lax_conv():
    x, w, dy = _inputs(20, 3, 4, 4, 2, 0)
    kernels = jnp.stack([w, 2.0 * w])

    def loss(conv, kernels):
        ys = jax.vmap(lambda k: conv(x, k, 2, 0))(kernels)
        return jnp.sum(jnp.sin(ys))

    expected = jax.grad(lambda k: loss(_lax_conv, k))(kernels)
    actual = jax.jit(jax.grad(lambda k: loss(_chunked, k)))(kernels)
    _assert_close(actual, expected)


def test_chunked_conv_splits_the_batch_into_lax_calls():
    x, w, dy = _inputs(20, 32, 64, 4, 2, 0, batch=6)
    jaxpr = jax.make_jaxpr(lambda x, w: jax.vjp(lambda x, w: _chunked(x, w, 2, 0), x, w)[1](dy))
    text = str(jaxpr(x, w))
    assert text.count("conv_general_dilated") >= 3 * 3  # 3 chunks: output, dX, dW of each
    assert "lhs_dilation" in text  # lax's own input gradient, per chunk


def test_torch_conv_takes_the_chunked_convolution_on_cpu():
    conv = torch_conv(64, 4, 2, 0, 32, use_bias=True)  # Nature conv2
    x = jnp.ones((2, 20, 20, 32))
    variables = conv.init(jax.random.key(0), x)
    jaxpr = jax.make_jaxpr(lambda v, x: conv.apply(v, x))(variables, x)
    on_cpu = jax.default_backend() == "cpu"
    assert ("custom_vjp_call" in str(jaxpr)) == on_cpu


def test_other_backends_get_lax_conv(monkeypatch):
    x, w, dy = _inputs(20, 32, 64, 4, 2, 0)

    def grad_jaxpr(conv):
        return jax.make_jaxpr(lambda x, w: jax.vjp(conv, x, w)[1](dy))(x, w).jaxpr

    plain = grad_jaxpr(lambda x, w: _lax_conv(x, w, 2, 0))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    gpu = grad_jaxpr(lambda x, w: _fast_conv(x, w, 2, 0))
    assert str(gpu) == str(plain)


@pytest.mark.parametrize("trunk_cls", [FourConv, Nature])  # every layer is checked above
def test_trunk_gradients_equal_lax_convs(trunk_cls, monkeypatch):
    trunk = trunk_cls(normalize=False)
    x = jax.random.uniform(jax.random.key(1), (9, 84, 84, 4))
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
