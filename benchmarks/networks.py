"""Parameter counts and forward time of every network, fnrl (JAX) against the PyTorch twin.

For each registered vision network (with the ``Linear`` body, 4 stacked 84x84 frames) and each
body (behind adept's default ``FourConv`` trunk; 1 frame for recurrent bodies), on Pong's 6
actions: the parameter count on both sides (they must agree), and the median wall time of one
forward pass over a batch of 32 observations in evaluation mode (running batch-norm
statistics): fnrl's ``jax.jit``-compiled ``apply`` (compilation excluded, results blocked on
with ``jax.block_until_ready`` before the clock is read) against the reference ``torch.nn``
module of ``tests/networks/torch_reference.py`` under ``torch.no_grad()``, holding the same
weights (converted with ``fnrl.networks.torch_interop``). The largest difference between the
two outputs, relative to their largest magnitude, is reported too. Both libraries use all
cores of this machine.

It needs the ``torch`` extra (``pip install -e ".[torch]"``, the CPU build of PyTorch). Every
row takes about half an hour on a 2-core CPU, most of it compiling and running the ResNets;
``--networks`` measures only the vision networks and bodies named:

    python benchmarks/networks.py --out networks.json
    python benchmarks/networks.py --networks FourConv,Nature,LSTM --out networks.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

try:  # the torch extra's, checked first so that even -h says what is missing
    import torch
except ImportError as error:
    sys.exit(
        f'benchmarks/networks.py needs {error.name}, of the torch extra: pip install -e ".[torch]"'
    )

import jax
import numpy as np

from fnrl.networks import NETWORK_BODIES, VISION_NETWORKS, ModularNetwork, count_params
from fnrl.networks.torch_interop import from_torch_state_dict
from fnrl.specs import ArraySpec, DiscreteSpec, EnvSpec

# The reference torch.nn twins live with the tests that check them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "networks"))
from torch_reference import TorchModularNetwork  # noqa: E402


def _spec(frames: int) -> EnvSpec:
    return EnvSpec(
        observations={"screen": ArraySpec((84, 84, frames), np.dtype(np.uint8))},
        actions={"action": DiscreteSpec(6)},
    )


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(vision: str, body: str, batch: int, repeats: int, seed: int = 0) -> dict:
    """One row: both parameter counts, both forward times, the largest output difference."""
    frames = 1 if NETWORK_BODIES[body].recurrent else 4
    network = ModularNetwork(_spec(frames), vision_network=vision, network_body=body)
    torch.manual_seed(seed)
    twin = TorchModularNetwork(network.spec, vision, "Identity", body, network.normalize)
    twin.eval()
    variables = from_torch_state_dict(twin.state_dict(), network)

    rng = np.random.default_rng(seed)
    obs = {"screen": rng.integers(0, 256, (batch, 84, 84, frames), dtype=np.uint8)}
    first = np.ones(batch, bool)
    carry = network.initial_carry(batch)
    device_obs, device_first = jax.device_put(obs), jax.device_put(first)
    forward = jax.jit(lambda v, c, o, f: network.apply(v, c, o, f, train=False))

    def run_jax():
        return jax.block_until_ready(forward(variables, carry, device_obs, device_first))

    compile_start = time.perf_counter()
    _, out = run_jax()
    compile_seconds = time.perf_counter() - compile_start
    jax_seconds = _median_seconds(run_jax, repeats)

    torch_carry = tuple(torch.from_numpy(np.array(leaf)) for leaf in jax.tree.leaves(carry))

    def run_torch():
        with torch.no_grad():
            return twin(torch_carry, obs, first)

    _, torch_logits, torch_value = run_torch()  # warm-up
    torch_seconds = _median_seconds(run_torch, repeats)
    ours = np.concatenate([np.asarray(out.logits["action"]).ravel(), np.asarray(out.value)])
    theirs = np.concatenate([torch_logits["action"].numpy().ravel(), torch_value.numpy()])
    # Relative to the outputs' scale: with torch's initial running statistics (mean 0, variance
    # 1) nothing normalizes in evaluation mode, and deep ResNets output values in the millions.
    difference = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-6))
    return {
        "vision_network": vision,
        "network_body": body,
        "frames": frames,
        "batch": batch,
        "params_fnrl": count_params(variables["params"]),
        "params_torch": sum(p.numel() for p in twin.parameters()),
        "jax_forward_ms": 1000 * jax_seconds,
        "torch_forward_ms": 1000 * torch_seconds,
        "jax_compile_s": compile_seconds,
        "output_scale": float(np.abs(theirs).max()),
        "max_relative_output_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="networks.json", help="where to write the JSON")
    parser.add_argument("--batch", type=int, default=32, help="observations per forward (32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forwards, median (5)")
    parser.add_argument(
        "--networks",
        "--only",
        metavar="NAME,NAME",
        help="vision networks (each with the Linear body) and bodies (each behind FourConv) to "
        "measure, comma-separated (default: all)",
    )
    args = parser.parse_args()

    combos = [(name, "Linear") for name in sorted(VISION_NETWORKS)]
    combos += [("FourConv", name) for name in sorted(NETWORK_BODIES) if name != "Linear"]
    if args.networks is not None:
        names = {name.strip() for name in args.networks.split(",") if name.strip()}
        unknown = sorted(names - set(VISION_NETWORKS) - set(NETWORK_BODIES))
        if unknown or not names:
            known = ", ".join(sorted({*VISION_NETWORKS, *NETWORK_BODIES}))
            parser.error(
                f"--networks: unknown {', '.join(unknown) or 'empty list'}; known: {known}"
            )
        combos = [
            (vision, body)
            for vision, body in combos
            if (vision in names and body == "Linear") or (vision == "FourConv" and body in names)
        ]

    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}, ", end="")
    print(f"torch threads {torch.get_num_threads()}, batch {args.batch}")
    header = (
        f"{'vision':<26}{'body':<16}{'params':>13}{'jax ms':>10}{'torch ms':>10}{'jax/torch':>11}"
    )
    print(header + f"{'rel diff':>11}")
    rows = []
    for vision, body in combos:
        row = measure(vision, body, args.batch, args.repeats)
        rows.append(row)
        if row["params_fnrl"] != row["params_torch"]:
            raise RuntimeError(f"parameter counts differ for {vision} + {body}: {row}")
        ratio = row["jax_forward_ms"] / row["torch_forward_ms"]
        print(
            f"{vision:<26}{body:<16}{row['params_fnrl']:>13,}{row['jax_forward_ms']:>10.1f}"
            f"{row['torch_forward_ms']:>10.1f}{ratio:>11.2f}{row['max_relative_output_difference']:>11.1e}",
            flush=True,
        )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
