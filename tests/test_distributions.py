"""Categorical and diagonal Gaussian policies against closed-form values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fnrl.distributions import Gaussian, entropy, joint_log_prob, log_prob, mode, sample

_MEAN = np.array([[0.5, -1.0, 2.0], [0.0, 0.25, -3.0]], np.float32)
_LOG_STD = np.array([[0.2, -0.3, 0.0], [-1.0, 0.5, 0.1]], np.float32)
_ACTION = np.array([[1.0, 0.0, 2.0], [-0.5, 3.0, -2.0]], np.float32)


def _gaussian_log_density(a, mean, log_std):
    z = (a - mean) / np.exp(log_std)
    return np.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi), axis=-1)


def test_gaussian_log_prob_and_entropy_equal_the_closed_forms():
    policy = Gaussian(jnp.asarray(_MEAN), jnp.asarray(_LOG_STD))
    np.testing.assert_allclose(
        log_prob(policy, _ACTION), _gaussian_log_density(_ACTION, _MEAN, _LOG_STD), rtol=1e-6
    )
    np.testing.assert_allclose(
        entropy(policy), np.sum(_LOG_STD + 0.5 * np.log(2 * np.pi * np.e), axis=-1), rtol=1e-6
    )


def test_gaussian_log_prob_gradients_equal_the_closed_forms():
    """d/dμ = (a - μ) / σ², d/d log σ = (a - μ)² / σ² - 1: what the policy gradient moves."""
    grad_mean, grad_log_std = jax.grad(
        lambda m, s: jnp.sum(log_prob(Gaussian(m, s), _ACTION)), argnums=(0, 1)
    )(jnp.asarray(_MEAN), jnp.asarray(_LOG_STD))
    variance = np.exp(2 * _LOG_STD)
    np.testing.assert_allclose(grad_mean, (_ACTION - _MEAN) / variance, rtol=1e-5)
    np.testing.assert_allclose(grad_log_std, (_ACTION - _MEAN) ** 2 / variance - 1, rtol=1e-5)


def test_gaussian_samples_have_its_moments_and_its_mode_is_the_mean():
    shape = (200_000, 2)
    policy = Gaussian(
        jnp.broadcast_to(jnp.array([1.0, -2.0]), shape), jnp.zeros(shape).at[:, 1].set(np.log(3.0))
    )
    actions = sample(jax.random.PRNGKey(0), policy)
    assert actions.dtype == jnp.float32 and actions.shape == shape
    np.testing.assert_allclose(actions.mean(axis=0), [1.0, -2.0], atol=0.02)
    np.testing.assert_allclose(actions.std(axis=0), [1.0, 3.0], rtol=0.01)
    np.testing.assert_array_equal(mode(policy), policy.mean)


def test_categorical_policies_keep_their_meaning():
    logits = jnp.log(jnp.array([[0.2, 0.3, 0.5]]))
    np.testing.assert_allclose(log_prob(logits, jnp.array([2])), np.log([0.5]), rtol=1e-6)
    np.testing.assert_allclose(
        entropy(logits), [-np.sum([0.2, 0.3, 0.5] * np.log([0.2, 0.3, 0.5]))], rtol=1e-6
    )
    assert mode(logits).dtype == jnp.int32 and int(mode(logits)[0]) == 2
    assert sample(jax.random.PRNGKey(0), logits).dtype == jnp.int32


def test_joint_log_prob_sums_mixed_action_keys():
    policies = {
        "move": jnp.log(jnp.array([[0.25, 0.75]])),
        "torque": Gaussian(_MEAN[:1], _LOG_STD[:1]),
    }
    actions = {"move": jnp.array([1]), "torque": _ACTION[:1]}
    expected = np.log(0.75) + _gaussian_log_density(_ACTION[:1], _MEAN[:1], _LOG_STD[:1])
    np.testing.assert_allclose(joint_log_prob(policies, actions), expected, rtol=1e-6)


def test_a_gaussian_action_of_the_wrong_shape_is_refused():
    with pytest.raises(AssertionError):
        log_prob(Gaussian(jnp.asarray(_MEAN), jnp.asarray(_LOG_STD)), _ACTION[:, :2])
