"""Per-layer time of the vision trunks' convolutions: ``lax``'s against fnrl's CPU convolution.

For every conv of FourConv, FourConvLarger, Nature and Mnih2013 on 84x84x4 float32 frames, at
each batch size: the median wall time of one jitted forward pass plus the gradient with respect
to the kernel (``fwd+dW``, the first layer of a learner update, whose input is data) and with
respect to the input and the kernel (``fwd+dX+dW``, every later layer), for
``lax.conv_general_dilated`` (``plain``) and ``fnrl.networks._conv.conv_general_dilated``
(``fast``: the space-to-depth input gradient where it is selected). Both run interleaved in the
same repeats so that a busy machine slows both alike; compilation is excluded and results are
blocked on with ``jax.block_until_ready`` before the clock is read. The largest gradient
difference, relative to its largest magnitude, is reported too.

    python benchmarks/convs.py --out convs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from fnrl.networks import FourConv, FourConvLarger, Mnih2013, Nature
from fnrl.networks._conv import conv_general_dilated, uses_space_to_depth
from fnrl.networks.trunks import conv_output_size

_NHWC = ("NHWC", "HWIO", "NHWC")
_CONVS = {"plain": lax.conv_general_dilated, "fast": conv_general_dilated}


def trunk_layers() -> list[dict]:
    """Every distinct conv of the four trunks on 84x84x4 frames, named after its first trunk."""
    layers: dict[tuple, dict] = {}
    for trunk in (FourConv, FourConvLarger, Nature, Mnih2013):
        size, channels = 84, 4
        for i, (features, kernel, stride, padding) in enumerate(trunk.layers, start=1):
            key = (size, channels, features, kernel, stride, padding)
            layers.setdefault(key, {"layer": f"{trunk.__name__}.conv{i}", "shape": key})
            size, channels = conv_output_size(size, kernel, stride, padding), features
    return list(layers.values())


def _step(conv, stride: int, padding: int, wrt: tuple[int, ...]):
    """Jitted forward pass plus the gradient of a scalar loss w.r.t. ``wrt`` (0 input, 1 kernel)."""
    pads = ((padding, padding), (padding, padding))

    def loss(x, kernel):
        y = conv(x, kernel, (stride, stride), pads, dimension_numbers=_NHWC)
        return jnp.sum(jnp.tanh(y))

    return jax.jit(jax.value_and_grad(loss, argnums=wrt))


def measure(layer: dict, batch: int, repeats: int) -> list[dict]:
    """One row per gradient set: both median times, their ratio, the largest difference."""
    size, channels, features, kernel, stride, padding = layer["shape"]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(batch, size, size, channels)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, features)), jnp.float32)
    rows = []
    for mode, wrt in (("fwd+dW", (1,)), ("fwd+dX+dW", (0, 1))):
        steps = {name: _step(conv, stride, padding, wrt) for name, conv in _CONVS.items()}
        outs = {name: jax.block_until_ready(step(x, w)) for name, step in steps.items()}
        grads = [jax.tree.leaves(outs[name][1]) for name in _CONVS]
        diff = max(
            float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
            for a, b in zip(*grads, strict=True)
        )
        times: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(repeats):
            for name, step in steps.items():
                start = time.perf_counter()
                jax.block_until_ready(step(x, w))
                times[name].append(time.perf_counter() - start)
        plain_ms, fast_ms = (1e3 * statistics.median(times[name]) for name in _CONVS)
        rows.append(
            {
                "layer": layer["layer"],
                "shape": f"{size}x{size}x{channels} {kernel}x{kernel}/{stride} p{padding} "
                f"-> {features}",
                "space_to_depth": uses_space_to_depth((size, size), (kernel, kernel), stride),
                "batch": batch,
                "mode": mode,
                "plain_ms": plain_ms,
                "fast_ms": fast_ms,
                "speedup": plain_ms / fast_ms,
                "max_rel_diff": diff,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--batch", type=int, nargs="+", default=[80, 640], help="frames per batch")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per formulation")
    args = parser.parse_args()

    rows = []
    header = (
        f"{'layer':22s} {'shape':32s} {'s2d':>3s} {'batch':>5s} {'mode':>10s} {'plain ms':>9s} "
        f"{'fast ms':>9s} {'speedup':>7s} {'max diff':>8s}"
    )
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s)")
    print(header)
    for batch in args.batch:
        for layer in trunk_layers():
            for row in measure(layer, batch, args.repeats):
                rows.append(row)
                s2d = "yes" if row["space_to_depth"] else "no"
                print(
                    f"{row['layer']:22s} {row['shape']:32s} {s2d:>3s} "
                    f"{batch:5d} {row['mode']:>10s} {row['plain_ms']:9.2f} {row['fast_ms']:9.2f} "
                    f"{row['speedup']:7.2f} {row['max_rel_diff']:8.1e}",
                    flush=True,
                )
    with open(args.out, "w") as f:
        json.dump({"backend": jax.default_backend(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
