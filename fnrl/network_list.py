"""``python -m fnrl.networks``: the registered networks; ``--params`` counts their parameters.

The bare command lists the names each flag takes (``--vision-network``, ``--network-body``,
``--discrete-network``) with the summary line of each module's docstring; it builds nothing, so
it takes no longer than its imports.

``--params`` builds the parameter shapes of each network for an Atari input (84x84 uint8
frames, 6 actions as in Pong) and prints each vision trunk's feature count and parameters, and
the whole ``ModularNetwork``'s (heads included) with the ``LSTM`` body on 1 frame and the
``Linear`` body on 4 frames, as fnrl stacks them; then each body's parameters behind adept's
default ``FourConv`` trunk, and each discrete trunk's for a 128-byte Atari RAM vector. Counts
are PyTorch's ``parameters()`` (batch-norm running statistics excluded) and come from shapes
alone: nothing is computed, but tracing the ResNets takes most of a minute on a laptop CPU.
``--networks FourConv,LSTM`` keeps only the networks named, in either listing.
"""

from __future__ import annotations

import argparse
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.networks import registry
from fnrl.networks.modular import ModularNetwork, build_module, count_params
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

# (title, flag, registry) of each pathway of ModularNetwork.
_REGISTRIES: tuple[tuple[str, str, dict[str, type[nn.Module]]], ...] = (
    ("Vision networks, for rank-3 observations", "-vn/--vision-network", registry.VISION_NETWORKS),
    ("Network bodies", "-nb/--network-body", registry.NETWORK_BODIES),
    (
        "Discrete networks, for rank-1 observations",
        "-dn/--discrete-network",
        registry.DISCRETE_NETWORKS,
    ),
)


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


def _summary(module: type[nn.Module]) -> str:
    """The first line of ``module``'s docstring, without reST markup."""
    lines = (module.__doc__ or "").strip().splitlines()
    return lines[0].replace("``", "") if lines else module.__name__


def print_networks(names: set[str] | None = None) -> None:
    """Prints each registry's names (all, or those in ``names``) with their summaries."""
    for title, flag, networks in _REGISTRIES:
        shown = [name for name in networks if names is None or name in names]
        if shown:
            print(f"{title} ({flag}):")
            for name in shown:
                print(f"  {name:<26}{_summary(networks[name])}")
            print()
    print("Parameter counts for an Atari input: python -m fnrl.networks --params")


def _vision_row(name: str, height: int, width: int, actions: int, normalize: bool) -> str:
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
    return f"{name:<26}{features:>10,}{trunk:>14,}{lstm['total']:>18,}{linear['total']:>16,}"


def _body_row(name: str, height: int, width: int, actions: int, normalize: bool) -> str:
    frames = 1 if registry.is_recurrent(name) else 4
    counts = network_params(
        ModularNetwork(
            _atari_spec(height, width, frames, actions), network_body=name, normalize=normalize
        )
    )
    return f"{name:<26}{frames:>10}{counts.get('body', 0):>14,}{counts['total']:>18,}"


def _discrete_row(name: str, actions: int, normalize: bool) -> str:
    ram = EnvSpec({"ram": ArraySpec((128,), np.dtype(np.uint8))}, {"action": DiscreteSpec(actions)})
    counts = network_params(
        ModularNetwork(ram, discrete_network=name, network_body="Identity", normalize=normalize)
    )
    return f"{name:<26}{counts.get('trunk_ram', 0):>14,}"


def print_params(
    height: int, width: int, actions: int, normalize: bool, names: set[str] | None = None
) -> None:
    """Prints the parameter tables of the module docstring (all networks, or ``names``)."""

    def chosen(networks: dict[str, type[nn.Module]]) -> list[str]:
        return sorted(name for name in networks if names is None or name in names)

    size = (height, width, actions, normalize)
    tables = [
        (
            f"Vision networks, {height}x{width} uint8 frames, {actions} actions, "
            f"normalize={normalize}\n"
            f"{'name':<26}{'features':>10}{'trunk':>14}{'+ LSTM, 1 frame':>18}{'+ Linear, 4':>16}",
            chosen(registry.VISION_NETWORKS),
            lambda name: _vision_row(name, *size),
        ),
        (
            f"Network bodies behind FourConv, hidden size 512, normalize={normalize}\n"
            f"{'name':<26}{'frames':>10}{'body':>14}{'network':>18}",
            chosen(registry.NETWORK_BODIES),
            lambda name: _body_row(name, *size),
        ),
        (
            f"Discrete networks for a [128] vector (Atari RAM), normalize={normalize}\n"
            f"{'name':<26}{'trunk':>14}",
            chosen(registry.DISCRETE_NETWORKS),
            lambda name: _discrete_row(name, actions, normalize),
        ),
    ]
    separator = ""
    for header, rows, row in tables:
        if rows:
            print(separator + header)
            separator = "\n"
            for name in rows:
                print(row(name))


def main(argv: list[str] | None = None) -> int:
    """Prints the listing, or the parameter tables with ``--params``; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m fnrl.networks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--params", action="store_true", help="build each network and count its parameters"
    )
    parser.add_argument(
        "--networks",
        metavar="NAME,NAME",
        help="only these registered networks (vision networks, bodies, discrete networks)",
    )
    parser.add_argument("--height", type=int, default=84, help="--params: frame height (84)")
    parser.add_argument("--width", type=int, default=84, help="--params: frame width (84)")
    parser.add_argument(
        "--actions", type=int, default=6, help="--params: number of actions (Pong: 6)"
    )
    parser.add_argument(
        "--no-normalize", action="store_true", help="--params: count without --normalize"
    )
    args = parser.parse_args(argv)
    names = None
    if args.networks is not None:
        names = {name.strip() for name in args.networks.split(",") if name.strip()}
        known = {name for _, _, networks in _REGISTRIES for name in networks}
        unknown = sorted(names - known)
        if unknown or not names:
            parser.error(
                f"--networks: unknown {', '.join(unknown) or 'empty list'}; "
                f"choose from: {', '.join(sorted(known))}"
            )
    if args.params:
        print_params(args.height, args.width, args.actions, not args.no_normalize, names)
    else:
        print_networks(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
