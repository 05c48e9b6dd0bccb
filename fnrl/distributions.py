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

from fnrl.specs import ActionSpec, DiscreteSpec
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


def mask_policies(
    specs: dict[str, ActionSpec], policies: dict[str, Policy], obs: dict[str, jax.Array]
) -> dict[str, Policy]:
    """The policies with the values each action's ``mask`` observation disallows at ``-inf``.

    Args:
      specs: action name -> spec; a :class:`~fnrl.specs.DiscreteSpec` with a ``mask`` names
        the observation of its ``[..., A]`` bool mask (set where a value may be chosen).
      policies: action name -> ``[..., A]`` logits (or a Gaussian, left as it is).
      obs: the observations the policies were computed from, with the same leading axes.

    Returns:
      The policies, masked logits in place of the logits of masked actions.
    """
    masked = dict(policies)
    for name, spec in specs.items():
        if isinstance(spec, DiscreteSpec) and spec.mask is not None:
            allowed = jnp.asarray(obs[spec.mask]).astype(bool)
            chex.assert_equal_shape([allowed, policies[name]])
            masked[name] = jnp.where(allowed, policies[name], -jnp.inf)
    return masked


def used_actions(
    specs: dict[str, ActionSpec], actions: dict[str, jax.Array]
) -> dict[str, jax.Array | None]:
    """Per action name, where it mattered: ``[...]`` bool from its ``used_when``, else None.

    An action with ``used_when=(key, used)`` mattered where ``used[actions[key]]`` is set
    (StarCraft II: an argument head, where the chosen function takes that argument).
    """
    used = {}
    for name, spec in specs.items():
        rule = spec.used_when if isinstance(spec, DiscreteSpec) else None
        used[name] = None if rule is None else jnp.asarray(rule[1], bool)[actions[rule[0]]]
    return used


def only_used(x: jax.Array, used: jax.Array | None) -> jax.Array:
    """``x`` where the action mattered, 0 elsewhere (``x`` itself when ``used`` is None)."""
    return x if used is None else jnp.where(used, x, 0.0)


def joint_log_prob(
    policies: dict[str, Policy],
    actions: dict[str, jax.Array],
    used: dict[str, jax.Array | None] | None = None,
) -> jax.Array:
    """``log π(a)`` of a dict action: the sum over action keys of each key's log-probability.

    With ``used`` (:func:`used_actions`), a key counts only where it mattered: the
    log-probability of what the env did with the action.
    """
    used = used or {}
    return sum(
        only_used(log_prob(policies[name], actions[name]), used.get(name))
        for name in sorted(actions)
    )


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
