"""``python -m fnrl.networks``: the registered networks and their parameter counts.

For an Atari input (84x84 uint8 frames, 6 actions as in Pong) it prints each vision trunk's
feature count and parameters, and the whole ``ModularNetwork``'s (heads included) with the
``LSTM`` body on 1 frame and the ``Linear`` body on 4 frames, as fnrl stacks them; then each
body's parameters behind adept's default ``FourConv`` trunk, and each discrete trunk's for a
128-byte Atari RAM vector. Counts are PyTorch's ``parameters()`` (batch-norm running
statistics excluded) and come from shapes alone: nothing is computed.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

from fnrl.networks import registry
from fnrl.networks.modular import ModularNetwork, build_module, count_params
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec


def _atari_spec(height: int, width: int, frames: int, actions: int) -> EnvSpec:
    return EnvSpec(
        observations={"screen": ArraySpec((height, width, frames), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(actions)},
    )


def network_params(network: ModularNetwork) -> dict[str, int]:
    """Parameter count of the whole network and of each top-level part (``trunk_screen``…)."""
    carry = network.initial_carry(1)
    obs = {
        key: jax.ShapeDtypeStruct((1, *spec.shape), spec.dtype)
        for key, spec in network.spec.observations.items()
    }
    first = jax.ShapeDtypeStruct((1,), jnp.bool_)
    shapes = jax.eval_shape(
        lambda o, f: network.init(jax.random.key(0), carry, o, f, train=False), obs, first
    )
    params = shapes["params"]
    return {"total": count_params(params), **{k: count_params(v) for k, v in params.items()}}


def _trunk_features(name: str, height: int, width: int, frames: int) -> int:
    trunk = build_module(registry.get_vision_network(name))
    x = jax.ShapeDtypeStruct((1, height, width, frames), jnp.float32)
    out = jax.eval_shape(lambda x: trunk.init_with_output(jax.random.key(0), x, train=False)[0], x)
    return int(out.shape[-1])


def main(argv: list[str] | None = None) -> int:
    """Prints the tables; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m fnrl.networks", description=__doc__)
    parser.add_argument("--height", type=int, default=84, help="frame height (84)")
    parser.add_argument("--width", type=int, default=84, help="frame width (84)")
    parser.add_argument("--actions", type=int, default=6, help="number of actions (Pong: 6)")
    parser.add_argument("--no-normalize", action="store_true", help="count without --normalize")
    args = parser.parse_args(argv)
    normalize = not args.no_normalize
    height, width, actions = args.height, args.width, args.actions

    print(
        f"Vision networks, {height}x{width} uint8 frames, {actions} actions, normalize={normalize}"
    )
    print(f"{'name':<26}{'features':>10}{'trunk':>14}{'+ LSTM, 1 frame':>18}{'+ Linear, 4':>16}")
    for name in sorted(registry.VISION_NETWORKS):
        features = _trunk_features(name, height, width, 4)
        lstm = network_params(
            ModularNetwork(
                _atari_spec(height, width, 1, actions), vision_network=name, normalize=normalize
            )
        )
        linear = network_params(
            ModularNetwork(
                _atari_spec(height, width, 4, actions),
                vision_network=name,
                network_body="Linear",
                normalize=normalize,
            )
        )
        trunk = linear["trunk_screen"]
        print(f"{name:<26}{features:>10,}{trunk:>14,}{lstm['total']:>18,}{linear['total']:>16,}")

    print(f"\nNetwork bodies behind FourConv, hidden size 512, normalize={normalize}")
    print(f"{'name':<26}{'frames':>10}{'body':>14}{'network':>18}")
    for name in sorted(registry.NETWORK_BODIES):
        frames = 1 if registry.is_recurrent(name) else 4
        counts = network_params(
            ModularNetwork(
                _atari_spec(height, width, frames, actions),
                network_body=name,
                normalize=normalize,
            )
        )
        print(f"{name:<26}{frames:>10}{counts.get('body', 0):>14,}{counts['total']:>18,}")

    print(f"\nDiscrete networks for a [128] vector (Atari RAM), normalize={normalize}")
    print(f"{'name':<26}{'trunk':>14}")
    ram = EnvSpec({"ram": ArraySpec((128,), np.dtype(np.uint8))}, {"action": DiscreteSpec(actions)})
    for name in sorted(registry.DISCRETE_NETWORKS):
        counts = network_params(
            ModularNetwork(ram, discrete_network=name, network_body="Identity", normalize=normalize)
        )
        print(f"{name:<26}{counts.get('trunk_ram', 0):>14,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
