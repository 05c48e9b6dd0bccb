"""Optimizers with adept's settings."""

from __future__ import annotations

import optax


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
    if learning_rate <= 0:
        raise ValueError(f"learning rate must be positive, got {learning_rate}")
    if max_grad_norm < 0:
        raise ValueError(f"--max-grad-norm must be >= 0 (0 disables), got {max_grad_norm}")
    rmsprop = optax.rmsprop(learning_rate, decay=decay, eps=eps, eps_in_sqrt=False)
    if max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), rmsprop)
    return rmsprop
