"""ModularNetwork: trunk per observation key → concat → body → one head per action key + value.

Source: adept ``adept/networks/modular_network.py`` and ``_base.py::NetworkHead`` (parity
item 8), rebuilt as one ``flax.linen`` module that processes one time step of ``B`` envs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.networks import registry
from fnrl.networks._layers import torch_dense
from fnrl.networks.bodies import reset_carry
from fnrl.specs import EnvSpec, is_image, is_vector
from fnrl.types import Carry, Observation


class NetworkOutput(NamedTuple):
    """What ``ModularNetwork`` returns for one step of ``B`` envs."""

    logits: dict[str, jax.Array]  # action name -> [B, A] float32, unnormalized log-probabilities
    value: jax.Array  # [B] float32: the critic's state value


def _validate(network: ModularNetwork) -> None:
    """Raises ``ValueError`` for a configuration ``ModularNetwork`` cannot build."""
    spec = network.spec
    if not spec.observations:
        raise ValueError("the EnvSpec has no observations; the network needs at least one")
    if not spec.actions:
        raise ValueError("the EnvSpec has no actions; the network needs at least one head")
    for key, obs_spec in spec.observations.items():
        if not (is_image(obs_spec) or is_vector(obs_spec)):
            raise ValueError(
                f"observation {key!r} has shape {tuple(obs_spec.shape)}: ModularNetwork takes "
                "rank-3 images (H, W, C) and rank-1 vectors (D,); reshape it in the env wrapper"
            )
        if is_image(obs_spec):
            trunk_cls = registry.get_vision_network(network.vision_network)
            output_size = getattr(trunk_cls, "output_size", None)
            if output_size is not None:
                output_size(*obs_spec.shape[:2])  # raises if the image is too small
    for name, action_spec in spec.actions.items():
        if action_spec.num_values < 1:
            raise ValueError(f"action {name!r} has {action_spec.num_values} values; need >= 1")
    # Resolve every name, used or not, so that a typo fails at construction.
    registry.get_vision_network(network.vision_network)
    registry.get_discrete_network(network.discrete_network)
    registry.get_network_body(network.network_body)
    if network.hidden_size < 1:
        raise ValueError(f"hidden_size must be positive, got {network.hidden_size}")


def _to_float(x: jax.Array) -> jax.Array:
    """uint8 images become float32 in [0, 1] (adept's Divide255); anything else is cast."""
    if x.dtype == jnp.uint8:
        return x.astype(jnp.float32) / 255.0
    return x.astype(jnp.float32)


class ModularNetwork(nn.Module):
    """adept's modular actor-critic network for dict observations and dict discrete actions.

    One trunk per observation key, in sorted key order: rank-3 ``[H, W, C]`` observations go
    through ``vision_network`` (uint8 is cast to float32 and divided by 255 first), rank-1
    ``[D]`` observations through ``discrete_network``. Their features are concatenated and fed
    to ``network_body``; then one ``Dense(A)`` head per action key (sorted by name) gives the
    logits and a ``Dense(1)`` head the value (adept's ``critic``). Heads use torch's default
    ``nn.Linear`` init.

    Params are ``trunk_<obs key>``, ``body``, ``head_<action name>`` and ``critic``; with
    ``normalize`` the BatchNorm layers add a ``batch_stats`` collection.

    Example::

        network = ModularNetwork(spec)
        carry = network.initial_carry(B)
        variables = network.init(key, carry, obs, first, train=False)
        (carry, out), updates = network.apply(
            variables, carry, obs, first, train=True, mutable=["batch_stats"]
        )

    Attributes:
        spec: the environment's observation and action specs (per env, no batch axis).
        vision_network: registered trunk for rank-3 observations (adept ``-vn``, default
            ``FourConv``).
        discrete_network: registered trunk for rank-1 observations (default ``Identity``).
        network_body: registered body: ``Identity``, ``Linear`` or ``LSTM`` (adept ``-nb``,
            default ``LSTM``).
        normalize: adept's ``--normalize``: BatchNorm after bias-free convs / Dense layers in
            trunks and the Linear body, layer-normalized LSTM cell.
        hidden_size: width of the body (adept: 512).
    """

    spec: EnvSpec
    vision_network: str = "FourConv"
    discrete_network: str = "Identity"
    network_body: str = "LSTM"
    normalize: bool = True
    hidden_size: int = 512

    def __post_init__(self) -> None:
        _validate(self)
        super().__post_init__()

    def __hash__(self) -> int:
        # The spec holds dicts, which would make flax's generated field hash fail; hash a frozen
        # copy so the network can be a static argument of jax.jit. Equal networks hash equally.
        # Sorted: dicts with the same items compare equal whatever their insertion order.
        observations = self.spec.observations
        frozen_spec = (
            tuple(
                (k, tuple(observations[k].shape), np.dtype(observations[k].dtype))
                for k in sorted(observations)
            ),
            tuple(sorted(self.spec.actions.items())),
        )
        fields = (self.vision_network, self.discrete_network, self.network_body)
        return hash((frozen_spec, fields, self.normalize, self.hidden_size, self.name))

    @nn.nowrap
    def initial_carry(self, batch_size: int) -> Carry:
        """The body's zero state for ``batch_size`` envs; ``()`` for feed-forward bodies.

        Works on an unbound module (no params needed). For ``LSTM``: ``LSTMCarry(c, h)``, each
        ``[batch_size, hidden_size]`` float32.
        """
        body_cls = registry.get_network_body(self.network_body)
        return body_cls.initial_carry(batch_size, self.hidden_size)

    @property
    def recurrent(self) -> bool:
        """Whether the body keeps state across steps (then adept stacks 1 frame, else 4)."""
        return registry.is_recurrent(self.network_body)

    @nn.compact
    def __call__(
        self,
        carry: Carry,
        obs: Observation,
        first: jax.typing.ArrayLike,
        *,
        train: bool,
    ) -> tuple[Carry, NetworkOutput]:
        """One time step for ``B`` envs.

        Args:
            carry: the body's state before this step, leading axis ``[B]`` (``()`` if none).
            obs: observation name → ``[B, *spec.observations[name].shape]``.
            first: ``[B]`` bool: ``obs`` starts an episode; the carry is zeroed in those rows
                before the body runs (parity item 3).
            train: BatchNorm uses batch statistics (and updates the running ones when applied
                with ``mutable=["batch_stats"]``); ``False`` uses the running statistics.

        Returns:
            ``(carry, NetworkOutput)``: the new carry and logits ``[B, A]`` per action name plus
            value ``[B]``, all float32.
        """
        missing = sorted(set(self.spec.observations) - set(obs))
        if missing:
            raise ValueError(f"observations {missing} are in the spec but not in obs")
        first = jnp.asarray(first)
        chex.assert_rank(first, 1)
        batch_size = first.shape[0]

        vision_cls = registry.get_vision_network(self.vision_network)
        discrete_cls = registry.get_discrete_network(self.discrete_network)
        features = []
        for key in sorted(self.spec.observations):
            obs_spec = self.spec.observations[key]
            x = jnp.asarray(obs[key])
            chex.assert_shape(x, (batch_size, *obs_spec.shape))
            trunk_cls = vision_cls if is_image(obs_spec) else discrete_cls
            trunk = trunk_cls(normalize=self.normalize, name=f"trunk_{key}")
            features.append(trunk(_to_float(x), train=train))
        x = jnp.concatenate(features, axis=-1)

        body_cls = registry.get_network_body(self.network_body)
        body = body_cls(hidden_size=self.hidden_size, normalize=self.normalize, name="body")
        carry, x = body(reset_carry(carry, first), x, train=train)

        width = x.shape[-1]
        logits = {
            name: torch_dense(self.spec.actions[name].num_values, width, name=f"head_{name}")(x)
            for name in sorted(self.spec.actions)
        }
        value = torch_dense(1, width, name="critic")(x)[:, 0]
        return carry, NetworkOutput(logits=logits, value=value)


def count_params(params: chex.ArrayTree) -> int:
    """Number of scalars in a params tree (adept prints this as its parameter count).

    Pass ``variables["params"]``: torch counts ``parameters()``, not BatchNorm running buffers.
    """
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(params))
