"""Name → module registries, so ``--vision-network FourConv`` resolves (adept's network registry).

Three registries, one per pathway of ``ModularNetwork``:

* ``VISION_NETWORKS``: trunks for rank-3 observations, ``cls(normalize=...)``,
  ``__call__(x [B, H, W, C] float32, *, train) -> [B, F]``.
* ``DISCRETE_NETWORKS``: trunks for rank-1 observations, same interface with ``x`` ``[B, D]``.
* ``NETWORK_BODIES``: ``cls(hidden_size=..., normalize=...)`` with class attribute
  ``recurrent: bool``, classmethod ``initial_carry(batch_size, hidden_size)`` and
  ``__call__(carry, x, *, train) -> (carry, [B, F'])``.

Users add their own modules with ``register_vision_network`` and friends (parity item 38).
"""

from __future__ import annotations

import flax.linen as nn

from fnrl.networks import bodies, resnets, trunks

VISION_NETWORKS: dict[str, type[nn.Module]] = {
    "FourConv": trunks.FourConv,
    "FourConvLarger": trunks.FourConvLarger,
    "FourConvSpatialAttention": trunks.FourConvSpatialAttention,
    "IMPALA": resnets.IMPALA,
    "MinAtar": trunks.MinAtar,
    "Mnih2013": trunks.Mnih2013,
    "Nature": trunks.Nature,
    "ResNet18": resnets.ResNet18,
    "ResNet18V2": resnets.ResNet18V2,
    "ResNet34": resnets.ResNet34,
    "ResNet34V2": resnets.ResNet34V2,
    "ResNet50": resnets.ResNet50,
    "ResNet50V2": resnets.ResNet50V2,
    "ResNet101": resnets.ResNet101,
    "ResNet101V2": resnets.ResNet101V2,
    "ResNet152": resnets.ResNet152,
    "ResNet152V2": resnets.ResNet152V2,
}
DISCRETE_NETWORKS: dict[str, type[nn.Module]] = {
    "Identity": trunks.IdentityTrunk,
    "Linear": trunks.LinearTrunk,
}
NETWORK_BODIES: dict[str, type[nn.Module]] = {
    "Identity": bodies.IdentityBody,
    "Linear": bodies.LinearBody,
    "LSTM": bodies.LSTMBody,
    "Mnih2013LSTM": bodies.Mnih2013LSTM,
    "Mnih2013Linear": bodies.Mnih2013Linear,
    "RMC": bodies.RMCBody,
}


def _register(registry: dict[str, type[nn.Module]], kind: str, name: str, cls: type) -> None:
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"a {kind} must be a flax.linen.Module subclass, got {cls!r}")
    if name in registry and registry[name] is not cls:
        raise ValueError(
            f"{kind} {name!r} is already registered as {registry[name].__name__}; pick another name"
        )
    registry[name] = cls


def _lookup(registry: dict[str, type[nn.Module]], kind: str, name: str) -> type[nn.Module]:
    try:
        return registry[name]
    except KeyError:
        choices = ", ".join(sorted(registry))
        raise ValueError(f"unknown {kind} {name!r}; choose one of: {choices}") from None


def register_vision_network(name: str, cls: type[nn.Module]) -> None:
    """Adds a trunk for rank-3 observations under ``name``.

    Raises:
        ValueError: ``name`` is already taken by another class.
        TypeError: ``cls`` is not a ``flax.linen.Module`` subclass.
    """
    _register(VISION_NETWORKS, "vision network", name, cls)


def register_discrete_network(name: str, cls: type[nn.Module]) -> None:
    """Adds a trunk for rank-1 observations under ``name`` (errors: ``register_vision_network``)."""
    _register(DISCRETE_NETWORKS, "discrete network", name, cls)


def register_network_body(name: str, cls: type[nn.Module]) -> None:
    """Adds a body under ``name``; ``cls`` must define ``recurrent`` and ``initial_carry``.

    Raises:
        ValueError: ``name`` is already taken by another class.
        TypeError: ``cls`` is not a ``flax.linen.Module`` subclass or lacks ``recurrent`` /
            ``initial_carry``.
    """
    for attribute in ("recurrent", "initial_carry"):
        if not hasattr(cls, attribute):
            raise TypeError(f"network body {cls!r} must define {attribute!r}")
    _register(NETWORK_BODIES, "network body", name, cls)


def get_vision_network(name: str) -> type[nn.Module]:
    """The vision trunk class registered as ``name``.

    Raises:
        ValueError: unknown ``name``; the message lists the registered names.
    """
    return _lookup(VISION_NETWORKS, "vision network", name)


def get_discrete_network(name: str) -> type[nn.Module]:
    """The rank-1 trunk class registered as ``name`` (``ValueError`` listing names if unknown)."""
    return _lookup(DISCRETE_NETWORKS, "discrete network", name)


def get_network_body(name: str) -> type[nn.Module]:
    """The body class registered as ``name`` (``ValueError`` listing names if unknown)."""
    return _lookup(NETWORK_BODIES, "network body", name)


def is_recurrent(body_name: str) -> bool:
    """Whether the body keeps state across steps (adept: frame stack 1 if so, else 4).

    Raises:
        ValueError: unknown ``body_name``.
    """
    return bool(get_network_body(body_name).recurrent)
