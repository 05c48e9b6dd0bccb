"""IMPALA mode: actor threads feed a V-trace learner through a bounded queue (adept's IMPALA).

Espeholt et al. 2018, "IMPALA: Scalable Distributed Deep-RL with Importance Weighted
Actor-Learner Architectures", arranged in one process as in Sebulba (Hessel et al. 2021,
"Podracer architectures for scalable Reinforcement Learning"): envpool steps its envs and XLA
runs compiled code with the GIL released, so actor threads and the learner overlap.

* ``--nb-actor`` actor threads, each with its own ``--nb-env`` envs (seeds never shared across
  actors), its own PRNG stream (``fold_in(key, actor_id)``) and, on the first local device, a
  compiled rollout (envpool envs, ``--rollout auto|compiled``) or a compiled ``act`` driven by
  the host loop (``--rollout host``, other envs), collect ``--exp-length``-step trajectories
  with the latest published params and put them, as :class:`Rollout`, on a
  :class:`RolloutQueue` of at most ``--max-queue-length`` (adept's backpressure): an actor
  reserves its place in the queue before it fetches params and collects, so it never holds a
  finished rollout while waiting.
* The learner (the calling thread) takes ``--batch-size`` rollouts (or, with
  ``--max-dynamic-batch``, those that are ready, rounded down to one of a few compiled sizes:
  :meth:`~fnrl.config.ImpalaConfig.dynamic_batch_sizes`), stacks them along the env axis,
  shards that axis over a mesh of the local devices ``--gpu-id`` lists (all by default), runs
  the compiled update and publishes the new params with their version (the number of updates
  applied).
* Policy lag is the learner's version minus the version a rollout acted with. Every rollout in
  flight (queued or being collected) holds one of the ``max_queue_length`` places, and its
  params are fetched once it has one, so at most ``max_queue_length - 1`` rollouts are ahead
  of it: the lag is at most ``ceil(max_queue_length / batch_size)`` updates, whatever the
  number of actors, unless an actor thread stalls mid-rollout (a descheduled thread).
* The step budget counts environment steps the learner consumed. The run stops at the first
  update boundary past it, on ``stop`` (Ctrl-C), or when a thread raises: every thread is
  stopped, a final checkpoint is written, and an actor's exception is re-raised here as
  :class:`ActorFailed` with the actor's traceback in its message.

Impure shell: threads, queues, devices, environments and the clock live here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from fnrl.agents import make_learner_update
from fnrl.config import ImpalaConfig
from fnrl.envs import BatchedEnv
from fnrl.parallel.actors import (
    Actor,
    Rollout,
    RolloutQueue,
    VersionedParams,
    take,
    take_dynamic,
)
from fnrl.parallel.build import RunHooks, RunParts, build_run, chosen_local_devices
from fnrl.parallel.run import RunResult, TrainingRun
from fnrl.settings import ConfigError
from fnrl.types import Params, TrainState, Trajectory

__all__ = [
    "Actor",
    "ActorFailed",
    "Rollout",
    "RolloutQueue",
    "VersionedParams",
    "learner_mesh",
    "stack_rollouts",
    "train_impala",
]

_JOIN_SECONDS = 30.0  # how long shutdown waits for the actor threads, all together
_BATCH_AXIS = "batch"


class ActorFailed(RuntimeError):
    """An actor thread raised; the message holds its exception and traceback."""


def learner_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh (``"batch"``) over ``devices`` (all local devices by default).

    The axis is ``Auto``: the compiled update is partitioned by XLA from the input shardings
    (params replicated, the env axis of the batch split), so the loss and its gradient are
    those of the whole batch, with the cross-device reductions inserted by the compiler.
    """
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (_BATCH_AXIS,), axis_types=(AxisType.Auto,))


def _batch_shardings(trajectory: Trajectory, mesh: Mesh) -> Trajectory:
    """Shardings that split the env axis: axis 1 of time-major arrays, axis 0 of the carry."""
    time_major = NamedSharding(mesh, PartitionSpec(None, _BATCH_AXIS))
    batch_major = NamedSharding(mesh, PartitionSpec(_BATCH_AXIS))
    shardings = jax.tree.map(lambda _: time_major, trajectory._replace(initial_carry=None))
    carry = jax.tree.map(lambda _: batch_major, trajectory.initial_carry)
    return shardings._replace(initial_carry=carry)


def stack_rollouts(rollouts: list[Rollout]) -> Trajectory:
    """Concatenates the rollouts' trajectories along the env axis.

    Args:
        rollouts: R rollouts of ``[T + 1, B_i]`` trajectories.

    Returns:
        One ``[T + 1, sum B_i]`` trajectory on the host, rollout after rollout.
    """
    trajectories = [rollout.trajectory for rollout in rollouts]
    time_major = [t._replace(initial_carry=None) for t in trajectories]
    stacked = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1), *time_major)
    carry = jax.tree.map(
        lambda *xs: np.concatenate(xs, axis=0), *[t.initial_carry for t in trajectories]
    )
    return stacked._replace(initial_carry=carry)


def _copy_params(params: Params) -> Params:
    """A copy in fresh buffers, so that donating the learner state never frees what actors read."""
    return jax.tree.map(jnp.copy, params)


def _batch_metrics(batch: list[Rollout], version: int) -> dict[str, float]:
    """Policy lag and actor timings of the rollouts of one learner batch."""
    lags = [version - rollout.policy_version for rollout in batch]
    return {
        "policy_lag": float(np.mean(lags)),
        "policy_lag_max": float(max(lags)),
        **{
            f"{phase}_seconds": float(np.mean([rollout.phase_seconds[phase] for rollout in batch]))
            for phase in batch[0].phase_seconds
        },
    }


def _stop_actors(actors: list[Actor], halt: threading.Event, run: TrainingRun) -> None:
    """Stops and joins the actors, then adds their mean phase times to the run's timer."""
    halt.set()
    deadline = time.monotonic() + _JOIN_SECONDS
    for actor in actors:
        if actor.ident is None:  # never started
            continue
        actor.join(timeout=max(0.0, deadline - time.monotonic()))
        if actor.is_alive():
            run.log.line(f"WARNING: actor {actor.actor_id} did not stop in {_JOIN_SECONDS}s")
    # Actors run side by side: their mean time per phase is comparable to the learner's.
    for phase in ("env", "inference", "rollout"):
        seconds = sum(a.timer.seconds.get(phase, 0.0) for a in actors) / len(actors)
        if seconds:
            run.timer.seconds[phase] += seconds
    run.log.line(
        "ACTORS: "
        + " ".join(
            f"actor{a.actor_id}:"
            + ",".join(f"{phase}={seconds:.2f}s" for phase, seconds in a.timer.seconds.items())
            for a in actors
        )
    )


def train_impala(
    config: ImpalaConfig,
    *,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
    hooks: RunHooks | None = None,
) -> RunResult:
    """Trains ``config.agent`` (ActorCriticVtrace by default) with actor threads and a learner.

    Args:
        config: the run's settings; ``nb_env`` envs per actor thread.
        stop: when set, the run stops at the next update boundary (Ctrl-C in the CLI).
        show_progress: progress bar on/off; ``None`` shows it on a terminal only.
        hooks: the caller's env factory and update callback (``RunHooks``); None: none.

    Returns:
        What the run did (see ``TrainingRun``); ``phase_seconds`` holds the learner's phases
        (``queue_wait``, ``transfer``, ``learner``, ``checkpoint``) and the actors' mean
        ``env`` and ``inference`` times.

    Raises:
        ValueError: bad configuration, e.g. a learner batch that does not split over devices.
        ActorFailed: an actor thread raised; the final checkpoint was written first.
        TrainingDiverged: the loss, the gradient or the new learner state became NaN or
            infinite; it is not saved, and the error names the last finite checkpoint.
    """
    mesh = _checked_learner_mesh(config)
    actors: list[Actor] = []

    def stepped_by_a_live_actor(env: BatchedEnv) -> bool:
        return any(actor.env is env and actor.is_alive() for actor in actors)

    with build_run(
        config,
        "impala",
        num_envs=config.nb_env,
        # Env i of actor k gets seed + k * nb_env + i: no two envs of a run share a seed.
        seeds=[config.seed + actor_id * config.nb_env for actor_id in range(config.nb_actor)],
        stop=stop,
        show_progress=show_progress,
        hooks=hooks,
        in_use=stepped_by_a_live_actor,
    ) as parts:
        config, run = parts.config, parts.run
        replicated = NamedSharding(mesh, PartitionSpec())
        update = jax.jit(
            make_learner_update(parts.agent, parts.optimizer),
            donate_argnums=0,
            out_shardings=(replicated, replicated),
        )
        snapshot = jax.jit(_copy_params, out_shardings=replicated)
        # Resume restores params, optimizer state, key and counters; the envs start fresh
        # (actors keep stepping while the learner saves, so no env log could match).
        state, _ = parts.start()
        state = jax.device_put(state, replicated)
        sizes = config.dynamic_batch_sizes(mesh.size)
        rollouts_per_batch = f"{sizes} (dynamic)" if sizes else str(config.batch_size)
        run.log.line(
            f"LEARNER: {mesh.size} device(s) {[str(d) for d in mesh.devices]}, batch of "
            f"{rollouts_per_batch} rollouts x {config.nb_env} envs x {config.exp_length} "
            f"steps; {config.nb_actor} actor threads"
        )
        store = VersionedParams(snapshot(state.params), version=run.budget.updates)
        rollouts = RolloutQueue(config.max_queue_length)
        halt = threading.Event()
        actors.extend(_make_actors(parts, state, store, rollouts, halt))
        try:
            for actor in actors:
                actor.start()
            state = _learn(config, run, state, update, snapshot, store, rollouts, halt, mesh)
        finally:
            _stop_actors(actors, halt, run)
        result = run.finish(state)
        _raise_if_failed(actors, result)
        return result


def _checked_learner_mesh(config: ImpalaConfig) -> Mesh:
    """The learner's mesh, once ``config`` is known to be an IMPALA config whose batch fits it.

    Raises:
        ValueError: another config class, or a learner batch that does not split over devices.
    """
    if not isinstance(config, ImpalaConfig):
        raise ValueError(
            f"train_impala needs an ImpalaConfig, got {type(config).__name__}; build it with "
            "fnrl.config.make_config(ImpalaConfig, ...)"
        )
    mesh = learner_mesh(chosen_local_devices(config.device_positions()))
    if config.max_dynamic_batch:
        if not config.dynamic_batch_sizes(mesh.size):
            raise ValueError(
                f"no dynamic batch of {max(1, config.min_dynamic_batch)} to "
                f"{config.max_dynamic_batch} rollouts x --nb-env {config.nb_env} envs splits "
                f"over the {mesh.size} learner devices; make --nb-env a multiple of {mesh.size}"
            )
        return mesh
    batch_envs = config.batch_size * config.nb_env
    if batch_envs % mesh.size:
        raise ValueError(
            f"the learner batch of --batch-size {config.batch_size} x --nb-env {config.nb_env} "
            f"= {batch_envs} envs does not split over the {mesh.size} learner devices; make it "
            f"a multiple of {mesh.size}"
        )
    return mesh


def _make_actors(
    parts: RunParts,
    state: TrainState,
    store: VersionedParams,
    rollouts: RolloutQueue,
    halt: threading.Event,
) -> list[Actor]:
    """One actor thread (not started) per env batch of ``parts``, each with its own key."""
    # A stream per actor and per start of the run (a resumed run starts new ones).
    actors_key = jax.random.fold_in(state.key, parts.run.budget.updates)
    positions = parts.config.device_positions()
    # Without --gpu-id the actors share the first device; with it they take its devices in turn.
    devices = chosen_local_devices([0] if positions is None else positions)
    return [
        Actor(
            actor_id,
            env,
            parts.agent,
            store,
            rollouts,
            halt,
            jax.device_put(
                jax.random.fold_in(actors_key, actor_id), devices[actor_id % len(devices)]
            ),
            parts.config.exp_length,
            devices[actor_id % len(devices)],
            parts.config.rollout,
        )
        for actor_id, env in enumerate(parts.envs)
    ]


def _raise_if_failed(actors: list[Actor], result: RunResult) -> None:
    """Re-raises the first actor's exception as :class:`ActorFailed`, if an actor failed.

    A :class:`~fnrl.settings.ConfigError` (an env whose first observations its space rules out,
    :class:`~fnrl.envs.EnvOutputError`) is re-raised as it is: its one line names the problem,
    and the command ends with exit code 2 as for any bad input, without the actor's traceback.
    """
    failed = [actor for actor in actors if actor.error is not None]
    if not failed:
        return
    actor = failed[0]
    if isinstance(actor.error, ConfigError):  # e.g. an env's first observation: one line says it
        raise actor.error
    raise ActorFailed(
        f"actor thread {actor.actor_id} failed: {type(actor.error).__name__}: "
        f"{actor.error} (stopped after {result.updates} updates, {result.env_steps} steps; "
        f"checkpoint {result.last_checkpoint}); actor traceback:\n"
        f"{actor.traceback_text}"
    ) from actor.error


def _learn(
    config: ImpalaConfig,
    run: TrainingRun,
    state,
    update: Callable,
    snapshot: Callable,
    store: VersionedParams,
    rollouts: RolloutQueue,
    halt: threading.Event,
    mesh: Mesh,
):
    """The learner loop: take a batch, update, publish, record; until the run is finished."""
    sizes = config.dynamic_batch_sizes(mesh.size)
    info: list[dict[str, float]] = []  # the metrics since the last info line
    while not run.finished:
        with run.timer.phase("queue_wait"):
            start = time.perf_counter()
            if sizes:
                batch = take_dynamic(rollouts, sizes, (halt, run.stop))
            else:
                batch = take(rollouts, config.batch_size, (halt, run.stop))
            queue_wait = time.perf_counter() - start
        if batch is None:
            break
        with run.timer.phase("transfer"):
            trajectory = stack_rollouts(batch)
            trajectory = jax.device_put(trajectory, _batch_shardings(trajectory, mesh))
        with run.timer.phase("learner"):
            start = time.perf_counter()
            state, metrics = update(state, trajectory)
            metrics = jax.device_get(metrics)
            learner_seconds = time.perf_counter() - start
        version = run.budget.updates
        store.publish(snapshot(state.params), version + 1)
        metrics = {
            **metrics,
            **_batch_metrics(batch, version),
            "queue_wait_seconds": queue_wait,
            "learner_seconds": learner_seconds,
            "queue_size": float(rollouts.qsize()),
            "batch_rollouts": float(len(batch)),
        }
        env_steps = sum(int(np.prod(rollout.trajectory.rewards.shape)) for rollout in batch)
        episodes = [episode for rollout in batch for episode in rollout.episodes]
        run.record(state, metrics, env_steps, episodes)
        info.append(metrics)
        if len(info) == config.host_training_info_interval:
            run.log.line(_training_info(run.budget.updates, info))
            info.clear()
    return state


def _training_info(updates: int, metrics: list[dict[str, float]]) -> str:
    """The learner's info line (``--host-training-info-interval``) over ``metrics``' updates."""

    def mean(name: str) -> float:
        return float(np.mean([m[name] for m in metrics]))

    return (
        f"LEARNER INFO: {updates} updates; last {len(metrics)}: "
        f"{mean('batch_rollouts'):.2f} rollouts per batch, policy lag {mean('policy_lag'):.2f}, "
        f"queue wait {mean('queue_wait_seconds'):.4f} s, learner {mean('learner_seconds'):.4f} s"
    )
