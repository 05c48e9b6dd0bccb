"""Towered mode: synchronous data-parallel A2C over every device, and over several hosts.

adept's towered mode ran one worker per GPU and averaged gradients over MPI. Here it is one
SPMD program: a ``Mesh`` with one ``"data"`` axis spans the chosen devices of every process;
each process steps ``--nb-env`` envs per local device. Each process collects its envs' rollout
on its first device (by default in one compiled computation on envpool envs, see
:class:`~fnrl.parallel.rollout.SegmentCollector`), acting as each device would on its own part
of the batch (:func:`make_shardwise_act`); the update runs under ``shard_map`` with the env batch
split over the axis and the params replicated, and averages gradients (``lax.psum`` weighted by
each shard's sample count) and batch-norm statistics (``lax.pmean``) across devices. Several
hosts join through ``jax.distributed`` (JAX's own multi-controller runtime); only process 0
writes the run directory.

Impure shell: owns devices, environments, the distributed runtime and the clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from fnrl.agents import Agent, make_learner_update
from fnrl.config import ToweredConfig, long_flag
from fnrl.parallel.build import RunHooks, build_run, devices_at
from fnrl.parallel.rollout import SegmentCollector
from fnrl.parallel.run import RunResult
from fnrl.parallel.runtime_abort import relay_stderr
from fnrl.types import TrainState, Trajectory

AXIS = "data"
_BATCH = P(AXIS)  # leading axis split over devices
_TIME_BATCH = P(None, AXIS)  # [T, B, ...] with B split over devices
_REPLICATED = P()


def initialize_distributed(config: ToweredConfig) -> None:
    """Joins the multi-process runtime when the flags or a SLURM job ask for several processes.

    CPU devices exchange gradients over gloo. A process that cannot join within
    ``--heartbeat-timeout`` seconds ends with one line. JAX's runtime aborts every process with
    a page of C++ logs once one stops sending heartbeats, with no hook to run first; it gets
    four times the timeout, so that :class:`PeerWatchdog` names the fault and ends the process
    before (with twice, a peer's last heartbeat, sent before it froze, let JAX's abort come
    first on a busy machine). When the runtime aborts the process itself (the coordinator
    killed, a process index given twice), its C++ logs become one line
    (:mod:`fnrl.parallel.runtime_abort`).
    """
    slurm_tasks = int(os.environ.get("SLURM_NTASKS", "1"))
    if config.num_processes == 1 and slurm_tasks == 1:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # JAX's preemption service installs a SIGTERM handler that only records the signal for
    # ``multihost_utils.reached_preemption_sync_point``, which fnrl does not call: SIGTERM would
    # be swallowed. Without it the CLI's handler stops the run as on Ctrl-C.
    jax.config.update("jax_enable_preemption_service", False)
    timeouts = {
        "heartbeat_timeout_seconds": 4 * config.heartbeat_timeout,
        # Past this JAX aborts with a page of C++ logs; the watchdog below speaks first.
        "initialization_timeout": 2 * config.heartbeat_timeout + 30,
    }
    relay_stderr(config.process_id if config.num_processes > 1 else int(os.environ["SLURM_PROCID"]))
    if config.num_processes > 1:
        with _join_watchdog(config):
            jax.distributed.initialize(
                coordinator_address=config.coordinator_address,
                num_processes=config.num_processes,
                process_id=config.process_id,
                **timeouts,
            )
    else:  # SLURM: jax reads the coordinator, process count and index from the job
        jax.distributed.initialize(**timeouts)


# What each process of a run sets on its own: its index, where it would write and what it would
# resume (only process 0 writes and reads the run directory, so its name's tag too).
_PER_PROCESS = ("process_id", "log_dir", "resume", "tag")


def check_same_settings(config: ToweredConfig) -> None:
    """Checks that every process of the run was started with the same settings as process 0.

    Processes started with different flags (``-n``, ``-mts``, the network) would otherwise
    train on until a collective that does not fit aborts with C++ logs.

    Raises:
        ValueError: naming the first setting in which a process differs from process 0.
    """
    if jax.process_count() == 1:
        return
    shared = {k: v for k, v in dataclasses.asdict(config).items() if k not in _PER_PROCESS}
    mine = np.frombuffer(json.dumps(shared, sort_keys=True, default=str).encode(), np.uint8)
    lengths = multihost_utils.process_allgather(np.int32(mine.size))
    padded = np.zeros(int(lengths.max()), np.uint8)
    padded[: mine.size] = mine
    rows = multihost_utils.process_allgather(padded)
    first, *others = [json.loads(row[:n].tobytes()) for row, n in zip(rows, lengths, strict=True)]
    for process, other in enumerate(others, 1):
        for name in sorted(first.keys() | other.keys()):
            if first.get(name) != other.get(name):
                flag = long_flag(name, type(config)) if name in shared else name
                raise ValueError(
                    f"process {process} was started with {flag} "
                    f"{other.get(name)!r}, process 0 with {first.get(name)!r}: every process of "
                    "a towered run needs the same settings"
                )


def exit_now(message: str) -> NoReturn:
    """Prints ``fnrl.train: error: MESSAGE`` and ends the process at once with code 1.

    For a thread that finds the run cannot go on while the main thread is blocked in JAX's
    runtime, which cannot be interrupted and would abort with C++ logs instead.
    """
    print(f"fnrl.train: error: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(1)


@contextlib.contextmanager
def _join_watchdog(config: ToweredConfig) -> Iterator[None]:
    """Ends the process with one line if the processes have not all joined within the timeout."""
    joined = threading.Event()
    seconds, address = config.heartbeat_timeout, config.coordinator_address
    where = f"within {seconds} s (process {config.process_id} of {config.num_processes})"

    def watch() -> None:
        if joined.wait(seconds):
            return
        # Two processes given the same --process-id 0 both start a coordinator on the port.
        each_once = f"(start each of the {config.num_processes} once, with its own --process-id)"
        if config.process_id == 0:
            exit_now(f"not every process joined the coordinator at {address} {where} {each_once}")
        if _answers(address):
            exit_now(
                f"the coordinator at {address} answered, but not every process joined {where} "
                f"{each_once}"
            )
        exit_now(f"could not reach the coordinator at {address} {where}")

    threading.Thread(target=watch, name="join-watchdog", daemon=True).start()
    try:
        yield
    finally:
        joined.set()


class PeerWatchdog:
    """Ends the process with one line when a wait for the other processes outlasts a timeout.

    A frozen or unreachable peer otherwise blocks this process in a collective until JAX's
    runtime aborts it with C++ logs (after four times the timeout, see
    :func:`initialize_distributed`).
    Only waits inside :meth:`waiting` count; with one process nothing is watched.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._since: float | None = None  # when the current wait began
        self._where = f"process {jax.process_index()} of {jax.process_count()}"
        self._closed = threading.Event()
        if jax.process_count() > 1:
            threading.Thread(target=self._watch, name="peer-watchdog", daemon=True).start()

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """A wait for the other processes: it may last at most ``seconds``."""
        self._since = time.monotonic()
        try:
            yield
        finally:
            self._since = None

    def close(self) -> None:
        """Stops watching."""
        self._closed.set()

    def _watch(self) -> None:
        while not self._closed.wait(min(1.0, self.seconds / 10)):
            since = self._since
            if since is not None and time.monotonic() - since > self.seconds:
                exit_now(
                    f"the other processes did not answer at an update within {self.seconds} s "
                    f"(--heartbeat-timeout): one has stopped or is unreachable ({self._where})"
                )


def _answers(address: str) -> bool:
    """Whether something accepts TCP connections at ``HOST:PORT``."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
    except OSError:
        return False
    return True


def make_mesh(positions: list[int] | None) -> Mesh:
    """A one-axis mesh over the same local device positions of every process.

    Args:
        positions: indices into each process's local device list; None for all devices.

    Raises:
        ValueError: a position does not exist on some process.
    """
    devices = []
    for process in range(jax.process_count()):
        local = [d for d in jax.devices() if d.process_index == process]
        devices.extend(devices_at(positions, local, f"process {process}"))
    return Mesh(np.array(devices), (AXIS,))


def to_global(mesh: Mesh, tree: Any, spec: P) -> Any:
    """Assembles this process's part of ``tree`` into arrays sharded over ``mesh`` by ``spec``.

    A replicated ``spec`` takes the whole value from every process (they hold the same one).
    """
    sharding = NamedSharding(mesh, spec)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
    )


def to_local(tree: Any) -> Any:
    """This process's part of globally sharded arrays, as numpy (the whole of replicated ones)."""

    def local(x: jax.Array) -> np.ndarray:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        return np.concatenate([np.asarray(s.data) for s in shards])

    return jax.tree.map(local, tree)


def local_positions(mesh: Mesh) -> list[int]:
    """The indices on the mesh axis of this process's devices, in axis order."""
    return [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]


def make_shardwise_act(agent: Agent, positions: list[int]) -> Callable:
    """``agent.act`` on this process's envs on one device, computing what each mesh device would.

    The env batch splits into ``len(positions)`` equal parts, one per local device of the mesh
    in axis order (the parts the update shards them into); each part samples with its own key,
    ``fold_in(key, position)``, and batch norm uses each part's own statistics, as in the
    data-parallel update. Acting on one device keeps the envs' compiled rollout whole (an env
    step cannot be sharded) and lets the learner's devices stay busy with the update.
    """
    positions = np.asarray(positions, np.uint32)

    def act(params, key, carry, obs, first):
        def part(position, carry, obs, first):
            return agent.act(params, jax.random.fold_in(key, position), carry, obs, first)

        split, merge = (
            lambda x: x.reshape(len(positions), -1, *x.shape[1:]),
            lambda x: x.reshape(-1, *x.shape[2:]),
        )
        outputs = jax.vmap(part)(positions, *jax.tree.map(split, (carry, obs, first)))
        return jax.tree.map(merge, outputs)

    return act


def local_replica(tree: Any) -> Any:
    """The copy on this process's first device of replicated global arrays (no copying)."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)


def make_towered_update(agent: Agent, optimizer: Any, mesh: Mesh) -> Callable:
    """The data-parallel learner step: ``update(state, trajectory) -> (state, metrics)``.

    ``trajectory`` holds this process's envs (numpy or device arrays); the result is replicated
    on every device.
    """
    trajectory_specs = Trajectory(
        obs=_TIME_BATCH,
        first=_TIME_BATCH,
        actions=_TIME_BATCH,
        rewards=_TIME_BATCH,
        terminated=_TIME_BATCH,
        truncated=_TIME_BATCH,
        behaviour_logits=_TIME_BATCH,
        initial_carry=jax.tree.map(lambda _: _BATCH, agent.initial_carry(1)),
    )
    update = jax.jit(
        jax.shard_map(
            make_learner_update(agent, optimizer, axis_name=AXIS),
            mesh=mesh,
            in_specs=(_REPLICATED, trajectory_specs),
            out_specs=(_REPLICATED, _REPLICATED),
            # rlax's scans carry unannotated values; the outputs are replicated by the psums.
            check_vma=False,
        ),
        donate_argnums=0,
    )

    def host_update(state: TrainState, trajectory: Trajectory):
        carry = to_global(mesh, trajectory.initial_carry, _BATCH)
        trajectory = to_global(mesh, trajectory._replace(initial_carry=()), _TIME_BATCH)
        return update(state, trajectory._replace(initial_carry=carry))

    return host_update


def make_stop_agreement(mesh: Mesh) -> Callable[[threading.Event], bool]:
    """``agree(stop)``: True on every process once any of them was asked to stop.

    One small all-reduce per call, so that every process leaves the loop at the same update.
    """
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    count_votes = jax.jit(lambda votes: votes.sum())

    def agree(stop: threading.Event) -> bool:
        votes = np.full((local_devices,), stop.is_set(), np.int32)
        return bool(to_local(count_votes(to_global(mesh, votes, _BATCH))))

    return agree


def params_digest(params: Any) -> str:
    """A short SHA-256 of the parameter values: equal digests mean identical replicas."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        digest.update(np.ascontiguousarray(leaf).tobytes())
    return digest.hexdigest()[:16]


def train_towered(
    config: ToweredConfig,
    *,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
    hooks: RunHooks | None = None,
) -> RunResult:
    """Trains A2C data-parallel over the mesh until ``config.max_train_steps`` (global).

    Every process runs this function; they agree on the step count and stop together, at the
    first update boundary at or after the budget or when any of them is asked to stop.
    ``hooks`` (``RunHooks``) can change how the envs are made and watch each update.

    With ``config.resume`` process 0 loads the latest checkpoint (params, optimizer state, key,
    counters, its envs' carry and action log) and sends the learner state to the others. With
    one process the run then continues exactly as an uninterrupted one (as in local mode); with
    several, the other processes' envs restart fresh.

    Returns:
        The run's result; on the processes other than 0, which write nothing, its
        ``run_dir`` and ``last_checkpoint`` are None.

    Raises:
        TrainingDiverged: the loss, the gradient or the new learner state became NaN or
            infinite; it is not saved, and every process stops at that update (the
            check reads the replicated state, so all get the same answer).
        CheckpointError: the checkpoint to resume from is corrupt or does not fit.
    """
    if show_progress is None:  # decided on the terminal, before stderr goes through a relay
        show_progress = sys.stderr.isatty()
    initialize_distributed(config)
    check_same_settings(config)
    mesh = make_mesh(config.device_positions())
    positions = local_positions(mesh)
    local_envs = config.nb_env * len(positions)
    steps_per_update = config.exp_length * config.nb_env * mesh.size
    with build_run(
        config,
        "towered",
        num_envs=local_envs,
        seeds=[config.seed + jax.process_index() * local_envs],
        writes=jax.process_index() == 0,  # the others get parts that write nothing
        stop=stop,
        show_progress=show_progress,
        hooks=hooks,
    ) as parts:
        config, agent, run = parts.config, parts.agent, parts.run
        devices = f"Devices: {mesh.size} over {jax.process_count()} process(es)"
        host_state, carry = parts.start(agent.initial_carry(local_envs), devices)
        env = run.checkpointer.resumable_env(parts.envs[0])
        # Process 0's learner state and update count on every process.
        host_state, updates = multihost_utils.broadcast_one_to_all((host_state, run.budget.updates))
        updates = int(updates)
        state = to_global(mesh, host_state, _REPLICATED)
        act = make_shardwise_act(agent, positions)
        collect_segment = SegmentCollector(config.rollout, env, act, config.exp_length)
        update = make_towered_update(agent, parts.optimizer, mesh)
        any_process_stopping = make_stop_agreement(mesh)
        try:
            with contextlib.closing(PeerWatchdog(config.heartbeat_timeout)) as watchdog:
                timestep = env.reset()
                while updates * steps_per_update < config.max_train_steps:
                    with watchdog.waiting():
                        stopping = any_process_stopping(run.stop)
                    if stopping:
                        run.stop.set()
                        break
                    rollout_key = jax.random.fold_in(host_state.key, updates)
                    rollout = collect_segment(
                        local_replica(state.params), rollout_key, timestep, carry, run.timer
                    )
                    timestep, carry = rollout.timestep, rollout.carry
                    with run.timer.phase("learner"):
                        state, metrics = update(state, rollout.trajectory)
                        with watchdog.waiting():
                            metrics = to_local(metrics)
                    updates += 1
                    run.record(
                        to_local(state),
                        metrics,
                        steps_per_update,
                        rollout.episodes,
                        carry=jax.device_get(carry),
                    )
        except jax.errors.JaxRuntimeError as e:
            if jax.process_count() == 1:
                raise
            raise RuntimeError(
                f"another process of the run stopped (a collective failed): {e}"
            ) from e
        host_state = to_local(state)
        digest = params_digest(host_state.params)
        print(f"process {jax.process_index()}: params digest {digest}", flush=True)
        return run.finish(host_state, jax.device_get(carry))
