"""The vision trunks' convolutions on XLA:CPU: ``lax``'s against fnrl's chunked convolution.

Three tables, each from timings interleaved in the same repeats (so that a busy machine slows
every variant alike), compilation excluded, blocked on with ``jax.block_until_ready`` before
the clock is read, medians over ``--repeats`` rounds with their spread:

* ``matmul``: float32 ``jnp.dot`` GFLOP/s at a few sizes, the roofline the convs are held to.
* ``layers``: each conv of the Nature network on 84x84x4 frames, forward, kernel gradient
  (``dW``) and input gradient (``dX``) with ``lax.conv_general_dilated``, as one call on
  ``--batch`` images and as calls on chunks of 4, 8, 16 and 32 images (the same total work),
  with the GFLOP/s of each. XLA:CPU's convolutions cost more per image on large batches.
* ``update``: the whole A2C learner update of ``benchmarks/peers.py`` (Pong, 16 envs x 5 steps,
  the ``Linear`` body, no normalization, RMSprop with clipping; 96 observations per update),
  with ``lax``'s convolution and with ``fnrl.networks._conv.conv_general_dilated`` (the
  default on CPU), for each trunk named in ``--trunks``.

    python benchmarks/convs.py --out convs.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import fnrl.networks._layers as layers
from fnrl.agents import init_train_state, make_update
from fnrl.config import make_config
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.local import make_agent, make_training_env
from fnrl.types import Trajectory

_NHWC = ("NHWC", "HWIO", "NHWC")
# (name, input size, in channels, out channels, kernel, stride): the Nature DQN's convs.
NATURE_LAYERS = (
    ("conv1", 84, 4, 32, 8, 4),
    ("conv2", 20, 32, 64, 4, 2),
    ("conv3", 9, 64, 64, 3, 1),
)
CONVS = {"lax": lax.conv_general_dilated, "fnrl": layers.conv_general_dilated}


def interleaved(steps: dict[str, Callable[[], object]], repeats: int, calls: int) -> dict:
    """Per step: the median, min and max over ``repeats`` rounds of its median of ``calls`` ms."""
    rounds: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():
        jax.block_until_ready(step())  # compiles
    for _ in range(repeats):
        for name, step in steps.items():
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                jax.block_until_ready(step())
                times.append(time.perf_counter() - start)
            rounds[name].append(1e3 * statistics.median(times))
    return {
        name: {"ms": statistics.median(ms), "min_ms": min(ms), "max_ms": max(ms)}
        for name, ms in rounds.items()
    }


def matmul_rows(repeats: int) -> list[dict]:
    """GFLOP/s of float32 ``jnp.dot`` at the conv1 im2col shape and two square sizes."""
    rng = np.random.default_rng(0)
    shapes = {"38400x256 @ 256x32": (38400, 256, 32), "1024^3": (1024, 1024, 1024)}
    shapes["2048^3"] = (2048, 2048, 2048)
    steps, flops = {}, {}
    for name, (m, k, n) in shapes.items():
        a = jnp.asarray(rng.normal(size=(m, k)), jnp.float32)
        b = jnp.asarray(rng.normal(size=(k, n)), jnp.float32)
        dot = jax.jit(jnp.dot)
        steps[name] = lambda dot=dot, a=a, b=b: dot(a, b)
        flops[name] = 2 * m * k * n
    times = interleaved(steps, repeats, 3)
    return [
        {"shape": name, **t, "gflops": flops[name] / t["ms"] / 1e6} for name, t in times.items()
    ]


def _chunked(fn: Callable, chunk: int) -> Callable:
    """``fn`` of a batch as calls on ``chunk`` images each (outputs discarded but the last)."""

    def run(x, *rest):
        for start in range(0, x.shape[0], chunk):
            out = fn(x[start : start + chunk], *(r[start : start + chunk] for r in rest))
        return out

    return run


def layer_rows(batch: int, repeats: int) -> list[dict]:
    """Forward, dW and dX of each Nature conv with ``lax``, on ``batch`` images or in chunks."""
    rng = np.random.default_rng(0)
    rows = []
    for name, size, channels, features, kernel, stride in NATURE_LAYERS:
        out = (size - kernel) // stride + 1
        w = jnp.asarray(rng.normal(size=(kernel, kernel, channels, features)), jnp.float32)

        def conv(x, w, stride=stride):
            return lax.conv_general_dilated(x, w, (stride, stride), "VALID", None, None, _NHWC)

        parts = {
            "fwd": jax.jit(conv),
            "dW": jax.jit(lambda x, dy, conv=conv, w=w: jax.vjp(lambda w: conv(x, w), w)[1](dy)),
            "dX": jax.jit(lambda x, dy, conv=conv, w=w: jax.vjp(lambda x: conv(x, w), x)[1](dy)),
        }
        x = jnp.asarray(rng.normal(size=(batch, size, size, channels)), jnp.float32)
        dy = jnp.asarray(rng.normal(size=(batch, out, out, features)), jnp.float32)
        steps = {}
        for part, fn in parts.items():
            for chunk in (batch, 32, 16, 8, 4):
                if chunk > batch or batch % chunk:
                    continue
                if part == "fwd":
                    run = _chunked(lambda x, fn=fn, w=w: fn(x, w), chunk)
                    steps[(part, chunk)] = lambda run=run, x=x: run(x)
                else:
                    run = _chunked(fn, chunk)
                    steps[(part, chunk)] = lambda run=run, x=x, dy=dy: run(x, dy)
        flops = 2 * batch * out * out * features * kernel * kernel * channels
        for (part, chunk), t in interleaved(steps, repeats, 3).items():
            rows.append(
                {
                    "layer": f"Nature.{name}",
                    "shape": f"{size}x{size}x{channels} {kernel}x{kernel}/{stride} -> {features}",
                    "part": part,
                    "images_per_call": chunk,
                    "batch": batch,
                    **t,
                    "gflops": flops / t["ms"] / 1e6,
                }
            )
    return rows


@contextlib.contextmanager
def trunk_convolution(conv: Callable) -> Iterator[None]:
    """Builds networks whose ``torch_conv`` layers call ``conv`` (restored on exit).

    The trunks take their convolution from ``fnrl.networks._layers`` when they are built; the
    benchmark swaps it for the duration of building one agent to compare both.
    """
    original = layers.conv_general_dilated
    layers.conv_general_dilated = conv
    try:
        yield
    finally:
        layers.conv_general_dilated = original


def pong_update(trunk: str, conv: Callable) -> Callable[[], object]:
    """One compiled A2C update on a fixed Pong batch (5 x 16 plus bootstrap), state donated."""
    config = make_config(
        env_id="PongNoFrameskip-v4",
        nb_env=16,
        exp_length=5,
        seed=0,
        learning_rate=7e-4,
        entropy_coef=0.01,
        normalize_advantage=False,
        max_grad_norm=0.5,
        network_body="Linear",
        normalize=False,
        nb_eval_env=0,
        vision_network=trunk,
    )
    env = make_training_env(config, config.nb_env, config.seed)
    spec = env.spec
    env.close()
    with trunk_convolution(conv):
        agent = make_agent(config, spec)
        optimizer = make_rmsprop(config.learning_rate, max_grad_norm=config.max_grad_norm)
        state = init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed))
        ((obs_key, obs_spec),) = spec.observations.items()
        ((action_key, action_spec),) = spec.actions.items()
        steps, nb_env = config.exp_length, config.nb_env
        rng = np.random.default_rng(0)
        no_end = np.zeros((steps, nb_env), bool)
        trajectory = jax.device_put(
            Trajectory(
                obs={obs_key: rng.integers(0, 256, (steps + 1, nb_env, *obs_spec.shape), np.uint8)},
                first=np.zeros((steps + 1, nb_env), bool),
                actions={action_key: rng.integers(0, action_spec.num_values, (steps, nb_env))},
                rewards=rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (steps, nb_env)),
                terminated=no_end,
                truncated=no_end,
                behaviour_logits={
                    action_key: np.zeros((steps, nb_env, action_spec.num_values), np.float32)
                },
                initial_carry=agent.initial_carry(nb_env),
            )
        )
        update = jax.jit(make_update(agent, optimizer), donate_argnums=0)
        box = {"state": jax.block_until_ready(update(state, trajectory))[0]}

    def step():
        box["state"], metrics = update(box["state"], trajectory)
        return box["state"], metrics

    return step


def update_rows(trunks: list[str], repeats: int) -> list[dict]:
    """The whole update per trunk, ``lax`` against fnrl's convolution, interleaved."""
    rows = []
    for trunk in trunks:
        steps = {name: pong_update(trunk, conv) for name, conv in CONVS.items()}
        times = interleaved(steps, repeats, 3)
        rows.append(
            {
                "trunk": trunk,
                **{f"{name}_{key}": value for name, t in times.items() for key, value in t.items()},
                "speedup": times["lax"]["ms"] / times["fnrl"]["ms"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file for the results")
    parser.add_argument("--batch", type=int, default=96, help="frames in the layers table")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per table")
    parser.add_argument(
        "--trunks", nargs="+", default=["Nature", "Mnih2013", "FourConv", "FourConvLarger"]
    )
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s)")

    matmul = matmul_rows(args.repeats)
    print(f"\n{'matmul':20s} {'ms':>8s} {'GFLOP/s':>8s}")
    for row in matmul:
        print(f"{row['shape']:20s} {row['ms']:8.2f} {row['gflops']:8.1f}", flush=True)

    layer = layer_rows(args.batch, args.repeats)
    print(f"\n{'layer':14s} {'shape':22s} {'part':>4s} {'imgs/call':>9s} {'ms':>8s} "
          f"{'[min, max]':>17s} {'GFLOP/s':>8s}")  # fmt: skip
    for row in layer:
        print(
            f"{row['layer']:14s} {row['shape']:22s} {row['part']:>4s} "
            f"{row['images_per_call']:9d} {row['ms']:8.2f} "
            f"[{row['min_ms']:7.2f}, {row['max_ms']:7.2f}] {row['gflops']:8.1f}",
            flush=True,
        )

    update = update_rows(args.trunks, args.repeats)
    print(f"\n{'update (Pong)':16s} {'lax ms':>8s} {'fnrl ms':>8s} {'speedup':>7s}")
    for row in update:
        print(
            f"{row['trunk']:16s} {row['lax_ms']:8.2f} {row['fnrl_ms']:8.2f} "
            f"{row['speedup']:7.2f}  (lax [{row['lax_min_ms']:.1f}, {row['lax_max_ms']:.1f}], "
            f"fnrl [{row['fnrl_min_ms']:.1f}, {row['fnrl_max_ms']:.1f}])",
            flush=True,
        )
    with open(args.out, "w") as f:
        json.dump(
            {
                "backend": jax.default_backend(),
                "matmul": matmul,
                "layers": layer,
                "update": update,
            },
            f,
            indent=2,
        )


if __name__ == "__main__":
    main()
