"""Training throughput of fnrl's local and IMPALA modes against raw envpool, in one run.

For each env id, at the same env count:

* ``env``: raw envpool stepping random actions (no learning, no fnrl code);
* ``local``: ``fnrl.train local`` with the default network for that env, after its first
  update (compilation excluded), logging and checkpoints included.

For the env ids of ``--impala-env-ids`` (Pong-v5 by default), also:

* ``impala N``: ``fnrl.train impala`` with N actor threads of ``nb_env / N`` envs each and
  batches of N rollouts, so that every update trains on the same ``nb_env x exp_length``
  steps as local mode's; after its first update, logging and checkpoints included;
* ``learner``: the compiled learner update alone, repeated on one fixed batch of that size
  already on the device (no envs, no acting): the speed training could reach if experience
  were free, the bound IMPALA approaches when the learner is the bottleneck.

Frames count the Atari frame skip (4 frames per agent step), as adept did. The ratio
``local / env`` is the fraction of raw simulator speed that training keeps, ``/ learner`` the
fraction of the learner-alone bound; absolute numbers vary across machines, ratios much less.
The evaluation thread is off in every run (``--nb-eval-env 0``).

    python benchmarks/throughput.py --out throughput.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import envpool
import jax
import numpy as np

from fnrl.agents import init_train_state, make_update
from fnrl.config import ImpalaConfig, OptimizerSettings, TrainConfig
from fnrl.envs import atari_task_id
from fnrl.parallel.impala import train_impala
from fnrl.parallel.local import make_agent, make_training_env, make_training_optimizer, train_local
from fnrl.parallel.phases import PhaseTimer
from fnrl.parallel.rollout import collect


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


def impala_training(config: TrainConfig, nb_actor: int, updates: int) -> dict:
    """IMPALA with ``nb_actor`` actors of ``nb_env / nb_actor`` envs and batches of
    ``nb_actor`` rollouts (local mode's batch), for ``updates + 1`` updates; speed after the
    first one."""
    if config.nb_env % nb_actor:
        raise ValueError(f"--nb-env {config.nb_env} does not split over {nb_actor} actors")
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    budget = (updates + 1) * config.nb_env * config.exp_length
    with tempfile.TemporaryDirectory() as log_dir:
        impala = ImpalaConfig(
            **{
                **fields,
                "agent": "ActorCriticVtrace",
                "nb_env": config.nb_env // nb_actor,
                "nb_actor": nb_actor,
                "batch_size": nb_actor,
                "max_queue_length": 2 * nb_actor,  # adept's default
                "max_train_steps": budget,
                "log_dir": log_dir,
            }
        )
        result = train_impala(impala, show_progress=False)
    lags = [m["policy_lag"] for m in result.metrics]
    return {
        "frames_per_second": result.steady_frames_per_second,
        "warmup_seconds": result.warmup_seconds,
        "bound": result.bound,
        "phase_seconds": result.phase_seconds,
        "mean_policy_lag": float(np.mean(lags[1:])) if len(lags) > 1 else float("nan"),
    }


def learner_alone_fps(config: TrainConfig, updates: int) -> dict:
    """Frames per second of the compiled V-trace update alone on one fixed device batch.

    The batch is one real ``nb_env x exp_length`` rollout (so its episode boundaries and
    importance ratios are realistic); the update is timed ``updates`` times after a first,
    compiling call, blocking on its result before reading the clock.
    """
    env = make_training_env(config, config.nb_env, config.seed)
    try:
        agent = make_agent(dataclasses.replace(config, agent="ActorCriticVtrace"), env.spec)
        optimizer = make_training_optimizer(config.section(OptimizerSettings))
        state = init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed))
        rollout = collect(
            env,
            jax.jit(agent.act),
            state.params,
            jax.random.PRNGKey(1),
            env.reset(),
            agent.initial_carry(config.nb_env),
            config.exp_length,
            PhaseTimer(),
        )
        frames_per_update = config.nb_env * config.exp_length * env.frames_per_step
    finally:
        env.close()
    trajectory = jax.device_put(rollout.trajectory)
    update = jax.jit(make_update(agent, optimizer), donate_argnums=0)
    start = time.perf_counter()
    state, metrics = jax.block_until_ready(update(state, trajectory))
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(updates):
        state, metrics = update(state, trajectory)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - start
    return {
        "frames_per_second": updates * frames_per_update / seconds,
        "seconds_per_update": seconds / updates,
        "warmup_seconds": compile_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env-ids", nargs="+", default=["Pong-v5", "CartPole-v1"])
    parser.add_argument("--nb-env", type=int, default=TrainConfig.nb_env, help="envs per run")
    parser.add_argument("--env-steps", type=int, default=500, help="raw env steps per env")
    parser.add_argument("--updates", type=int, default=10, help="timed training updates")
    parser.add_argument(
        "--impala-env-ids",
        nargs="*",
        default=["Pong-v5"],
        help="env ids (among --env-ids) also measured in IMPALA mode and learner alone",
    )
    parser.add_argument(
        "--impala-actors", nargs="+", type=int, default=[1, 2], help="actor thread counts"
    )
    parser.add_argument("--out", default="throughput.json", help="where to write the JSON")
    args = parser.parse_args()

    rows = []
    for env_id in args.env_ids:
        config = TrainConfig(env_id=env_id, nb_env=args.nb_env, nb_eval_env=0)
        env_fps = raw_envpool_fps(env_id, args.nb_env, args.env_steps)
        local = local_training(config, args.updates)
        row = {
            "env_id": env_id,
            "nb_env": args.nb_env,
            "network": f"{config.vision_network}+{config.network_body}",
            "env_frames_per_second": env_fps,
            "local_frames_per_second": local["frames_per_second"],
            "local_over_env": local["frames_per_second"] / env_fps,
            "local": local,
        }
        if env_id in args.impala_env_ids:
            learner = learner_alone_fps(config, args.updates)
            row["learner_frames_per_second"] = learner["frames_per_second"]
            row["learner"] = learner
            row["local_over_learner"] = local["frames_per_second"] / learner["frames_per_second"]
            for nb_actor in args.impala_actors:
                impala = impala_training(config, nb_actor, args.updates)
                row[f"impala{nb_actor}_frames_per_second"] = impala["frames_per_second"]
                row[f"impala{nb_actor}_over_env"] = impala["frames_per_second"] / env_fps
                row[f"impala{nb_actor}_over_learner"] = (
                    impala["frames_per_second"] / learner["frames_per_second"]
                )
                row[f"impala{nb_actor}"] = impala
        rows.append(row)

    header = f"{'env':14s} {'envs':>5s} {'env frames/s':>13s} {'local frames/s':>15s} {'ratio':>7s}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['env_id']:14s} {row['nb_env']:5d} {row['env_frames_per_second']:13.0f} "
            f"{row['local_frames_per_second']:15.0f} {row['local_over_env']:7.3f}"
            f"   bound by {row['local']['bound']}"
        )
    for row in rows:
        if "learner_frames_per_second" not in row:
            continue
        print(
            f"\n{row['env_id']}, {row['nb_env']} envs, {row['network']}: every update trains on "
            f"{row['nb_env']} envs x {TrainConfig.exp_length} steps"
        )
        header = f"{'run':18s} {'frames/s':>10s} {'/ env':>7s} {'/ learner':>10s}  notes"
        print(header)
        print("-" * len(header))
        learner_fps = row["learner_frames_per_second"]
        runs = [
            ("env (raw envpool)", row["env_frames_per_second"], ""),
            ("learner alone", learner_fps, "fixed batch, no envs"),
            ("local", row["local_frames_per_second"], f"bound by {row['local']['bound']}"),
        ]
        for nb_actor in args.impala_actors:
            impala = row[f"impala{nb_actor}"]
            runs.append(
                (
                    f"impala {nb_actor} actor{'s' if nb_actor > 1 else ''}",
                    impala["frames_per_second"],
                    f"bound by {impala['bound']}, mean policy lag {impala['mean_policy_lag']:.2f}",
                )
            )
        for name, fps, note in runs:
            print(
                f"{name:18s} {fps:10.0f} {fps / row['env_frames_per_second']:7.3f} "
                f"{fps / learner_fps:10.3f}  {note}"
            )
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
