"""Running z-score normalization of observations: adept's ``--zscore-norm-env`` as pure maths.

``ModularNetwork(zscore_norm_env=True)`` normalizes each vector observation with the running
mean and variance of every observation the learner has seen, as Stable-Baselines3's
``VecNormalize`` does (``stable_baselines3/common/vec_env/vec_normalize.py`` and
``running_mean_std.py``): ``clip((x - mean) / sqrt(var + 1e-8), -10, 10)``, statistics starting
at mean 0, variance 1 and a pseudo-count of 1e-4. The statistics are flax variables of the
non-trainable collection :data:`OBS_STATS`, so they travel with the params into acting,
learning, evaluation and checkpoints; the learner merges each update's new observations into
them (:func:`update_moments`, Chan et al. 1979, "Updating Formulae and a Pairwise Algorithm for
Computing Sample Variances").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp

OBS_STATS = "obs_stats"  # the flax collection that holds the running statistics
# Stable-Baselines3's VecNormalize and RunningMeanStd defaults.
ZSCORE_EPSILON = 1e-8  # added to the variance under the square root
ZSCORE_CLIP = 10.0  # normalized observations are clipped to [-10, 10]
INITIAL_COUNT = 1e-4  # the prior's weight: mean 0 and variance 1 count as 1e-4 samples


class RunningMoments(NamedTuple):
    """The mean and variance of every sample seen so far, per feature."""

    mean: jax.Array  # [*S] float32
    var: jax.Array  # [*S] float32, the population variance (divided by count, not count - 1)
    count: jax.Array  # [] float32, samples seen plus the prior's INITIAL_COUNT


def init_moments(shape: Sequence[int]) -> RunningMoments:
    """The prior: mean 0, variance 1, weighing ``INITIAL_COUNT`` samples (Stable-Baselines3's).

    Args:
        shape: the shape ``S`` of one sample.
    """
    return RunningMoments(
        mean=jnp.zeros(tuple(shape), jnp.float32),
        var=jnp.ones(tuple(shape), jnp.float32),
        count=jnp.full((), INITIAL_COUNT, jnp.float32),
    )


def batch_moments(x: jax.typing.ArrayLike, sample_ndim: int) -> RunningMoments:
    """The mean, population variance and count of a batch of samples.

    Args:
        x: ``[*N, *S]``: samples of shape ``S`` (its last ``sample_ndim`` axes) along every
            leading axis ``N``, e.g. ``[T, B, D]``.
        sample_ndim: the rank of one sample.
    """
    x = jnp.asarray(x, jnp.float32)
    if not 0 <= sample_ndim <= x.ndim:
        raise ValueError(f"sample_ndim must be in [0, {x.ndim}], got {sample_ndim}")
    axes = tuple(range(x.ndim - sample_ndim))
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - jnp.mean(x, axis=axes, keepdims=True)), axis=axes)  # two-pass
    count = jnp.full((), x.size // max(mean.size, 1), jnp.float32)
    return RunningMoments(mean, var, count)


def merge_moments(a: RunningMoments, b: RunningMoments) -> RunningMoments:
    """The moments of the union of two sets of samples, from the moments of each.

    Chan, Golub and LeVeque's pairwise update (Chan et al. 1979), as Stable-Baselines3's
    ``RunningMeanStd.update_from_moments``: with ``n = n_a + n_b`` and ``δ = mean_b - mean_a``,
    ``mean = mean_a + δ n_b / n`` and ``var = (var_a n_a + var_b n_b + δ² n_a n_b / n) / n``.

    Args:
        a, b: moments of the same sample shape ``S``.

    Returns:
        The merged moments, shaped like ``a``.
    """
    chex.assert_equal_shape((a.mean, a.var, b.mean, b.var))
    count = a.count + b.count
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.count / count)
    m2 = a.var * a.count + b.var * b.count + jnp.square(delta) * (a.count * b.count / count)
    return RunningMoments(mean, m2 / count, count)


def update_moments(moments: RunningMoments, x: jax.typing.ArrayLike) -> RunningMoments:
    """``moments`` with the samples ``x`` ``[*N, *S]`` merged in (see :func:`merge_moments`)."""
    return merge_moments(moments, batch_moments(x, jnp.ndim(moments.mean)))


def zscore_normalize(moments: RunningMoments, x: jax.typing.ArrayLike) -> jax.Array:
    """``clip((x - mean) / sqrt(var + 1e-8), -10, 10)``, Stable-Baselines3's ``VecNormalize``.

    Args:
        moments: the running statistics, sample shape ``S``.
        x: ``[*N, *S]`` samples.

    Returns:
        ``[*N, *S]`` float32.
    """
    x = jnp.asarray(x, jnp.float32)
    lead = (1,) * (x.ndim - jnp.ndim(moments.mean))  # explicit: rank promotion raises in tests
    mean = moments.mean.reshape(lead + moments.mean.shape)
    scale = jax.lax.rsqrt(moments.var + ZSCORE_EPSILON).reshape(lead + moments.var.shape)
    return jnp.clip((x - mean) * scale, -ZSCORE_CLIP, ZSCORE_CLIP)


def pool_moments(moments: RunningMoments, axis_name: str) -> RunningMoments:
    """The moments of the union of what every device along ``axis_name`` merged.

    Inside a data-parallel update each of ``D`` devices merged its own shard of new samples into
    the same (replicated) statistics. With equal shard sizes, pooling the devices' moments as
    equally weighted sets (the mean of their means; the mean of their variances plus the
    variance of their means, the between-shard term) gives the moments of every sample seen,
    exactly as one device that saw them all would, except for the prior: its pseudo-count
    ``INITIAL_COUNT`` weighs as ``D * INITIAL_COUNT`` samples. ``count`` stays one device's.

    Args:
        moments: this device's merged moments.
        axis_name: the mapped axis of the devices (inside ``shard_map``).

    Returns:
        The pooled moments, equal on every device.
    """
    mean = jax.lax.pmean(moments.mean, axis_name)
    var = jax.lax.pmean(moments.var + jnp.square(moments.mean - mean), axis_name)
    return RunningMoments(mean, var, jax.lax.pmean(moments.count, axis_name))
