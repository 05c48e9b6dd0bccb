"""Optimizers with adept's settings."""

from __future__ import annotations

import optax

OPTIMIZERS = ("rmsprop", "adam")


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


def make_optimizer(
    name: str, learning_rate: float, *, max_grad_norm: float = 0.0
) -> optax.GradientTransformation:
    """The optimizer ``--optimizer`` names: :func:`make_rmsprop` or Adam with eps 1e-5.

    Adam's eps is CleanRL's PPO setting (``ppo_atari.py``), 1e-5 instead of optax's 1e-8.

    Raises:
        ValueError: an unknown name, a learning rate <= 0 or a negative ``max_grad_norm``.
    """
    if name == "rmsprop":
        return make_rmsprop(learning_rate, max_grad_norm=max_grad_norm)
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
