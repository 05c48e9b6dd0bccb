r"""A network body as a plug-in: a module that registers it, loaded with ``--import``.

From the root of the repository (``python -m`` puts the current directory on the import path,
so ``examples.plugin_body`` imports; from elsewhere, put the repository on ``PYTHONPATH``)::

    python -m fnrl.train --import examples.plugin_body -nb SB3Mlp -mts 50000 \
        --log-dir /tmp/fnrl_plugin
    RUN=$(ls -d /tmp/fnrl_plugin/CartPole-v1/*)
    python -m fnrl.evaluate "$RUN" --episodes 10
    python -m fnrl.render "$RUN" --out /tmp/fnrl_plugin/cartpole.gif
    python -m fnrl.train --resume "$RUN" -mts 100000

The run stores ``imports`` in its ``config.json``, so evaluating, rendering and resuming it import
this module again with no extra flag. ``python -m fnrl.train --import examples.plugin_body -h``
lists ``SB3Mlp`` among the bodies.
"""

from __future__ import annotations

import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from fnrl.networks import register_network_body


class SB3Mlp(nn.Module):
    """Stable-Baselines3's ``MlpPolicy`` layers: two tanh layers of 64 units. Feed-forward.

    SB3 (``stable_baselines3/common/torch_layers.py::MlpExtractor``, the default ``net_arch`` of
    A2C and PPO) gives the policy and the value two such layers each; here, as in fnrl's other
    bodies, both heads share them. Weights are orthogonal with gain ``sqrt(2)`` and biases zero,
    as SB3's ``ortho_init``. The width is SB3's, whatever ``--hidden-size`` says (the body does
    not declare ``hidden_size``, so the network does not pass it).
    """

    features: tuple[int, ...] = (64, 64)
    recurrent: ClassVar[bool] = False

    @nn.compact
    def __call__(self, carry: tuple, x: jax.Array, *, train: bool) -> tuple[tuple, jax.Array]:
        """Maps ``x`` ``[B, F]`` to ``[B, features[-1]]`` float32; ``carry`` is ``()``."""
        del train
        for width in self.features:
            dense = nn.Dense(width, kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)))
            x = jnp.tanh(dense(x))
        return carry, x

    @classmethod
    def initial_carry(cls, batch_size: int, hidden_size: int) -> tuple:
        """``()``: a feed-forward body has no state."""
        del batch_size, hidden_size
        return ()


register_network_body("SB3Mlp", SB3Mlp)
