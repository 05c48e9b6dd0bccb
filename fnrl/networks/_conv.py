"""2-D convolutions split into small batches on XLA:CPU, with the numbers of ``lax``'s.

XLA:CPU's convolutions (the YNNPACK kernels of jaxlib 0.10) get slower *per image* as the batch
grows: on a 2-core machine with 1 MiB of L2 per core, one call of the Nature DQN's first conv
(8x8/4, 4 → 32 channels) on 96 84x84 images takes about 4x as long as 24 calls on 4 images
each, and its kernel gradient about 3x (``benchmarks/convs.py``). Large calls work on buffers
that leave the caches and are freshly mapped memory on every call, so they pay page faults.

``conv_general_dilated`` therefore splits the batch into near-equal chunks whose input and
output together fit in ``CHUNK_BYTES`` and convolves each chunk with ``lax``: the output is
the concatenation, the kernel gradient the sum of the chunks' (the same sums in another order,
so equal up to float32 rounding), the input gradient the concatenation of theirs.

The chunks are taken over the batch that the convolution really runs on. Under ``jax.vmap``
(fnrl's agents apply the trunks to all ``T`` steps at once with ``vmap``) ``lax``'s batching rule
would fold the mapped axis into the batch, so that chunks of the per-step batch become chunks
of ``T`` times the size; here ``jax.custom_batching.custom_vmap`` folds the mapped axis into
the batch first and chunks the result. The gradient is a ``jax.custom_vjp``: reverse mode
only, once (fnrl differentiates its losses once, in reverse mode); forward mode raises.
On other backends, and for convolutions that are not plain 2-D channels-last ones, it is
``lax.conv_general_dilated`` itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]  # (low, high) zero padding of H and W

_NHWC = ("NHWC", "HWIO", "NHWC")  # flax's channels-last layouts

# Input plus output bytes of one chunk. Measured on XLA:CPU (benchmarks/convs.py, the whole
# A2C update of the Nature network on 96 frames): 768 KiB ran fastest of 192 KiB - 3 MiB.
CHUNK_BYTES = 768 * 1024


def conv_nhwc(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """``lax``'s convolution of channels-last images, as ``flax.linen.Conv`` calls it.

    Args:
        x: images ``[B, H, W, C]``.
        kernel: ``[kh, kw, C, O]``.
        stride: the stride along both spatial axes.
        padding: ``((top, bottom), (left, right))`` zero padding.

    Returns:
        ``[B, OH, OW, O]`` with ``OH = (H + top + bottom - kh) // stride + 1`` (and ``OW`` alike).
    """
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_NHWC)


def chunk_sizes(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    stride: int,
    padding: Padding,
    *,
    itemsize: int = 4,
    chunk_bytes: int = CHUNK_BYTES,
) -> list[int]:
    """Images per ``lax`` call: near-equal chunks of the batch, each within ``chunk_bytes``.

    Args:
        x_shape: ``[B, H, W, C]``.
        kernel_shape: ``[kh, kw, C, O]``.
        stride: the convolution's stride.
        padding: the convolution's ``((top, bottom), (left, right))``.
        itemsize: bytes per element.
        chunk_bytes: the largest input plus output of one chunk (at least one image a chunk).

    Returns:
        Chunk lengths summing to ``B``, the longer ones first, differing by at most one.
    """
    batch, height, width, channels = x_shape
    kh, kw, _, features = kernel_shape
    (top, bottom), (left, right) = padding
    out_h = (height + top + bottom - kh) // stride + 1
    out_w = (width + left + right - kw) // stride + 1
    image_bytes = itemsize * (height * width * channels + out_h * out_w * features)
    per_chunk = max(1, chunk_bytes // image_bytes)
    count = -(-batch // per_chunk)
    return [batch // count + (i < batch % count) for i in range(count)]


def _chunks(x: jax.Array, sizes: list[int]) -> list[jax.Array]:
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [lax.slice_in_dim(x, a, a + n) for a, n in zip(starts, sizes, strict=True)]


def _concat(parts: list[jax.Array]) -> jax.Array:
    return parts[0] if len(parts) == 1 else jnp.concatenate(parts)


def _fold(x: jax.Array, batched: bool, axis_size: int) -> jax.Array:
    """``[N, B, ...]`` (``[B, ...]`` repeated ``N`` times if not ``batched``) to ``[N*B, ...]``."""
    if not batched:
        x = jnp.broadcast_to(x, (axis_size, *x.shape))
    return x.reshape(-1, *x.shape[2:])


def _unfold(x: jax.Array, axis_size: int) -> jax.Array:
    return x.reshape(axis_size, -1, *x.shape[1:])


@functools.cache
def _chunked(stride: int, padding: Padding, chunk_bytes: int):
    """The chunked convolution of one configuration: ``conv(x, kernel)``, a custom_vjp."""

    def conv(x, kernel):
        return conv_nhwc(x, kernel, stride, padding)

    def sizes_of(x, kernel):
        return chunk_sizes(
            x.shape, kernel.shape, stride, padding, itemsize=x.dtype.itemsize,
            chunk_bytes=chunk_bytes,
        )  # fmt: skip

    def forward(x, kernel):
        sizes = sizes_of(x, kernel)
        return _concat([conv(part, kernel) for part in _chunks(x, sizes)])

    def backward(x, kernel, dy):
        sizes = sizes_of(x, kernel)
        dxs, dkernel = [], None
        for x_part, dy_part in zip(_chunks(x, sizes), _chunks(dy, sizes), strict=True):
            dx, dk = jax.vjp(conv, x_part, kernel)[1](dy_part)
            dxs.append(dx)
            dkernel = dk if dkernel is None else dkernel + dk
        return _concat(dxs), dkernel

    forward_kernel = jax.custom_batching.custom_vmap(forward)
    backward_kernel = jax.custom_batching.custom_vmap(backward)

    @forward_kernel.def_vmap
    def _forward_vmap(axis_size, in_batched, x, kernel):
        x_batched, kernel_batched = in_batched
        if kernel_batched:  # one kernel per mapped element: lax's grouped convolution
            return jax.vmap(conv, in_axes=(0 if x_batched else None, 0))(x, kernel), True
        return _unfold(forward_kernel(_fold(x, True, axis_size), kernel), axis_size), True

    @backward_kernel.def_vmap
    def _backward_vmap(axis_size, in_batched, x, kernel, dy):
        x_batched, kernel_batched, dy_batched = in_batched
        if kernel_batched:

            def one(x, kernel, dy):
                return jax.vjp(conv, x, kernel)[1](dy)

            in_axes = (0 if x_batched else None, 0, 0 if dy_batched else None)
            return jax.vmap(one, in_axes=in_axes)(x, kernel, dy), (True, True)
        dx, dkernel = backward_kernel(
            _fold(x, x_batched, axis_size), kernel, _fold(dy, dy_batched, axis_size)
        )
        # The kernel is shared by every mapped element: its gradient is the one sum over all
        # of them, returned unbatched (vmap does not sum an unbatched cotangent again).
        return (_unfold(dx, axis_size), dkernel), (True, False)

    @jax.custom_vjp
    def chunked(x, kernel):
        return forward_kernel(x, kernel)

    def chunked_fwd(x, kernel):
        return forward_kernel(x, kernel), (x, kernel)

    def chunked_bwd(residuals, dy):
        return backward_kernel(*residuals, dy)

    chunked.defvjp(chunked_fwd, chunked_bwd)
    return chunked


def chunked_conv(
    x: jax.Array,
    kernel: jax.Array,
    stride: int,
    padding: Padding,
    *,
    chunk_bytes: int = CHUNK_BYTES,
) -> jax.Array:
    """``conv_nhwc`` run as ``lax`` calls on chunks of the batch (see the module docstring).

    Args:
        x: images ``[B, H, W, C]``.
        kernel: ``[kh, kw, C, O]``.
        stride: the stride along both spatial axes (static).
        padding: ``((top, bottom), (left, right))`` zero padding (static).
        chunk_bytes: the largest input plus output of one chunk (see ``chunk_sizes``).

    Returns:
        ``[B, OH, OW, O]``, as ``conv_nhwc``; its reverse-mode gradients equal ``lax``'s up to
        float32 rounding.
    """
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return _chunked(int(stride), pads, int(chunk_bytes))(x, kernel)


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: lax.PrecisionLike = None,
    preferred_element_type: jax.typing.DTypeLike | None = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` (same arguments and result), faster on XLA:CPU.

    When ``jax.default_backend()`` is ``"cpu"`` at trace time and the call is a plain 2-D
    channels-last convolution (``NHWC`` / ``HWIO``, no dilation or groups, one stride for both
    axes, explicit padding), it is ``chunked_conv``; otherwise, and on GPU and TPU always, it is
    ``lax.conv_general_dilated`` itself.
    """
    args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers)
    kwargs = dict(
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if _chunking_applies(*args, **kwargs):
        return chunked_conv(lhs, rhs, int(window_strides[0]), tuple(padding))
    return lax.conv_general_dilated(*args, **kwargs)


def _chunking_applies(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None,
    rhs_dilation: Sequence[int] | None,
    dimension_numbers: lax.ConvGeneralDilatedDimensionNumbers,
    *,
    feature_group_count: int,
    batch_group_count: int,
    precision: lax.PrecisionLike,
    preferred_element_type: jax.typing.DTypeLike | None,
) -> bool:
    """Whether ``conv_general_dilated`` runs this call as ``chunked_conv``."""
    if jax.default_backend() != "cpu" or lhs.ndim != 4 or rhs.ndim != 4:
        return False
    plain = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != plain:
        return False
    if isinstance(padding, str) or any(lo < 0 or hi < 0 for lo, hi in padding):
        return False
    if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
        return False
    if feature_group_count != 1 or batch_group_count != 1 or preferred_element_type is not None:
        return False
    return precision is None and len(set(window_strides)) == 1
