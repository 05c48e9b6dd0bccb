"""Training throughput of fnrl's local mode against raw envpool, measured in one run.

For each env id, at the same env count:

* ``env``: raw envpool stepping random actions (no learning, no fnrl code);
* ``local``: ``fnrl.train local`` with the default network for that env, after its first
  update (compilation excluded), logging and checkpoints included.

Frames count the Atari frame skip (4 frames per agent step), as adept did. The ratio
``local / env`` is the fraction of raw simulator speed that training keeps; absolute numbers
vary across machines, ratios much less.

    python benchmarks/throughput.py --out throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import envpool
import numpy as np

from fnrl.config import TrainConfig
from fnrl.envs import atari_task_id
from fnrl.parallel.local import train_local


def raw_envpool_fps(env_id: str, num_envs: int, steps: int, seed: int = 0) -> float:
    """Frames per second of envpool stepping ``num_envs`` envs with uniform random actions."""
    atari = atari_task_id(env_id)
    pool = envpool.make(
        atari or env_id, env_type="gymnasium", num_envs=num_envs, batch_size=num_envs, seed=seed
    )
    frame_skip = pool.config.get("frame_skip", 1) if atari else 1
    rng = np.random.default_rng(seed)
    num_actions = pool.action_space.n
    pool.reset()
    start = time.perf_counter()
    for _ in range(steps):
        pool.step(rng.integers(0, num_actions, num_envs).astype(np.int32))
    seconds = time.perf_counter() - start
    pool.close()
    return steps * num_envs * frame_skip / seconds


def local_training(config: TrainConfig, updates: int) -> dict:
    """Runs local training for ``updates + 1`` updates; speed after the first one."""
    budget = (updates + 1) * config.nb_env * config.exp_length
    with tempfile.TemporaryDirectory() as log_dir:
        config = dataclasses.replace(config, max_train_steps=budget, log_dir=log_dir)
        result = train_local(config, show_progress=False)
    return {
        "frames_per_second": result.steady_frames_per_second,
        "warmup_seconds": result.warmup_seconds,
        "bound": result.bound,
        "phase_seconds": result.phase_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-ids", nargs="+", default=["Pong-v5", "CartPole-v1"])
    parser.add_argument("--nb-env", type=int, default=TrainConfig.nb_env, help="envs per run")
    parser.add_argument("--env-steps", type=int, default=500, help="raw env steps per env")
    parser.add_argument("--updates", type=int, default=10, help="timed training updates")
    parser.add_argument("--out", default="throughput.json", help="where to write the JSON")
    args = parser.parse_args()

    rows = []
    for env_id in args.env_ids:
        config = TrainConfig(env_id=env_id, nb_env=args.nb_env)
        env_fps = raw_envpool_fps(env_id, args.nb_env, args.env_steps)
        local = local_training(config, args.updates)
        rows.append(
            {
                "env_id": env_id,
                "nb_env": args.nb_env,
                "network": f"{config.vision_network}+{config.network_body}",
                "env_frames_per_second": env_fps,
                "local_frames_per_second": local["frames_per_second"],
                "local_over_env": local["frames_per_second"] / env_fps,
                "local": local,
            }
        )

    header = f"{'env':14s} {'envs':>5s} {'env frames/s':>13s} {'local frames/s':>15s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['env_id']:14s} {row['nb_env']:5d} {row['env_frames_per_second']:13.0f} "
            f"{row['local_frames_per_second']:15.0f} {row['local_over_env']:7.3f}"
            f"   bound by {row['local']['bound']}"
        )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
