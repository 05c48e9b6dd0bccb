"""2-D convolutions that differentiate faster on XLA:CPU, with the numbers of ``lax``'s.

XLA:CPU runs a strided convolution's forward pass and its kernel gradient in fast library
kernels, but the gradient with respect to the input of a stride-``s`` convolution is a
convolution over the output gradient dilated by ``s`` (``lhs_dilation``), which it runs several
times slower: three quarters of that dilated input are zeros for ``s = 2``.

Space-to-depth removes the dilation. Regrouping the (padded) input into ``s x s`` blocks
``[B, H/s, W/s, s*s*C]`` and the (zero-padded to a multiple of ``s``) kernel the same way
``[k'/s, k'/s, s*s*C, O]`` turns the convolution into a stride-1 one that computes the same sums
(the extra kernel taps are zeros), so its input gradient is an ordinary stride-1 convolution
followed by the inverse regrouping. ``conv_general_dilated`` keeps ``lax``'s convolution for the
output and for the kernel gradient, and takes the input gradient from the space-to-depth form
where that measured faster on XLA:CPU (``benchmarks/convs.py``); elsewhere, and on every other
backend, it is ``lax.conv_general_dilated``. Both gradients equal ``lax``'s up to float32
rounding (the sums are the same, in another order).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Padding = tuple[tuple[int, int], tuple[int, int]]  # (low, high) zero padding of H and W

_NHWC = ("NHWC", "HWIO", "NHWC")  # flax's channels-last layouts

# A kernel that is not a multiple of the stride is zero-padded to one, which costs work (3x3
# stride 2: 16 taps for 9). Measured on XLA:CPU (benchmarks/convs.py, batches of 80 and 640):
# the input gradient of 3x3 stride-2 convs is faster in space-to-depth form on 40x40 and 84x84
# inputs, slower on 10x10 and on 20x20 at batch 80; kernels that are multiples of the stride
# (8x8/4, 4x4/2) are faster at every size.
_MIN_SIZE_WHEN_PADDED = 32


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


def _blocked_length(size: int, kernel: int, stride: int, pad: tuple[int, int]) -> int:
    """Padded input length that space-to-depth needs along one axis: a multiple of ``stride``."""
    out = (size + pad[0] + pad[1] - kernel) // stride + 1
    return (out - 1) * stride + -(-kernel // stride) * stride


def space_to_depth_input(
    x: jax.Array, kernel_hw: tuple[int, int], stride: int, padding: Padding
) -> jax.Array:
    """Pads ``x`` like the convolution does and regroups it into ``stride x stride`` blocks.

    Each axis is padded by its low padding in front and then zero-padded or cut at the end to
    the length the padded kernel reads (rows the convolution never reads are dropped).

    Args:
        x: images ``[B, H, W, C]``.
        kernel_hw: the kernel's ``(kh, kw)``.
        stride: the convolution's stride ``s`` along both axes.
        padding: the convolution's ``((top, bottom), (left, right))``.

    Returns:
        ``[B, LH / s, LW / s, s * s * C]``, channel index ``(row in block, column, c)``, where
        ``LH = (OH - 1) * s + ceil(kh / s) * s`` is the padded height (``LW`` alike).
    """
    batch, height, width, channels = x.shape
    lh = _blocked_length(height, kernel_hw[0], stride, padding[0])
    lw = _blocked_length(width, kernel_hw[1], stride, padding[1])
    (top, _), (left, _) = padding
    x = jnp.pad(
        x, ((0, 0), (top, max(0, lh - height - top)), (left, max(0, lw - width - left)), (0, 0))
    )[:, :lh, :lw]
    x = x.reshape(batch, lh // stride, stride, lw // stride, stride, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, lh // stride, lw // stride, -1)


def space_to_depth_kernel(kernel: jax.Array, stride: int) -> jax.Array:
    """Zero-pads a kernel to a multiple of ``stride`` and regroups it like the input.

    Args:
        kernel: ``[kh, kw, C, O]``.
        stride: the convolution's stride ``s``.

    Returns:
        ``[ceil(kh / s), ceil(kw / s), s * s * C, O]``, channel index ``(row in block, column,
        c)`` as in ``space_to_depth_input``.
    """
    kh, kw, channels, features = kernel.shape
    bh, bw = -(-kh // stride), -(-kw // stride)
    kernel = jnp.pad(kernel, ((0, bh * stride - kh), (0, bw * stride - kw), (0, 0), (0, 0)))
    kernel = kernel.reshape(bh, stride, bw, stride, channels, features)
    return kernel.transpose(0, 2, 1, 3, 4, 5).reshape(bh, bw, stride * stride * channels, features)


def space_to_depth_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: Padding
) -> jax.Array:
    """``conv_nhwc(x, kernel, stride, padding)`` computed as a stride-1 convolution of blocks.

    Args:
        x: images ``[B, H, W, C]``.
        kernel: ``[kh, kw, C, O]``.
        stride: the stride along both spatial axes.
        padding: ``((top, bottom), (left, right))`` zero padding.

    Returns:
        ``[B, OH, OW, O]``, the same as ``conv_nhwc`` up to float32 rounding.
    """
    blocks = space_to_depth_input(x, kernel.shape[:2], stride, padding)
    return conv_nhwc(blocks, space_to_depth_kernel(kernel, stride), 1, ((0, 0), (0, 0)))


def uses_space_to_depth(input_hw: tuple[int, int], kernel_hw: tuple[int, int], stride: int) -> bool:
    """Whether XLA:CPU differentiates this convolution faster through ``space_to_depth_conv``.

    Strided convolutions whose kernel is at least the stride qualify when the kernel is a
    multiple of the stride, or when the input is large enough to pay for the zero taps.
    """
    if stride < 2 or min(kernel_hw) < stride:
        return False
    if all(k % stride == 0 for k in kernel_hw):
        return True
    return min(input_hw) >= _MIN_SIZE_WHEN_PADDED


def _conv_primal(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    return conv_nhwc(x, kernel, stride, padding)


def _conv_tangent(
    stride: int, padding: Padding, primals: tuple, tangents: tuple
) -> tuple[jax.Array, jax.Array]:
    # Linear in (x_dot, kernel_dot): reverse mode transposes it, so the input gradient is the
    # transpose of space_to_depth_conv (a stride-1 convolution, no dilation) and the kernel
    # gradient the transpose of lax's convolution; the forward pass computes only the primal.
    x, kernel = primals
    x_dot, kernel_dot = tangents
    y = conv_nhwc(x, kernel, stride, padding)
    terms = []
    if not isinstance(x_dot, jax.custom_derivatives.SymbolicZero):
        terms.append(space_to_depth_conv(x_dot, kernel, stride, padding))
    if not isinstance(kernel_dot, jax.custom_derivatives.SymbolicZero):
        terms.append(conv_nhwc(x, kernel_dot, stride, padding))
    y_dot = sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y)
    return y, y_dot


_conv_s2d_input_grad = jax.custom_jvp(_conv_primal, nondiff_argnums=(2, 3))
_conv_s2d_input_grad.defjvp(_conv_tangent, symbolic_zeros=True)


def conv_space_to_depth_input_grad(
    x: jax.Array, kernel: jax.Array, stride: int, padding: Padding
) -> jax.Array:
    """``conv_nhwc`` whose input gradient is ``space_to_depth_conv``'s.

    The output and the kernel gradient are ``lax``'s; forward and reverse mode both work.

    Args:
        x: images ``[B, H, W, C]``.
        kernel: ``[kh, kw, C, O]``.
        stride: the stride along both spatial axes (static).
        padding: ``((top, bottom), (left, right))`` zero padding (static, a tuple of tuples).

    Returns:
        ``[B, OH, OW, O]``, as ``conv_nhwc``.
    """
    return _conv_s2d_input_grad(x, kernel, stride, padding)


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
    """``lax.conv_general_dilated`` (same arguments and result), faster to differentiate on CPU.

    When ``jax.default_backend()`` is ``"cpu"`` at trace time and the call is a plain 2-D
    channels-last convolution (``NHWC`` / ``HWIO``, no dilation or groups, explicit padding)
    that ``uses_space_to_depth`` selects, it is ``conv_space_to_depth_input_grad``; otherwise,
    and on GPU and TPU always, it is ``lax.conv_general_dilated`` itself.
    """
    args = (lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers)
    kwargs = dict(
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if _space_to_depth_applies(*args, **kwargs):
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        return conv_space_to_depth_input_grad(lhs, rhs, int(window_strides[0]), pads)
    return lax.conv_general_dilated(*args, **kwargs)


def _space_to_depth_applies(
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
    """Whether ``conv_general_dilated`` takes the space-to-depth input gradient for this call."""
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
    if precision is not None or len(set(window_strides)) != 1:
        return False
    return uses_space_to_depth(lhs.shape[1:3], rhs.shape[:2], int(window_strides[0]))
