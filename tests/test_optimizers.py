"""The optimizers ``--optimizer`` names, step by step against their references."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fnrl.optimizers import OPTIMIZERS, make_optimizer, make_rmsprop, make_rmsprop_tf

LEARNING_RATE, DECAY, EPS = 7e-4, 0.99, 1e-5


def _gradients(steps: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(scale=10.0 ** rng.integers(-3, 2), size=(3, 4)) for _ in range(steps)]


def _apply(optimizer: optax.GradientTransformation, grads: list[np.ndarray]) -> list[np.ndarray]:
    """The parameters after each step of ``optimizer`` from zeros, given each step's gradient."""
    params = jnp.zeros((3, 4), jnp.float32)
    state = optimizer.init(params)
    path = []
    for g in grads:
        updates, state = optimizer.update(jnp.asarray(g, jnp.float32), state, params)
        params = optax.apply_updates(params, updates)
        path.append(np.asarray(params))
    return path


def _tf_rmsprop(grads: list[np.ndarray]) -> list[np.ndarray]:
    """TensorFlow 1's ``RMSPropOptimizer`` without momentum, in float64: ``ms`` starts at ones,
    ``ms = decay * ms + (1 - decay) * g**2``, ``p -= lr * g / sqrt(ms + eps)``."""
    params, mean_square, path = np.zeros((3, 4)), np.ones((3, 4)), []
    for g in grads:
        mean_square = DECAY * mean_square + (1 - DECAY) * g**2
        params = params - LEARNING_RATE * g / np.sqrt(mean_square + EPS)
        path.append(params)
    return path


def test_rmsprop_tf_follows_tensorflow_step_by_step():
    grads = _gradients()
    ours = _apply(make_rmsprop_tf(LEARNING_RATE), grads)
    np.testing.assert_allclose(ours, _tf_rmsprop(grads), rtol=2e-6, atol=1e-9)


def test_rmsprop_follows_torch_step_by_step():
    torch = pytest.importorskip("torch")
    grads = _gradients()
    weight = torch.zeros((3, 4), dtype=torch.float64, requires_grad=True)
    reference = torch.optim.RMSprop([weight], lr=LEARNING_RATE, alpha=DECAY, eps=EPS)
    path = []
    for g in grads:
        weight.grad = torch.from_numpy(g)
        reference.step()
        path.append(weight.detach().numpy().copy())
    np.testing.assert_allclose(
        _apply(make_rmsprop(LEARNING_RATE), grads), path, rtol=2e-6, atol=1e-9
    )


def test_the_first_step_sizes_that_tell_the_two_rmsprops_apart():
    """torch's first step is about lr / sqrt(1 - decay) = 10 lr whatever the gradient's size;
    TensorFlow's is lr * g / sqrt(decay + (1 - decay) g**2 + eps), about lr * g."""
    g = np.full((3, 4), 0.1)
    (torch_style,) = _apply(make_rmsprop(LEARNING_RATE), [g])
    (tf_style,) = _apply(make_rmsprop_tf(LEARNING_RATE), [g])
    np.testing.assert_allclose(-torch_style, LEARNING_RATE * 0.1 / (0.1 * 0.1 + EPS), rtol=1e-6)
    np.testing.assert_allclose(-torch_style, 10 * LEARNING_RATE, rtol=1e-3)
    np.testing.assert_allclose(
        -tf_style, LEARNING_RATE * 0.1 / np.sqrt(DECAY + 0.01 * 0.01 + EPS), rtol=1e-6
    )
    np.testing.assert_allclose(-tf_style, 0.1 * LEARNING_RATE, rtol=1e-2)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_named_optimizer_clips_the_global_norm_first(name):
    """A gradient 100x the clip norm moves the params as the same gradient scaled to the norm."""
    g = np.arange(12.0).reshape(3, 4) + 1.0
    norm = float(np.linalg.norm(g))
    clipped = _apply(make_optimizer(name, LEARNING_RATE, max_grad_norm=norm / 100), [g])
    unclipped = _apply(make_optimizer(name, LEARNING_RATE), [g / 100])
    np.testing.assert_allclose(clipped, unclipped, rtol=1e-6)


def test_unknown_optimizer_names_the_choices():
    choices = "rmsprop, rmsprop_tf, adam"
    with pytest.raises(ValueError, match=f"unknown optimizer 'sgd'; choose one of: {choices}$"):
        make_optimizer("sgd", LEARNING_RATE)
