"""Tests for fnrl.losses: Python-loop references, hand-computed values and properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from fnrl import losses
from fnrl.losses import (
    clipped_surrogate_loss,
    clipped_value_loss,
    entropy,
    entropy_loss,
    explained_variance,
    gae_advantages,
    lambda_returns,
    log_prob,
    masked_mean,
    n_step_returns,
    normalize_advantages,
    policy_gradient_loss,
    value_loss,
    vtrace,
)

SHAPES = [(1, 1), (5, 3), (8, 2)]
TOL = dict(rtol=1e-5, atol=1e-5)


def _rollout(seed, T, B):
    """Random float32 rewards, discounts with episode ends, values [T + 1, B] and lambdas."""
    rng = np.random.default_rng(seed)
    r_t = rng.normal(size=(T, B)).astype(np.float32)
    discount_t = (0.9 * (rng.random((T, B)) > 0.3)).astype(np.float32)
    values = rng.normal(size=(T + 1, B)).astype(np.float32)
    lambda_t = (rng.random((T, B)) * (rng.random((T, B)) > 0.3)).astype(np.float32)
    return r_t, discount_t, values, lambda_t


def _lambda_returns_loop(r_t, discount_t, v_t, lambda_t):
    T, B = r_t.shape
    g = np.zeros((T, B))
    for b in range(B):
        g_next = v_t[T - 1, b]
        for t in reversed(range(T)):
            mix = (1 - lambda_t[t, b]) * v_t[t, b] + lambda_t[t, b] * g_next
            g[t, b] = g_next = r_t[t, b] + discount_t[t, b] * mix
    return g


def _n_step_returns_loop(r_t, discount_t, v_t, n, lambda_t):
    T, B = r_t.shape
    g = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            end = min(t + n, T)
            g_k = v_t[end - 1, b]
            for k in reversed(range(t, end)):
                mix = (1 - lambda_t[k, b]) * v_t[k, b] + lambda_t[k, b] * g_k
                g_k = r_t[k, b] + discount_t[k, b] * mix
            g[t, b] = g_k
    return g


def _gae_loop(r_t, discount_t, values, lambda_t):
    T, B = r_t.shape
    adv = np.zeros((T, B))
    for b in range(B):
        a_next = 0.0
        for t in reversed(range(T)):
            delta = r_t[t, b] + discount_t[t, b] * values[t + 1, b] - values[t, b]
            adv[t, b] = a_next = delta + discount_t[t, b] * lambda_t[t, b] * a_next
    return adv


def test_public_api_is_exported():
    for name in losses.__all__:
        assert callable(getattr(losses, name))


@pytest.mark.parametrize("T, B", SHAPES)
def test_lambda_returns_equal_python_loop(T, B):
    r_t, discount_t, values, lambda_t = _rollout(0, T, B)
    got = lambda_returns(r_t, discount_t, values[1:], lambda_t)
    assert got.shape == (T, B) and got.dtype == jnp.float32
    np.testing.assert_allclose(
        got, _lambda_returns_loop(r_t, discount_t, values[1:], lambda_t), **TOL
    )


def test_lambda_returns_with_unit_lambda_are_discounted_rewards_bootstrapped_at_the_end():
    r_t = np.array([[1.0], [2.0], [3.0]], np.float32)
    discount_t = np.array([[0.5], [0.0], [0.5]], np.float32)
    v_t = np.array([[10.0], [20.0], [4.0]], np.float32)
    # The episode ends after step 1; step 2 starts a new one that bootstraps from v_t[2].
    want = [[1.0 + 0.5 * 2.0], [2.0], [3.0 + 0.5 * 4.0]]
    np.testing.assert_allclose(lambda_returns(r_t, discount_t, v_t), want, **TOL)


def test_lambda_returns_with_zero_lambda_bootstrap_at_that_step():
    r_t = np.array([[1.0], [2.0], [3.0]], np.float32)
    discount_t = np.full((3, 1), 0.5, np.float32)
    v_t = np.array([[10.0], [20.0], [4.0]], np.float32)
    lambda_t = np.array([[1.0], [0.0], [1.0]], np.float32)  # a time limit cut after step 1
    want_1 = 2.0 + 0.5 * 20.0
    want = [[1.0 + 0.5 * want_1], [want_1], [3.0 + 0.5 * 4.0]]
    np.testing.assert_allclose(lambda_returns(r_t, discount_t, v_t, lambda_t), want, **TOL)


@pytest.mark.parametrize("T, B", SHAPES)
@pytest.mark.parametrize("n", [1, 3, 10])
def test_n_step_returns_equal_python_loop(T, B, n):
    r_t, discount_t, values, lambda_t = _rollout(1, T, B)
    got = n_step_returns(r_t, discount_t, values[1:], n, lambda_t)
    assert got.shape == (T, B) and got.dtype == jnp.float32
    want = _n_step_returns_loop(r_t, discount_t, values[1:], n, lambda_t)
    np.testing.assert_allclose(got, want, **TOL)


@pytest.mark.parametrize("T, B", SHAPES)
def test_n_step_returns_with_n_equal_T_equal_lambda_returns(T, B):
    r_t, discount_t, values, _ = _rollout(2, T, B)
    np.testing.assert_allclose(
        n_step_returns(r_t, discount_t, values[1:], T),
        lambda_returns(r_t, discount_t, values[1:], 1.0),
        **TOL,
    )


def test_n_step_returns_rejects_n_below_one():
    r_t, discount_t, values, _ = _rollout(3, 4, 2)
    with pytest.raises(ValueError, match="n >= 1"):
        n_step_returns(r_t, discount_t, values[1:], 0)


@pytest.mark.parametrize("T, B", SHAPES)
def test_gae_advantages_equal_python_loop(T, B):
    r_t, discount_t, values, lambda_t = _rollout(4, T, B)
    got = gae_advantages(r_t, discount_t, values, lambda_t)
    assert got.shape == (T, B) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _gae_loop(r_t, discount_t, values, lambda_t), **TOL)


@pytest.mark.parametrize("T, B", SHAPES)
def test_gae_advantages_with_unit_lambda_equal_lambda_returns_minus_values(T, B):
    r_t, discount_t, values, _ = _rollout(5, T, B)
    want = lambda_returns(r_t, discount_t, values[1:], 1.0) - values[:-1]
    np.testing.assert_allclose(gae_advantages(r_t, discount_t, values, 1.0), want, **TOL)


def test_gae_advantages_with_zero_lambda_equal_one_step_td_errors():
    r_t, discount_t, values, _ = _rollout(6, 5, 3)
    want = r_t + discount_t * values[1:] - values[:-1]
    np.testing.assert_allclose(gae_advantages(r_t, discount_t, values, 0.0), want, **TOL)


def test_gae_advantages_stop_gradient():
    r_t, discount_t, values, lambda_t = _rollout(7, 5, 3)
    grad = jax.grad(lambda v: jnp.sum(gae_advantages(r_t, discount_t, v, lambda_t)))(values)
    np.testing.assert_array_equal(grad, np.zeros_like(values))


def test_masked_mean_averages_only_masked_entries_and_is_zero_when_none():
    x = np.array([[1.0, np.nan], [3.0, np.inf]], np.float32)
    mask = np.array([[True, False], [True, False]])
    assert masked_mean(x, mask) == pytest.approx(2.0)
    assert masked_mean(x, np.zeros_like(mask)) == 0.0
    grad = jax.grad(masked_mean)(x, mask)
    np.testing.assert_array_equal(grad, [[0.5, 0.0], [0.5, 0.0]])


def test_normalize_advantages_uses_unbiased_std_of_masked_entries():
    rng = np.random.default_rng(8)
    adv = rng.normal(2.0, 3.0, size=(6, 4)).astype(np.float32)
    mask = rng.random((6, 4)) > 0.4
    kept = adv[mask]
    want = (adv - kept.mean()) / (kept.std(ddof=1) + 1e-5)
    got = normalize_advantages(adv, mask)
    assert got.shape == adv.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, **TOL)
    changed = normalize_advantages(np.where(mask, adv, 1e3), mask)
    np.testing.assert_allclose(changed[mask], got[mask], **TOL)


def test_log_prob_selects_log_softmax_of_action():
    logits = np.array([[[0.0, np.log(3.0)], [1.0, 1.0]]], np.float32)  # [1, 2, 2]
    a = np.array([[1, 0]], np.int32)
    got = log_prob(logits, a)
    assert got.shape == (1, 2) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, np.log([[0.75, 0.5]]), **TOL)


def test_entropy_matches_numpy_and_is_finite_with_neg_inf_logit():
    logits = np.array([[0.0, np.log(3.0), -np.inf], [0.0, 0.0, 0.0]], np.float32)
    got = entropy(logits)
    assert got.shape == (2,) and got.dtype == jnp.float32
    np.testing.assert_allclose(
        got, [-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)), np.log(3)], **TOL
    )
    grad = jax.grad(lambda x: jnp.sum(entropy(x)))(logits)
    assert np.all(np.isfinite(grad))


def _tiny_batch():
    """T = 2, B = 2, A = 2 with step (1, 1) masked out and filled with garbage."""
    logits_t = np.array(
        [[[0.0, np.log(3.0)], [0.0, 0.0]], [[np.log(3.0), 0.0], [5.0, -np.inf]]], np.float32
    )
    a_t = np.array([[1, 0], [1, 1]], np.int32)
    adv_t = np.array([[2.0, -1.0], [0.5, np.nan]], np.float32)
    mask_t = np.array([[True, True], [True, False]])
    return logits_t, a_t, adv_t, mask_t


def test_policy_gradient_loss_equals_hand_computed_value():
    logits_t, a_t, adv_t, mask_t = _tiny_batch()
    want = -(np.log(0.75) * 2.0 + np.log(0.5) * -1.0 + np.log(0.25) * 0.5) / 3
    got = policy_gradient_loss(logits_t, a_t, adv_t, mask_t)
    assert got.shape == () and got.dtype == jnp.float32
    assert got == pytest.approx(want, rel=1e-5)


def test_policy_gradient_loss_ignores_masked_entries():
    logits_t, a_t, adv_t, mask_t = _tiny_batch()
    want = policy_gradient_loss(logits_t, a_t, adv_t, mask_t)
    logits_t[1, 1], a_t[1, 1], adv_t[1, 1] = [-3.0, 7.0], 0, 100.0
    assert policy_gradient_loss(logits_t, a_t, adv_t, mask_t) == pytest.approx(float(want))


def test_policy_gradient_loss_has_no_gradient_wrt_advantages():
    logits_t, a_t, adv_t, mask_t = _tiny_batch()
    adv_t = np.nan_to_num(adv_t)
    grad = jax.grad(policy_gradient_loss, argnums=2)(logits_t, a_t, adv_t, mask_t)
    np.testing.assert_array_equal(grad, np.zeros_like(adv_t))


def test_entropy_loss_equals_hand_computed_value_and_ignores_masked_entries():
    logits_t, _, _, mask_t = _tiny_batch()
    h_skewed = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    want = -(h_skewed + np.log(2.0) + h_skewed) / 3
    got = entropy_loss(logits_t, mask_t)
    assert got.shape == () and got.dtype == jnp.float32
    assert got == pytest.approx(want, rel=1e-5)
    logits_t[1, 1] = [0.0, 0.0]
    assert entropy_loss(logits_t, mask_t) == pytest.approx(float(got))


def test_value_loss_equals_hand_computed_value_and_stops_target_gradient():
    v_tm1 = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    target_tm1 = np.array([[2.0, 0.0], [3.0, 99.0]], np.float32)
    mask_t = np.array([[True, True], [True, False]])
    got = value_loss(v_tm1, target_tm1, mask_t)
    assert got.shape == () and got.dtype == jnp.float32
    assert got == pytest.approx(0.5 * (1.0 + 4.0 + 0.0) / 3)
    grad_v, grad_target = jax.grad(value_loss, argnums=(0, 1))(v_tm1, target_tm1, mask_t)
    np.testing.assert_allclose(grad_v, [[-1.0 / 3, 2.0 / 3], [0.0, 0.0]], **TOL)
    np.testing.assert_array_equal(grad_target, np.zeros_like(target_tm1))


def _jit_cases():
    r_t, discount_t, values, lambda_t = _rollout(9, 4, 3)
    logits_t, a_t, adv_t, mask_t = _tiny_batch()
    adv_t = np.nan_to_num(adv_t)
    return {
        "lambda_returns": (lambda_returns, (r_t, discount_t, values[1:], lambda_t)),
        "n_step_returns": (lambda *x: n_step_returns(*x, n=2), (r_t, discount_t, values[1:])),
        "gae_advantages": (gae_advantages, (r_t, discount_t, values, lambda_t)),
        "masked_mean": (masked_mean, (adv_t, mask_t)),
        "normalize_advantages": (normalize_advantages, (adv_t, mask_t)),
        "log_prob": (log_prob, (logits_t, a_t)),
        "entropy": (entropy, (logits_t,)),
        "policy_gradient_loss": (policy_gradient_loss, (logits_t, a_t, adv_t, mask_t)),
        "entropy_loss": (entropy_loss, (logits_t, mask_t)),
        "value_loss": (value_loss, (r_t, values[1:], discount_t > 0)),
        "vtrace": (vtrace, (r_t, discount_t, values, np.exp(r_t), lambda_t)),
    }


@pytest.mark.parametrize("name", sorted(_jit_cases()))
def test_jit_gives_the_same_result(name):
    fn, args = _jit_cases()[name]
    np.testing.assert_allclose(jax.jit(fn)(*args), fn(*args), **TOL)


def _importance_ratios(seed, T, B):
    """Ratios spread over both sides of 1 (log-normal), as off-policy data gives."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0.0, 0.8, size=(T, B))).astype(np.float32)


def _vtrace_loop(r_t, discount_t, values, rho_t, lambda_t, rho_bar, c_bar, pg_rho_bar):
    """The recursion of Espeholt et al. (2018), section 4.1, one step at a time."""
    T, B = r_t.shape
    targets, advantages = np.zeros((T, B)), np.zeros((T, B))
    for b in range(B):
        v_next = values[T, b]  # v_T = V(x_T)
        for s in reversed(range(T)):
            rho, d, lam = rho_t[s, b], discount_t[s, b], lambda_t[s, b]
            delta = min(rho_bar, rho) * (r_t[s, b] + d * values[s + 1, b] - values[s, b])
            c = lam * min(c_bar, rho)
            target = values[s, b] + delta + d * c * (v_next - values[s + 1, b])
            q = r_t[s, b] + d * (lam * v_next + (1 - lam) * values[s + 1, b])
            advantages[s, b] = min(pg_rho_bar, rho) * (q - values[s, b])
            targets[s, b] = v_next = target
    return targets, advantages


@pytest.mark.parametrize("T, B", SHAPES)
@pytest.mark.parametrize("rho_bar, c_bar, pg_rho_bar", [(1.0, 1.0, 1.0), (0.8, 1.5, 0.5)])
def test_vtrace_equals_python_loop_with_episode_ends(T, B, rho_bar, c_bar, pg_rho_bar):
    r_t, discount_t, values, lambda_t = _rollout(10, T, B)  # zero discounts and lambdas inside
    rho_t = _importance_ratios(11, T, B)
    got = vtrace(
        r_t,
        discount_t,
        values,
        rho_t,
        lambda_t,
        clip_rho_threshold=rho_bar,
        clip_c_threshold=c_bar,
        clip_pg_rho_threshold=pg_rho_bar,
    )
    want_targets, want_advantages = _vtrace_loop(
        r_t, discount_t, values, rho_t, lambda_t, rho_bar, c_bar, pg_rho_bar
    )
    assert got.targets.shape == (T, B) and got.targets.dtype == jnp.float32
    assert got.pg_advantages.shape == (T, B) and got.pg_advantages.dtype == jnp.float32
    np.testing.assert_allclose(got.targets, want_targets, **TOL)
    np.testing.assert_allclose(got.pg_advantages, want_advantages, **TOL)


@pytest.mark.parametrize("c_bar", [1.0, 2.0])
def test_vtrace_equals_lambda_returns_on_policy(c_bar):
    r_t, discount_t, values, lambda_t = _rollout(12, 8, 3)
    on_policy = np.ones_like(r_t)
    got = vtrace(r_t, discount_t, values, on_policy, lambda_t, clip_c_threshold=c_bar)
    np.testing.assert_allclose(
        got.targets, lambda_returns(r_t, discount_t, values[1:], lambda_t), **TOL
    )
    np.testing.assert_allclose(
        got.pg_advantages, gae_advantages(r_t, discount_t, values, lambda_t), **TOL
    )


def test_vtrace_clips_ratios_as_specified():
    # T = 2, B = 1, discount 0.5, V = [1, 2, 4], rewards 1; rho_0 = 3 (above 1), rho_1 = 0.5.
    r_t = np.ones((2, 1), np.float32)
    discount_t = np.full((2, 1), 0.5, np.float32)
    values = np.array([[1.0], [2.0], [4.0]], np.float32)
    rho_t = np.array([[3.0], [0.5]], np.float32)
    # rho_bar = c_bar = pg_rho_bar = 1: delta_1 = 0.5 (1 + 2 - 2), v_1 = 2.5; delta_0 = 1
    # (clipped from 3), c_0 = 1, v_0 = 1 + 1 + 0.5 * 0.5 = 2.25; q_0 = 1 + 0.5 * 2.5 = 2.25,
    # advantage_0 = 1 * 1.25; q_1 = 1 + 0.5 * 4 = 3, advantage_1 = 0.5 * 1.
    clipped = vtrace(r_t, discount_t, values, rho_t)
    np.testing.assert_allclose(clipped.targets, [[2.25], [2.5]], **TOL)
    np.testing.assert_allclose(clipped.pg_advantages, [[1.25], [0.5]], **TOL)
    np.testing.assert_allclose(clipped.q_estimates, [[2.25], [3.0]], **TOL)
    # No clipping: delta_0 = 3, c_0 = 3, v_0 = 1 + 3 + 0.5 * 3 * 0.5; advantage_0 = 3 * 1.25.
    loose = dict(clip_rho_threshold=10.0, clip_c_threshold=10.0, clip_pg_rho_threshold=10.0)
    unclipped = vtrace(r_t, discount_t, values, rho_t, **loose)
    np.testing.assert_allclose(unclipped.targets, [[4.75], [2.5]], **TOL)
    np.testing.assert_allclose(unclipped.pg_advantages, [[3.75], [0.5]], **TOL)
    # c_bar = 0 cuts every trace: one-step TD targets V + min(rho_bar, rho) delta.
    one_step = vtrace(r_t, discount_t, values, rho_t, clip_c_threshold=0.0)
    np.testing.assert_allclose(one_step.targets, [[2.0], [2.5]], **TOL)
    # Each threshold only clips its own term.
    only_pg = vtrace(r_t, discount_t, values, rho_t, clip_rho_threshold=10.0, clip_c_threshold=10)
    np.testing.assert_allclose(only_pg.targets, unclipped.targets, **TOL)
    np.testing.assert_allclose(only_pg.pg_advantages, [[1.25], [0.5]], **TOL)


def test_vtrace_with_all_ratios_above_the_thresholds_is_on_policy():
    r_t, discount_t, values, lambda_t = _rollout(13, 6, 2)
    far_off = np.full_like(r_t, 5.0)
    got = vtrace(r_t, discount_t, values, far_off, lambda_t)
    want = vtrace(r_t, discount_t, values, np.ones_like(r_t), lambda_t)
    np.testing.assert_allclose(got.targets, want.targets, **TOL)
    np.testing.assert_allclose(got.pg_advantages, want.pg_advantages, **TOL)


def test_vtrace_stops_gradients_and_rejects_negative_thresholds():
    r_t, discount_t, values, lambda_t = _rollout(14, 5, 3)
    rho_t = _importance_ratios(15, 5, 3)

    def total(v, rho):
        out = vtrace(r_t, discount_t, v, rho, lambda_t)
        return jnp.sum(out.targets) + jnp.sum(out.pg_advantages) + jnp.sum(out.q_estimates)

    grad_v, grad_rho = jax.grad(total, argnums=(0, 1))(values, rho_t)
    np.testing.assert_array_equal(grad_v, np.zeros_like(values))
    np.testing.assert_array_equal(grad_rho, np.zeros_like(rho_t))
    with pytest.raises(ValueError, match="clip_c_threshold >= 0"):
        vtrace(r_t, discount_t, values, rho_t, clip_c_threshold=-1.0)


def test_clipped_surrogate_loss_equals_hand_computed_value_in_both_branches():
    # ratios 1.5 (clipped to 1.2 for A > 0), 0.5 (clipped to 0.8 for A < 0: min keeps 0.8 * -1),
    # 1.1 (inside the range), and a masked-out entry.
    ratio_t = np.array([1.5, 0.5, 1.1, 3.0], np.float32)
    adv_t = np.array([2.0, -1.0, 4.0, 100.0], np.float32)
    mask_t = np.array([True, True, True, False])
    got = clipped_surrogate_loss(np.log(ratio_t), adv_t, 0.2, mask_t)
    assert got.shape == () and got.dtype == jnp.float32
    assert got == pytest.approx(-(1.2 * 2.0 + 0.8 * -1.0 + 1.1 * 4.0) / 3, rel=1e-6)
    grad_log_ratio, grad_adv = jax.grad(clipped_surrogate_loss, argnums=(0, 1))(
        np.log(ratio_t), adv_t, 0.2, mask_t
    )
    # Clipped entries carry no gradient; the unclipped one d(-ρA/3)/d log ρ = -ρA/3.
    np.testing.assert_allclose(grad_log_ratio, [0.0, 0.0, -1.1 * 4.0 / 3, 0.0], **TOL)
    np.testing.assert_array_equal(grad_adv, np.zeros_like(adv_t))


def test_clipped_surrogate_loss_equals_rlax_when_every_step_counts():
    rng = np.random.default_rng(3)
    log_ratio_t = rng.normal(0.0, 0.3, size=7).astype(np.float32)
    adv_t = rng.normal(size=7).astype(np.float32)
    want = rlax.clipped_surrogate_pg_loss(np.exp(log_ratio_t), adv_t, 0.1)
    got = clipped_surrogate_loss(log_ratio_t, adv_t, 0.1, np.ones(7, bool))
    assert got == pytest.approx(float(want), rel=1e-5)


def test_clipped_value_loss_equals_hand_computed_value():
    # v moved +0.5 and -0.05 from old (clip 0.2), target 2.0 and 0.0; the third is masked.
    v_t = np.array([1.5, 0.95, 7.0], np.float32)
    old_v_t = np.array([1.0, 1.0, 0.0], np.float32)
    target_t = np.array([2.0, 0.0, 0.0], np.float32)
    mask_t = np.array([True, True, False])
    got = clipped_value_loss(v_t, old_v_t, target_t, 0.2, mask_t)
    # first: max((1.5-2)^2, (1.2-2)^2) = 0.64; second: max(0.95^2, 0.95^2) = 0.9025
    assert got == pytest.approx(0.5 * (0.64 + 0.9025) / 2, rel=1e-6)
    grad_v = jax.grad(clipped_value_loss)(v_t, old_v_t, target_t, 0.2, mask_t)
    # first: the clipped branch wins and is flat in v; second: d 0.5 v^2 / 2 = v / 2.
    np.testing.assert_allclose(grad_v, [0.0, 0.95 / 2, 0.0], **TOL)


def _explained_variance_numpy(targets, values):
    """Stable-Baselines3's ``explained_variance``: 1 - Var[y - y_pred] / Var[y]."""
    return 1 - np.var(targets - values) / np.var(targets)


def test_explained_variance_equals_hand_computed_value_ignoring_masked_entries():
    # Var[t] = (4 + 1 + 0 + 9) / 4 = 3.5; errors 1, 0, 0, 1: Var = 0.25; 1 - 0.25 / 3.5 = 13 / 14.
    targets = np.array([1.0, 2.0, 3.0, 6.0, 100.0], np.float32)
    values = np.array([0.0, 2.0, 3.0, 5.0, np.nan], np.float32)
    mask = np.array([True, True, True, True, False])
    for fn in (explained_variance, jax.jit(explained_variance)):
        got = fn(targets, values, mask)
        assert got.shape == () and got.dtype == jnp.float32
        assert got == pytest.approx(13 / 14, rel=1e-6)
    assert explained_variance(targets[:4], values[:4]) == pytest.approx(13 / 14, rel=1e-6)


def test_explained_variance_equals_numpy_on_a_masked_rollout():
    rng = np.random.default_rng(4)
    targets = rng.normal(3.0, 2.0, size=(7, 5)).astype(np.float32)
    values = (targets + rng.normal(0.5, 1.0, size=(7, 5))).astype(np.float32)
    mask = rng.random((7, 5)) > 0.3
    want = _explained_variance_numpy(targets[mask].astype(np.float64), values[mask])
    assert explained_variance(targets, values, mask) == pytest.approx(want, rel=1e-5)
    assert explained_variance(targets, targets, mask) == 1.0  # a perfect critic
    mean = np.full_like(targets, targets[mask].mean())
    assert explained_variance(targets, mean, mask) == pytest.approx(0.0, abs=1e-6)


def test_explained_variance_of_constant_targets_or_no_step_is_zero_not_nan():
    values = np.array([0.0, 1.0, -3.0], np.float32)
    assert explained_variance(np.full(3, 2.5, np.float32), values) == 0.0
    assert explained_variance(np.zeros(3, np.float32), values, np.zeros(3, bool)) == 0.0
    # A ratio beyond float32's range stays finite: the run stops on any non-finite metric.
    tiny = explained_variance(np.array([0.0, 1e-18], np.float32), np.array([1e10, -1e10]))
    assert np.isfinite(tiny) and tiny < -1e38


def test_explained_variance_stops_gradients():
    targets = np.array([1.0, 2.0, 4.0], np.float32)
    values = np.array([0.5, 2.5, 3.0], np.float32)
    grads = jax.grad(explained_variance, argnums=(0, 1))(targets, values)
    for grad in grads:
        np.testing.assert_array_equal(grad, np.zeros(3, np.float32))


def test_explained_variance_over_a_named_axis_is_that_of_the_pooled_batch():
    rng = np.random.default_rng(5)
    targets = rng.normal(1.0, 2.0, size=(6, 8)).astype(np.float32)
    values = (0.5 * targets + rng.normal(size=(6, 8))).astype(np.float32)
    mask = rng.random((6, 8)) > 0.3
    mask[:, :4] &= rng.random((6, 4)) > 0.5  # uneven counts per shard
    whole = explained_variance(targets, values, mask)

    def shards(x):
        return np.moveaxis(x.reshape(6, 2, 4), 1, 0)  # [D=2, T, B / D]

    pooled = jax.vmap(lambda t, v, m: explained_variance(t, v, m, axis_name="d"), axis_name="d")(
        shards(targets), shards(values), shards(mask)
    )
    np.testing.assert_allclose(pooled, [whole, whole], rtol=1e-5)
    # What averaging each shard's ratio by its count would log instead.
    each = jax.vmap(explained_variance)(shards(targets), shards(values), shards(mask))
    counts = shards(mask).sum(axis=(1, 2))
    assert abs(float(np.dot(counts, each) / counts.sum() - whole)) > 1e-3
