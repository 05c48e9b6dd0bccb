"""PyTorch-default layers for flax: initializers, Dense / Conv factories, torch-exact BatchNorm.

adept builds every layer with PyTorch's defaults, so fnrl does too (parity item 7):

* ``nn.Linear`` / ``nn.Conv2d`` weights: ``kaiming_uniform_(a=sqrt(5))``, i.e.
  ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``; biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
* adept multiplies the vision trunks' conv weights by ``calculate_gain("relu") = sqrt(2)``.
* ``nn.BatchNorm{1,2}d``: momentum 0.1, eps 1e-5, normalizes with the biased batch variance but
  updates the running variance with the *unbiased* one (flax's ``nn.BatchNorm`` uses the biased
  one), weight 1, bias 0, running mean 0, running var 1.
* ``nn.LayerNorm``: eps 1e-5.

Layouts stay flax's (``Dense`` kernel ``[in, out]``, ``Conv`` kernel ``[kh, kw, in, out]``); the
conversion to a torch ``state_dict`` transposes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def torch_conv(
    features: int,
    kernel_size: int,
    stride: int,
    padding: int,
    in_channels: int,
    *,
    use_bias: bool,
    weight_gain: float = RELU_GAIN,
    name: str | None = None,
) -> nn.Conv:
    """A channels-last ``flax.linen.Conv`` initialized like adept's ``torch.nn.Conv2d``.

    The weight is torch's default ``U(±1/sqrt(fan_in))`` times ``weight_gain`` (adept multiplies
    the trunk convs by the ReLU gain ``sqrt(2)``); the bias keeps ``U(±1/sqrt(fan_in))``.
    ``padding`` is torch's symmetric zero padding (0 is ``VALID``).
    """
    fan_in = in_channels * kernel_size * kernel_size
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((padding, padding), (padding, padding)),
        use_bias=use_bias,
        kernel_init=uniform_init(weight_gain * bound),
        bias_init=uniform_init(bound),
        name=name,
    )


def torch_layer_norm(name: str | None = None) -> nn.LayerNorm:
    """``torch.nn.LayerNorm`` over the last axis: eps 1e-5, weight 1, bias 0, biased variance."""
    return nn.LayerNorm(epsilon=TORCH_NORM_EPS, use_fast_variance=False, name=name)


class BatchNorm(nn.Module):
    """``torch.nn.BatchNorm{1,2}d`` over every axis but the last (channels-last), exactly.

    Params ``scale`` / ``bias`` ``[C]``; ``batch_stats`` ``mean`` / ``var`` ``[C]`` (torch's
    ``running_mean`` / ``running_var``).

    With ``train=True`` the batch is normalized with its mean and biased variance; when the
    ``batch_stats`` collection is mutable (``apply(..., mutable=["batch_stats"])``) and the module
    is not initializing, the running statistics move by ``momentum`` towards the batch mean and
    the *unbiased* batch variance, as torch does. With ``train=False`` the running statistics are
    used and nothing is updated.

    Attributes:
        momentum: torch's momentum, the weight of the new statistic (flax's is ``1 - momentum``).
        epsilon: added to the variance.
    """

    momentum: float = TORCH_BN_MOMENTUM
    epsilon: float = TORCH_NORM_EPS

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        """Normalizes ``x`` ``[..., C]`` per channel; returns ``[..., C]`` float32."""
        features = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)

        if train:
            reduce_axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            mean = jnp.mean(x, axis=reduce_axes)
            centered = x - jnp.mean(x, axis=reduce_axes, keepdims=True)
            var = jnp.mean(jnp.square(centered), axis=reduce_axes)  # biased, two-pass
            if self.is_mutable_collection("batch_stats") and not self.is_initializing():
                # torch would raise for n == 1; keep the update finite instead.
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = (1.0 - self.momentum) * ra_mean.value + self.momentum * mean
                ra_var.value = (1.0 - self.momentum) * ra_var.value + self.momentum * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value

        # Explicit [1, ..., 1, C] shapes: fnrl runs with jax_numpy_rank_promotion="raise".
        def expand(v: jax.Array) -> jax.Array:
            return v.reshape((1,) * (x.ndim - 1) + (features,))

        inv_std = jax.lax.rsqrt(var + self.epsilon)
        return (x - expand(mean)) * expand(inv_std * scale) + expand(bias)
