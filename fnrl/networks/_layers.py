"""PyTorch-default layers for flax: initializers, Dense / Conv factories, torch-exact BatchNorm.

adept builds every layer with PyTorch's defaults, so fnrl does too (parity item 7):

* ``nn.Linear`` / ``nn.Conv2d`` weights: ``kaiming_uniform_(a=sqrt(5))``, i.e.
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
* adept multiplies the vision trunks' conv weights by ``calculate_gain("relu") = sqrt(2)``.
* ``nn.BatchNorm{1,2}d``: momentum 0.1, eps 1e-5, normalizes with the biased batch variance but
  updates the running variance with the *unbiased* one (flax's ``nn.BatchNorm`` uses the biased
  one), weight 1, bias 0, running mean 0, running var 1.
* ``nn.LayerNorm``: eps 1e-5.
* adept's ResNets (``torchvision``'s recipe): convs ``kaiming_normal_(mode="fan_out",
  nonlinearity="relu")``, i.e. ``N(0, 2 / (out_channels * kh * kw))``.

Layouts stay flax's (``Dense`` kernel ``[in, out]``, ``Conv`` kernel ``[kh, kw, in, out]``); the
conversion to a torch ``state_dict`` transposes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks._conv import conv_general_dilated

# Where PyTorch's defaults come from: torch.nn.modules.{batchnorm,normalization}.
TORCH_BN_MOMENTUM = 0.1  # weight of the new batch statistic in the running average
TORCH_NORM_EPS = 1e-5  # BatchNorm and LayerNorm eps
RELU_GAIN = math.sqrt(2.0)  # torch.nn.init.calculate_gain("relu"), adept's conv weight scale


def uniform_init(bound: float) -> nn.initializers.Initializer:
    """``U(-bound, bound)`` for any shape (torch's ``init.uniform_(w, -bound, bound)``)."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


def torch_dense(
    features: int,
    fan_in: int,
    *,
    use_bias: bool = True,
    weight_bound: float | None = None,
    zero_bias: bool = False,
    name: str | None = None,
) -> nn.Dense:
    """A ``flax.linen.Dense`` initialized like ``torch.nn.Linear(fan_in, features)``.

    Args:
        features: output width.
        fan_in: input width (flax initializers do not see it for the bias, so it is passed in).
        use_bias: ``False`` where a normalization layer follows (adept's ``bias = not normalize``).
        weight_bound: overrides torch's ``1/sqrt(fan_in)`` weight bound (``LSTMCell`` uses
            ``1/sqrt(hidden)``).
        zero_bias: zero the bias instead of ``U(±1/sqrt(fan_in))`` (adept's LSTM cells).
        name: flax submodule name.
    """
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Dense(
        features,
        use_bias=use_bias,
        kernel_init=uniform_init(bound if weight_bound is None else weight_bound),
        bias_init=nn.initializers.zeros if zero_bias else uniform_init(bound),
        name=name,
    )


def kaiming_normal_fan_out() -> nn.initializers.Initializer:
    """``torch.nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")`` for flax kernels.

    ``N(0, 2 / fan_out)`` with ``fan_out = out_channels * kh * kw`` (untruncated), the init of
    every conv inside adept's (torchvision's) ResNets.
    """
    return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_conv(
    features: int,
    kernel_size: int,
    stride: int,
    padding: int,
    in_channels: int,
    *,
    use_bias: bool,
    weight_gain: float = RELU_GAIN,
    kernel_init: nn.initializers.Initializer | None = None,
    name: str | None = None,
) -> nn.Conv:
    """A channels-last ``flax.linen.Conv`` initialized like adept's ``torch.nn.Conv2d``.

    The weight is torch's default ``U(±1/sqrt(fan_in))`` times ``weight_gain`` (adept multiplies
    the trunk convs by the ReLU gain ``sqrt(2)``) unless ``kernel_init`` is given; the bias keeps
    ``U(±1/sqrt(fan_in))``. ``padding`` is torch's symmetric zero padding (0 is ``VALID``).

    The convolution is ``fnrl.networks._conv.conv_general_dilated``: ``lax``'s, except that on
    CPU it runs on chunks of the batch, which XLA:CPU computes faster (same numbers up to
    float32 rounding; params and layout are unchanged; reverse-mode gradients only).
    """
    fan_in = in_channels * kernel_size * kernel_size
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        kernel_init=uniform_init(weight_gain * bound) if kernel_init is None else kernel_init,
        bias_init=uniform_init(bound),
        conv_general_dilated=conv_general_dilated,
        name=name,
    )


def torch_layer_norm(name: str | None = None) -> nn.LayerNorm:
    """``torch.nn.LayerNorm`` over the last axis: eps 1e-5, weight 1, bias 0, biased variance."""
    return nn.LayerNorm(epsilon=TORCH_NORM_EPS, use_fast_variance=False, name=name)


NORMALIZATIONS = ("batch", "running", "layer")  # what normalizes; see ModularNetwork


def check_normalization(normalization: str) -> None:
    """Raises ``ValueError`` unless ``normalization`` is one of ``NORMALIZATIONS``."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"normalization must be 'batch' (adept: batch norm with the batch's statistics), "
            f"'running' (batch norm with the running statistics) or 'layer' (layer norm), "
            f"got {normalization!r}"
        )


class BatchNorm(nn.Module):
    """``torch.nn.BatchNorm{1,2}d`` over every axis but the last (channels-last), exactly.

    Params ``scale`` / ``bias`` ``[C]``; ``batch_stats`` ``mean`` / ``var`` ``[C]`` (torch's
    ``running_mean`` / ``running_var``) and ``count`` ``[]`` float32 (torch's
    ``num_batches_tracked``: how many updates the running statistics received).

    ``train=False`` normalizes with the running statistics and updates nothing (torch's
    ``eval()``). ``train=True`` updates the running statistics when the ``batch_stats``
    collection is mutable (``apply(..., mutable=["batch_stats"])``) and the module is not
    initializing: they move by ``momentum`` towards the batch mean and the *unbiased* batch
    variance, as torch does. What ``train=True`` normalizes with depends on
    ``use_batch_statistics``:

    * ``True`` (torch's ``train()``): the batch's mean and biased variance.
    * ``False``: the running statistics as they were before this call's update, so the output
      of each sample depends on that sample only (see ``ModularNetwork`` for when that matters).
      Until the statistics have received a first update
      (``count == 0``) the batch's statistics normalize, and the first update *replaces* the
      initial mean 0 / variance 1 instead of moving 10% of the way: a data-dependent start
      without which deep residual trunks, whose activations grow with depth when nothing
      normalizes them, start with values in the millions.

    Attributes:
        momentum: torch's momentum, the weight of the new statistic (flax's is ``1 - momentum``).
        epsilon: added to the variance.
        use_batch_statistics: with ``train=True``, normalize with the batch's statistics.
    """

    momentum: float = TORCH_BN_MOMENTUM
    epsilon: float = TORCH_NORM_EPS
    use_batch_statistics: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Normalizes ``x`` ``[..., C]`` per channel; returns ``[..., C]`` float32."""
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        count = self.variable("batch_stats", "count", jnp.zeros, (), jnp.float32)
        mean, var = ra_mean.value, ra_var.value

        if train:
            reduce_axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            batch_mean = jnp.mean(x, axis=reduce_axes)
            centered = x - jnp.mean(x, axis=reduce_axes, keepdims=True)
            batch_var = jnp.mean(jnp.square(centered), axis=reduce_axes)  # biased, two-pass
            # torch would raise for n == 1; keep the update finite instead.
            unbiased = batch_var * (n / max(n - 1, 1))
            momentum = self.momentum
            new_mean = (1.0 - momentum) * mean + momentum * batch_mean
            new_var = (1.0 - momentum) * var + momentum * unbiased
            if self.use_batch_statistics:
                mean, var = batch_mean, batch_var
            else:
                fresh = count.value == 0
                new_mean = jnp.where(fresh, batch_mean, new_mean)
                new_var = jnp.where(fresh, unbiased, new_var)
                mean = jnp.where(fresh, batch_mean, mean)
                var = jnp.where(fresh, batch_var, var)
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                ra_mean.value, ra_var.value = new_mean, new_var
                count.value = count.value + 1.0

        # Explicit [1, ..., 1, C] shapes: fnrl runs with jax_numpy_rank_promotion="raise".
        def expand(v: jax.Array) -> jax.Array:
            return v.reshape((1,) * (x.ndim - 1) + (features,))

        inv_std = jax.lax.rsqrt(var + self.epsilon)
        return (x - expand(mean)) * expand(inv_std * scale) + expand(bias)


class LayerNorm(nn.LayerNorm):
    """``torch.nn.LayerNorm`` over the last axis, called like ``BatchNorm``.

    Each sample is normalized by its own statistics, so ``train`` changes nothing and there is
    no state: acting, learning and evaluation compute the same function.
    """

    epsilon: float = TORCH_NORM_EPS
    use_fast_variance: bool = False

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:  # type: ignore[override]
        """Normalizes ``x`` ``[..., C]`` over ``C``; ``train`` is accepted and ignored."""
        del train
        return super().__call__(x)


def normalization_layer(normalization: str, name: str) -> BatchNorm | LayerNorm:
    """The layer that normalizes after a bias-free conv or Dense in ``normalization`` mode."""
    if normalization == "layer":
        return LayerNorm(name=name)
    return BatchNorm(use_batch_statistics=normalization == "batch", name=name)


def keeps_bias(normalize: bool, normalization: str) -> bool:
    """Whether a conv or Dense followed by the normalization of ``normalize`` keeps its bias.

    Batch norm subtracts a per-channel mean, which cancels a bias (adept drops it); layer norm
    subtracts the mean over channels, which does not.
    """
    return not normalize or normalization == "layer"


class Normalized(nn.Module):
    """Base of the built-in trunks and bodies: adept's ``--normalize`` and fnrl's normalization.

    Attributes:
        normalize: layers followed by a normalization layer (adept's ``--normalize``).
        normalization: ``"batch"`` (adept's and the default: batch norm with the batch's
            statistics while acting and learning), ``"running"`` (batch norm with the running
            statistics) or ``"layer"`` (layer norm); see ``ModularNetwork``.
    """

    normalize: bool = True
    normalization: str = "batch"

    def __post_init__(self) -> None:
        check_normalization(self.normalization)
        super().__post_init__()

    @property
    def use_bias(self) -> bool:
        """Whether a layer followed by this module's normalization keeps its bias."""
        return keeps_bias(self.normalize, self.normalization)

    @nn.nowrap
    def norm(self, name: str) -> BatchNorm | LayerNorm:
        """This module's normalization layer (see ``normalization_layer``)."""
        return normalization_layer(self.normalization, name)


def max_pool_2d(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """``torch.nn.MaxPool2d(window, stride, padding)`` on ``[B, H, W, C]`` (pads with -inf)."""
    pad = ((padding, padding), (padding, padding))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pad)


def avg_pool_2d(x: jax.Array, window: int, stride: int) -> jax.Array:
    """``torch.nn.AvgPool2d(window, stride)`` without padding on ``[B, H, W, C]``."""
    return nn.avg_pool(x, (window, window), strides=(stride, stride), padding="VALID")


def coordinate_channels(x: jax.Array) -> jax.Array:
    """Appends two channels holding each position's x then y coordinate in ``[-1, 1]``.

    adept's spatial-attention and RMC networks (after Zambaldi et al. 2018, "Relational Deep
    Reinforcement Learning"): ``linspace(-1, 1, W)`` along the width, then ``linspace(-1, 1, H)``
    along the height.

    Args:
        x: ``[B, H, W, C]``.

    Returns:
        ``[B, H, W, C + 2]``.
    """
    batch, height, width, _ = x.shape
    xs = jnp.broadcast_to(
        jnp.linspace(-1.0, 1.0, width).reshape(1, 1, width, 1), (batch, height, width, 1)
    )
    ys = jnp.broadcast_to(
        jnp.linspace(-1.0, 1.0, height).reshape(1, height, 1, 1), (batch, height, width, 1)
    )
    return jnp.concatenate([x, xs.astype(x.dtype), ys.astype(x.dtype)], axis=-1)
