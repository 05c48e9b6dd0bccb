"""Optimizers with adept's settings."""

from __future__ import annotations

import optax

OPTIMIZERS = ("rmsprop", "rmsprop_tf", "adam")


def make_rmsprop(
    learning_rate: float, *, decay: float = 0.99, eps: float = 1e-5, max_grad_norm: float = 0.0
) -> optax.GradientTransformation:
    """RMSprop as PyTorch computes it, which adept used: eps outside the square root.

    ``g / (sqrt(nu) + eps)`` with ``nu`` starting at 0 (torch's defaults), not optax's default
    ``g / sqrt(nu + eps)``.

    Args:
        learning_rate: step size (adept 7e-4).
        decay: smoothing constant alpha of the squared-gradient average (adept 0.99).
        eps: added to the root mean square (adept 1e-5).
        max_grad_norm: clip gradients to this global norm first; 0 disables (adept's 2018
            default; later A2C practice uses 0.5).
    """
    return _clipped(
        optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False),
        learning_rate,
        max_grad_norm,
    )


def make_rmsprop_tf(
    learning_rate: float, *, decay: float = 0.99, eps: float = 1e-5, max_grad_norm: float = 0.0
) -> optax.GradientTransformation:
    """RMSprop as TensorFlow 1 computes it: ``g / sqrt(nu + eps)`` with ``nu`` starting at 1.

    TensorFlow's ``RMSPropOptimizer`` (which the A2C of OpenAI Baselines used) starts the
    squared-gradient average at ones, so the first updates are about ``learning_rate * g``;
    torch's (:func:`make_rmsprop`) starts it at zero, so its first update moves every weight by
    about ``learning_rate / sqrt(1 - decay)``, ten learning rates at decay 0.99. The RL Baselines3
    Zoo trains A2C on Atari with this form (``RMSpropTFLike``, eps 1e-5).

    Args:
        learning_rate: step size.
        decay: smoothing constant of the squared-gradient average.
        eps: added to the mean square inside the root.
        max_grad_norm: clip gradients to this global norm first; 0 disables.
    """
    return _clipped(
        optax.rmsprop(learning_rate, decay=decay, eps=eps, initial_scale=1.0, eps_in_sqrt=True),
        learning_rate,
        max_grad_norm,
    )


def make_optimizer(
    name: str, learning_rate: float, *, max_grad_norm: float = 0.0
) -> optax.GradientTransformation:
    """The optimizer ``--optimizer`` names: :func:`make_rmsprop`, :func:`make_rmsprop_tf` or
    Adam with eps 1e-5.

    Adam's eps is CleanRL's PPO setting (``ppo_atari.py``), 1e-5 instead of optax's 1e-8.

    Raises:
        ValueError: an unknown name, a learning rate <= 0 or a negative ``max_grad_norm``.
    """
    if name == "rmsprop":
        return make_rmsprop(learning_rate, max_grad_norm=max_grad_norm)
    if name == "rmsprop_tf":
        return make_rmsprop_tf(learning_rate, max_grad_norm=max_grad_norm)
    if name == "adam":
        return _clipped(optax.adam(learning_rate, eps=1e-5), learning_rate, max_grad_norm)
    raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


def _clipped(
    optimizer: optax.GradientTransformation, learning_rate: float, max_grad_norm: float
) -> optax.GradientTransformation:
    """``optimizer`` after clipping gradients to ``max_grad_norm`` (0: no clipping)."""
    if learning_rate <= 0:
        raise ValueError(f"learning rate must be positive, got {learning_rate}")
    if max_grad_norm < 0:
        raise ValueError(f"--max-grad-norm must be >= 0 (0 disables), got {max_grad_norm}")
    if max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optimizer)
    return optimizer
