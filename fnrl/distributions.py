"""The policies of one action key: categorical over discrete actions, diagonal Gaussian over Box.

A network head gives, per action key, either an array of logits ``[..., A]`` (a
:class:`~fnrl.specs.DiscreteSpec`) or a :class:`Gaussian` of mean and log standard deviation
``[..., D]`` (a :class:`~fnrl.specs.BoxSpec`). The functions here take either and dispatch on its
type while tracing, so that every agent's loss treats both alike. The Gaussian's samples are not
clipped to the action bounds: the env adapter clips them on the way to the env, and the learner
sees the sample the policy drew (clipping first would bias its log-probability).
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import distrax
import jax
import jax.numpy as jnp

from fnrl.types import PRNGKey


class Gaussian(NamedTuple):
    """A diagonal Gaussian policy over a continuous action of ``D`` entries.

    The log standard deviation is state-independent (a learned vector, as in Schulman et al.
    2017's continuous-control PPO); a head broadcasts it to the mean's shape so that every leaf
    has the same batch axes.
    """

    mean: jax.Array  # [..., D]
    log_std: jax.Array  # [..., D]


Policy = jax.Array | Gaussian  # categorical logits [..., A], or a diagonal Gaussian


def _normal(policy: Gaussian) -> distrax.MultivariateNormalDiag:
    chex.assert_equal_shape([policy.mean, policy.log_std])
    return distrax.MultivariateNormalDiag(policy.mean, jnp.exp(policy.log_std))


def log_prob(policy: Policy, a: jax.typing.ArrayLike) -> jax.Array:
    """Log-probability of actions: ``log softmax(logits)[a]``, or the Gaussian's log density.

    Args:
      policy: ``[..., A]`` logits with ``a`` ``[...]`` int actions, or a :class:`Gaussian` of
        ``[..., D]`` with ``a`` ``[..., D]`` float actions (summed over the ``D`` entries).

    Returns:
      ``[...]`` log-probabilities (log densities for a Gaussian).
    """
    if isinstance(policy, Gaussian):
        chex.assert_equal_shape([policy.mean, a])
        return _normal(policy).log_prob(a)
    chex.assert_rank(policy, jnp.ndim(a) + 1)
    chex.assert_equal_shape_prefix([policy, a], jnp.ndim(a))
    chex.assert_type(a, int)
    log_pi = jax.nn.log_softmax(policy)
    return jnp.take_along_axis(log_pi, jnp.expand_dims(a, -1), axis=-1)[..., 0]


def entropy(policy: Policy) -> jax.Array:
    """Entropy: ``-sum_a p_a log p_a`` of ``softmax(logits)``, or the Gaussian's differential one.

    Logits of ``-inf`` (actions masked out) contribute 0, with finite gradients. A diagonal
    Gaussian's entropy is ``sum_d (log_std_d + 0.5 log(2 π e))``.

    Args:
      policy: ``[..., A]`` logits or a :class:`Gaussian` of ``[..., D]``.

    Returns:
      ``[...]`` entropies.
    """
    if isinstance(policy, Gaussian):
        return _normal(policy).entropy()
    chex.assert_type(policy, float)
    log_pi = jax.nn.log_softmax(policy)
    # Zeroing log p where p = 0 before the product keeps 0 * -inf out of both passes.
    safe_log_pi = jnp.where(jnp.isneginf(log_pi), 0.0, log_pi)
    return -jnp.sum(jnp.exp(log_pi) * safe_log_pi, axis=-1)


def joint_log_prob(policies: dict[str, Policy], actions: dict[str, jax.Array]) -> jax.Array:
    """``log π(a)`` of a dict action: the sum over action keys of each key's log-probability."""
    return sum(log_prob(policies[name], actions[name]) for name in sorted(actions))


def sample(key: PRNGKey, policy: Policy) -> jax.Array:
    """One action per row: ``[...]`` int32 from the logits, or ``[..., D]`` float32, unclipped.

    The key is consumed.
    """
    if isinstance(policy, Gaussian):
        return _normal(policy).sample(seed=key).astype(jnp.float32)
    return jax.random.categorical(key, policy).astype(jnp.int32)


def mode(policy: Policy) -> jax.Array:
    """The most probable action per row: the argmax of the logits (int32), or the mean."""
    if isinstance(policy, Gaussian):
        return policy.mean
    return jnp.argmax(policy, axis=-1).astype(jnp.int32)
