"""Return targets, advantages and losses for time-major ``[T, B]`` rollouts.

Pure functions in rlax's conventions: ``r_t`` and ``discount_t`` follow the action taken at step
``t``, ``v_t`` values the state after it and ``v_tm1`` the state before it. The multi-step
estimators are rlax's single-trajectory primitives mapped over the batch axis ``B``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import rlax

from fnrl.distributions import Policy, entropy, log_prob, only_used

__all__ = [
    "VTraceOutput",
    "ValueFit",
    "clipped_surrogate_loss",
    "clipped_value_loss",
    "entropy",
    "entropy_loss",
    "explained_variance",
    "gae_advantages",
    "lambda_returns",
    "log_prob",
    "masked_mean",
    "n_step_returns",
    "normalize_advantages",
    "policy_gradient_loss",
    "value_loss",
    "vtrace",
]


def _over_batch(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """Maps a function of ``[T]`` sequences over the ``B`` axis of ``[T, B]`` arrays."""
    return jax.vmap(fn, in_axes=1, out_axes=1)


def _per_step(lambda_: jax.typing.ArrayLike, r_t: jax.Array) -> jax.Array:
    """Broadcasts a scalar or ``[T, B]`` ``lambda_`` to the shape and dtype of ``r_t``."""
    chex.assert_rank(lambda_, {0, 2})
    return jnp.full_like(r_t, lambda_)


def _check_sequences(
    r_t: jax.typing.ArrayLike, discount_t: jax.typing.ArrayLike, v_t: jax.typing.ArrayLike
) -> None:
    """Checks three float ``[T, B]`` arrays of the same shape."""
    chex.assert_rank([r_t, discount_t, v_t], 2)
    chex.assert_type([r_t, discount_t, v_t], float)
    chex.assert_equal_shape([r_t, discount_t, v_t])


def lambda_returns(
    r_t: jax.typing.ArrayLike,
    discount_t: jax.typing.ArrayLike,
    v_t: jax.typing.ArrayLike,
    lambda_: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """λ-returns ``G_t = r_t + discount_t ((1 - λ_t) v_t + λ_t G_{t+1})``, with ``G_T = v_t[T-1]``.

    See Sutton & Barto, "Reinforcement Learning: An Introduction" (2018), chapter 12. With
    ``lambda_ = 1`` these are the n-step critic targets of A3C (Mnih et al., 2016, "Asynchronous
    Methods for Deep Reinforcement Learning"): discounted rewards to the end of the rollout,
    bootstrapped from the value after its last step. A ``λ_t`` of 0 bootstraps from ``v_t[t]``
    and cuts the trace there, as needed at a time-limit truncation.

    Args:
      r_t: ``[T, B]`` rewards for the action at step ``t``.
      discount_t: ``[T, B]`` discounts after step ``t`` (0 where the episode terminated).
      v_t: ``[T, B]`` values of the state after step ``t``.
      lambda_: scalar or ``[T, B]`` mixing parameter.

    Returns:
      ``[T, B]`` returns ``G_t``.
    """
    _check_sequences(r_t, discount_t, v_t)
    r_t = jnp.asarray(r_t)
    return _over_batch(rlax.lambda_returns)(r_t, discount_t, v_t, _per_step(lambda_, r_t))


def n_step_returns(
    r_t: jax.typing.ArrayLike,
    discount_t: jax.typing.ArrayLike,
    v_t: jax.typing.ArrayLike,
    n: int,
    lambda_: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """n-step bootstrapped returns, the λ-return recursion truncated after ``n`` steps.

    ``G_t`` applies ``G = r_k + discount_k ((1 - λ_k) v_k + λ_k G)`` for ``k`` from
    ``min(t + n, T) - 1`` down to ``t``, starting from ``G = v_t[min(t + n, T) - 1]``; see
    ``rlax.n_step_bootstrapped_returns`` and Sutton & Barto (2018), chapter 7.

    Args:
      r_t: ``[T, B]`` rewards for the action at step ``t``.
      discount_t: ``[T, B]`` discounts after step ``t`` (0 where the episode terminated).
      v_t: ``[T, B]`` values of the state after step ``t``.
      n: number of rewards accumulated before bootstrapping, at least 1.
      lambda_: scalar or ``[T, B]`` mixing parameter.

    Returns:
      ``[T, B]`` returns ``G_t``.

    Raises:
      ValueError: if ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"n_step_returns needs n >= 1 rewards before bootstrapping, got n={n}.")
    _check_sequences(r_t, discount_t, v_t)
    r_t = jnp.asarray(r_t)

    def n_step(r, discount, v, lambda_t):  # n must stay a Python int: it sets slice sizes
        return rlax.n_step_bootstrapped_returns(r, discount, v, n, lambda_t)

    return _over_batch(n_step)(r_t, discount_t, v_t, _per_step(lambda_, r_t))


def gae_advantages(
    r_t: jax.typing.ArrayLike,
    discount_t: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    lambda_: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """Generalized advantage estimates ``A_t = δ_t + discount_t λ_t A_{t+1}``, with ``A_T = 0``.

    Here ``δ_t = r_t + discount_t values[t + 1] - values[t]``. See Schulman et al., 2016,
    "High-Dimensional Continuous Control Using Generalized Advantage Estimation".

    Args:
      r_t: ``[T, B]`` rewards for the action at step ``t``.
      discount_t: ``[T, B]`` discounts after step ``t`` (0 where the episode terminated).
      values: ``[T + 1, B]`` values of the observations ``0..T``.
      lambda_: scalar or ``[T, B]`` mixing parameter.

    Returns:
      ``[T, B]`` advantages, with gradients stopped.
    """
    values = jnp.asarray(values)
    _check_sequences(r_t, discount_t, values[1:])
    r_t = jnp.asarray(r_t)

    def gae(r, discount, lambda_t, v):
        return rlax.truncated_generalized_advantage_estimation(
            r, discount, lambda_t, v, stop_target_gradients=True
        )

    return _over_batch(gae)(r_t, discount_t, _per_step(lambda_, r_t), values)


class VTraceOutput(NamedTuple):
    """V-trace value targets and policy-gradient advantages for a ``[T, B]`` rollout."""

    targets: jax.Array  # [T, B] float: v_s, the value targets for values[:-1]
    pg_advantages: jax.Array  # [T, B] float: min(ρ̄_pg, ρ_s) (q_s - V(x_s))
    q_estimates: jax.Array  # [T, B] float: q_s = r_s + discount_s * (bootstrap of step s + 1)


def check_vtrace_thresholds(
    clip_rho_threshold: float, clip_c_threshold: float, clip_pg_rho_threshold: float
) -> None:
    """Raises ``ValueError`` naming the first V-trace clipping threshold that is negative."""
    thresholds = {
        "clip_rho_threshold": clip_rho_threshold,
        "clip_c_threshold": clip_c_threshold,
        "clip_pg_rho_threshold": clip_pg_rho_threshold,
    }
    for name, threshold in thresholds.items():
        if threshold < 0:
            raise ValueError(f"vtrace needs {name} >= 0 (1.0 in IMPALA), got {threshold}.")


def vtrace(
    r_t: jax.typing.ArrayLike,
    discount_t: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    rho_tm1: jax.typing.ArrayLike,
    lambda_: jax.typing.ArrayLike = 1.0,
    *,
    clip_rho_threshold: float = 1.0,
    clip_c_threshold: float = 1.0,
    clip_pg_rho_threshold: float = 1.0,
) -> VTraceOutput:
    """V-trace targets and advantages for off-policy actor-critic learning.

    Espeholt et al., 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
    Actor-Learner Architectures", section 4.1 and remark 2: with ``V_s = values[s]``,

    * ``δ_s = min(ρ̄, ρ_s) (r_s + discount_s V_{s+1} - V_s)``,
    * ``c_s = λ_s min(c̄, ρ_s)``,
    * ``v_s = V_s + δ_s + discount_s c_s (v_{s+1} - V_{s+1})``, with ``v_T = V_T``,
    * ``q_s = r_s + discount_s (λ_s v_{s+1} + (1 - λ_s) V_{s+1})``, with ``v_T = V_T``,
    * ``pg_advantage_s = min(ρ̄_pg, ρ_s) (q_s - V_s)``.

    With ``λ = 1`` this is the paper's recursion; a ``λ_s`` of 0 cuts the trace and bootstraps
    from ``V_{s+1}``, as needed at a time-limit truncation. On-policy (``ρ = 1``, ``c̄ >= 1``,
    ``ρ̄ >= 1``) the targets are the λ-returns and the advantages GAE(λ). The recursion is
    ``rlax.vtrace`` mapped over ``B``; rlax fixes ``c̄ = 1``, so its λ is scaled by
    ``min(c̄, ρ) / min(1, ρ)`` (exactly 1 when ``c̄ = 1``) to give ``c_s`` for any ``c̄``.

    Args:
      r_t: ``[T, B]`` rewards for the action at step ``t``.
      discount_t: ``[T, B]`` discounts after step ``t`` (0 where the episode terminated).
      values: ``[T + 1, B]`` values ``V`` of the observations ``0..T`` under the learned policy.
      rho_tm1: ``[T, B]`` importance ratios ``π(a_t|x_t) / μ(a_t|x_t)`` of the actions taken.
      lambda_: scalar or ``[T, B]`` trace parameter.
      clip_rho_threshold: ρ̄, clips the ratios in the TD errors (IMPALA default 1).
      clip_c_threshold: c̄, clips the ratios in the trace coefficients (IMPALA default 1).
      clip_pg_rho_threshold: ρ̄_pg, clips the ratios of the policy-gradient advantages
        (IMPALA default 1).

    Returns:
      ``[T, B]`` targets, advantages and q estimates, with gradients stopped.

    Raises:
      ValueError: a clipping threshold is negative.
    """
    check_vtrace_thresholds(clip_rho_threshold, clip_c_threshold, clip_pg_rho_threshold)
    values = jnp.asarray(values)
    _check_sequences(r_t, discount_t, values[1:])
    chex.assert_equal_shape([r_t, rho_tm1])
    chex.assert_type(rho_tm1, float)
    r_t, discount_t, rho_tm1 = jnp.asarray(r_t), jnp.asarray(discount_t), jnp.asarray(rho_tm1)
    values, rho_tm1 = jax.lax.stop_gradient(values), jax.lax.stop_gradient(rho_tm1)
    lambda_t = _per_step(lambda_, r_t)
    v_tm1, v_t = values[:-1], values[1:]

    unit_clipped = jnp.minimum(1.0, rho_tm1)
    safe_unit_clipped = jnp.where(unit_clipped > 0, unit_clipped, 1.0)
    c_scale = jnp.where(
        unit_clipped > 0, jnp.minimum(clip_c_threshold, rho_tm1) / safe_unit_clipped, 1.0
    )

    def errors(v_tm1, v_t, r, discount, rho, lambda_t):
        return rlax.vtrace(v_tm1, v_t, r, discount, rho, lambda_t, clip_rho_threshold)

    errors_tm1 = _over_batch(errors)(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_t * c_scale)
    targets = v_tm1 + errors_tm1
    bootstrap_t = jnp.concatenate(
        [lambda_t[:-1] * targets[1:] + (1.0 - lambda_t[:-1]) * v_t[:-1], v_t[-1:]]
    )
    q_estimates = r_t + discount_t * bootstrap_t
    pg_advantages = jnp.minimum(clip_pg_rho_threshold, rho_tm1) * (q_estimates - v_tm1)
    return VTraceOutput(targets, pg_advantages, q_estimates)


def masked_mean(x: jax.typing.ArrayLike, mask: jax.typing.ArrayLike) -> jax.Array:
    """Mean of ``x`` over the entries where ``mask`` is set; 0 when none is.

    Masked-out entries do not reach the result or its gradient, even when they are not finite.

    Args:
      x: array of any shape.
      mask: bool array of the same shape.

    Returns:
      Scalar mean.
    """
    chex.assert_equal_shape([x, mask])
    chex.assert_type(mask, bool)
    count = jnp.sum(mask)
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(count, 1)


def normalize_advantages(advantages: jax.typing.ArrayLike, mask: jax.typing.ArrayLike) -> jax.Array:
    """Standardizes advantages to ``(A - mean) / (std + 1e-5)`` over the entries in ``mask``.

    As in adept's actor-critic agents, and PPO (Schulman et al., 2017, "Proximal Policy
    Optimization Algorithms"), ``std`` is unbiased (denominator ``n - 1``, like ``torch.std``).
    Masked-out entries do not affect the statistics but are transformed with them too.

    Args:
      advantages: ``[T, B]`` advantages.
      mask: ``[T, B]`` bool, set where the step carries a learning signal.

    Returns:
      ``[T, B]`` normalized advantages.
    """
    chex.assert_rank(advantages, 2)
    centred = advantages - masked_mean(advantages, mask)
    count = jnp.sum(mask)
    variance = jnp.sum(jnp.where(mask, centred**2, 0.0)) / jnp.maximum(count - 1, 1)
    return centred / (jnp.sqrt(variance) + 1e-5)


def policy_gradient_loss(
    policy_t: Policy,
    a_t: jax.typing.ArrayLike,
    adv_t: jax.typing.ArrayLike,
    mask_t: jax.typing.ArrayLike,
    used_t: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Policy-gradient loss, the masked mean of ``-log π(a_t) * stop_gradient(adv_t)``.

    See Williams, 1992, "Simple Statistical Gradient-Following Algorithms for Connectionist
    Reinforcement Learning", and Mnih et al., 2016, "Asynchronous Methods for Deep Reinforcement
    Learning" (A3C).

    Args:
      policy_t: the policy being learned: ``[T, B, A]`` logits, or a
        :class:`~fnrl.distributions.Gaussian` of ``[T, B, D]``.
      a_t: ``[T, B]`` int actions taken (``[T, B, D]`` floats for a Gaussian).
      adv_t: ``[T, B]`` advantages of those actions; no gradient flows into them.
      mask_t: ``[T, B]`` bool, set where the step carries a learning signal.
      used_t: ``[T, B]`` bool, set where the env used the action (see
        :func:`~fnrl.distributions.used_actions`); elsewhere ``log π(a_t)`` counts as 0.
        None: everywhere.

    Returns:
      Scalar loss.
    """
    chex.assert_rank([adv_t, mask_t], 2)
    chex.assert_equal_shape([adv_t, mask_t])
    log_pi_t = only_used(log_prob(policy_t, a_t), used_t)
    chex.assert_equal_shape([log_pi_t, mask_t])
    return masked_mean(-log_pi_t * jax.lax.stop_gradient(adv_t), mask_t)


def entropy_loss(
    policy_t: Policy, mask_t: jax.typing.ArrayLike, used_t: jax.typing.ArrayLike | None = None
) -> jax.Array:
    """Entropy regularization loss, the masked mean of ``-entropy(policy_t)``.

    See Williams & Peng, 1991, "Function Optimization using Connectionist Reinforcement Learning
    Algorithms", and Mnih et al., 2016 (A3C).

    Args:
      policy_t: the policy being learned: ``[T, B, A]`` logits, or a
        :class:`~fnrl.distributions.Gaussian` of ``[T, B, D]``.
      mask_t: ``[T, B]`` bool, set where the step carries a learning signal.
      used_t: ``[T, B]`` bool, set where the env used the action; elsewhere the entropy counts
        as 0. None: everywhere.

    Returns:
      Scalar loss; minimizing it raises the entropy.
    """
    chex.assert_rank(mask_t, 2)
    entropy_t = only_used(entropy(policy_t), used_t)
    chex.assert_equal_shape([entropy_t, mask_t])
    return -masked_mean(entropy_t, mask_t)


def value_loss(
    v_tm1: jax.typing.ArrayLike, target_tm1: jax.typing.ArrayLike, mask_t: jax.typing.ArrayLike
) -> jax.Array:
    """Critic loss ``0.5 * masked_mean((stop_gradient(target_tm1) - v_tm1) ** 2)``.

    See Mnih et al., 2016, "Asynchronous Methods for Deep Reinforcement Learning" (A3C).

    Args:
      v_tm1: ``[T, B]`` values of the states the actions were taken in.
      target_tm1: ``[T, B]`` return targets for them; no gradient flows into them.
      mask_t: ``[T, B]`` bool, set where the step carries a learning signal.

    Returns:
      Scalar loss.
    """
    chex.assert_rank([v_tm1, target_tm1, mask_t], 2)
    chex.assert_equal_shape([v_tm1, target_tm1, mask_t])
    td_error = jax.lax.stop_gradient(target_tm1) - v_tm1
    return 0.5 * masked_mean(td_error**2, mask_t)


def clipped_surrogate_loss(
    log_ratio_t: jax.typing.ArrayLike,
    adv_t: jax.typing.ArrayLike,
    epsilon: float,
    mask_t: jax.typing.ArrayLike,
) -> jax.Array:
    """PPO's clipped surrogate objective, negated: a loss to minimize.

    ``-masked_mean(min(ρ_t A_t, clip(ρ_t, 1 - ε, 1 + ε) A_t))`` with the probability ratio
    ``ρ_t = exp(log_ratio_t)`` of the learned policy to the acting one (Schulman et al., 2017,
    "Proximal Policy Optimization Algorithms", eq. 7). rlax's ``clipped_surrogate_pg_loss``
    computes it unmasked.

    Args:
      log_ratio_t: ``[...]`` ``log π(a_t) - log π_old(a_t)``, differentiable.
      adv_t: ``[...]`` advantages; no gradient flows into them.
      epsilon: the clipping range ε.
      mask_t: ``[...]`` bool, set where the step carries a learning signal.

    Returns:
      Scalar loss.
    """
    chex.assert_equal_shape([log_ratio_t, adv_t, mask_t])
    adv_t = jax.lax.stop_gradient(adv_t)
    ratio_t = jnp.exp(log_ratio_t)
    clipped_t = jnp.clip(ratio_t, 1.0 - epsilon, 1.0 + epsilon)
    return -masked_mean(jnp.minimum(ratio_t * adv_t, clipped_t * adv_t), mask_t)


def clipped_value_loss(
    v_t: jax.typing.ArrayLike,
    old_v_t: jax.typing.ArrayLike,
    target_t: jax.typing.ArrayLike,
    epsilon: float,
    mask_t: jax.typing.ArrayLike,
) -> jax.Array:
    """PPO's clipped critic loss ``0.5 * masked_mean(max((v - G)^2, (v_clip - G)^2))``.

    ``v_clip = old_v + clip(v - old_v, -ε, ε)`` keeps the new value within ε of the acting
    one's (OpenAI Baselines' ``ppo2``, as in CleanRL's PPO; Andrychowicz et al., 2021, "What
    Matters In On-Policy Reinforcement Learning?", discuss its effect).

    Args:
      v_t: ``[...]`` values being learned.
      old_v_t: ``[...]`` the acting network's values; no gradient flows into them.
      target_t: ``[...]`` return targets; no gradient flows into them.
      epsilon: the clipping range ε.
      mask_t: ``[...]`` bool, set where the step carries a learning signal.

    Returns:
      Scalar loss.
    """
    chex.assert_equal_shape([v_t, old_v_t, target_t, mask_t])
    old_v_t, target_t = jax.lax.stop_gradient((old_v_t, target_t))
    clipped_v_t = old_v_t + jnp.clip(v_t - old_v_t, -epsilon, epsilon)
    squared = jnp.maximum((v_t - target_t) ** 2, (clipped_v_t - target_t) ** 2)
    return 0.5 * masked_mean(squared, mask_t)


class ValueFit(NamedTuple):
    """A critic's values on a batch and the targets it is fit to, for :func:`explained_variance`."""

    targets: jax.Array  # [...] float32: the value targets of the loss
    values: jax.Array  # [...] float32: the critic's values of the same steps
    mask: jax.Array  # [...] bool: the steps that carry a learning signal


def explained_variance(
    targets: jax.typing.ArrayLike,
    values: jax.typing.ArrayLike,
    mask: jax.typing.ArrayLike | None = None,
    *,
    axis_name: str | None = None,
) -> jax.Array:
    """The fraction of the variance of the value targets that the values explain.

    ``1 - Var[targets - values] / Var[targets]`` over the entries in ``mask``, with population
    variances, as Stable-Baselines3's ``explained_variance`` and CleanRL's PPO log it: 1 for a
    perfect critic, 0 for one that predicts the mean target, negative for a worse one. Where
    they return NaN, for targets with zero variance (or no entry in ``mask``), this returns 0,
    and a ratio too large for float32 is clipped to float32's most negative value, so the
    result is finite whenever the sums of squares are. The variances are two-pass sums of
    squares about the mean. No gradient flows through it.

    Args:
      targets: ``[...]`` value targets.
      values: ``[...]`` the critic's values of the same entries.
      mask: ``[...]`` bool, the entries that count; None: all of them.
      axis_name: inside ``shard_map`` (or ``vmap``) over a named axis, whose shards each hold a
        part of the batch: the counts and sums are added over it (``lax.psum``), so every shard
        returns the explained variance of the pooled batch. A count-weighted mean of the shards'
        ratios, as data-parallel updates average other metrics, would differ from it.

    Returns:
      Scalar float32.
    """
    chex.assert_equal_shape([targets, values])
    targets, values = jax.lax.stop_gradient(
        (jnp.asarray(targets, jnp.float32), jnp.asarray(values, jnp.float32))
    )
    mask = jnp.ones(targets.shape, bool) if mask is None else jnp.asarray(mask)
    chex.assert_equal_shape([targets, mask])
    chex.assert_type(mask, bool)

    def total(x: jax.Array) -> jax.Array:
        # Masked-out entries, which may not be finite, never reach the sums.
        s = jnp.sum(jnp.where(mask, x, 0.0))
        return s if axis_name is None else jax.lax.psum(s, axis_name)

    count = jnp.maximum(total(jnp.ones_like(targets)), 1.0)

    def sum_of_squares(x: jax.Array) -> jax.Array:
        return total(jnp.square(x - total(x) / count))

    target_squares = sum_of_squares(targets)
    error_squares = sum_of_squares(targets - values)
    spread = target_squares > 0
    ratio = error_squares / jnp.where(spread, target_squares, 1.0)
    return jnp.where(spread, jnp.maximum(1.0 - ratio, jnp.finfo(jnp.float32).min), 0.0)
