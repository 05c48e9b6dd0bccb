"""IMPALA's actor threads and what they share with the learner (Sebulba's actor side).

An :class:`Actor` owns its envs, its PRNG stream and one compiled rollout (or ``act``); it
reads the latest params from :class:`VersionedParams` and puts each segment, as a
:class:`Rollout`, on a :class:`RolloutQueue` whose places it reserves before collecting
(adept's backpressure). The learner takes batches of them with :func:`take` or
:func:`take_dynamic`. See :mod:`fnrl.parallel.impala` for how they fit together.

Impure: threads, queues, devices and environments.
"""

from __future__ import annotations

import itertools
import queue
import threading
import traceback
from typing import NamedTuple

import jax

from fnrl.agents import Agent
from fnrl.envs import BatchedEnv
from fnrl.parallel.phases import Episode, PhaseTimer
from fnrl.parallel.rollout import SegmentCollector
from fnrl.types import Params, PRNGKey, Trajectory

POLL_SECONDS = 0.05  # how often blocked queue operations look at the stop event


class Rollout(NamedTuple):
    """One actor's trajectory segment, as the learner receives it (host memory)."""

    trajectory: Trajectory  # [T + 1, B] obs, [T, B] actions...; initial_carry [B, ...] numpy
    policy_version: int  # learner updates applied to the params that acted
    actor_id: int
    episodes: list[Episode]  # whole games that ended during the segment
    # Seconds per phase of the segment: "env" and "inference" (the compiled act with the
    # transfer of its outputs) for the host loop, "rollout" for a compiled rollout.
    phase_seconds: dict[str, float]


class VersionedParams:
    """The latest published params and their version, shared by the learner and the actors.

    Thread-safe: the learner publishes, every actor reads. Published arrays must never be
    donated to a later computation, since an actor may still be reading them.
    """

    def __init__(self, params: Params, version: int = 0) -> None:
        self._lock = threading.Lock()
        self._params = params
        self._version = version

    def publish(self, params: Params, version: int) -> None:
        """Makes ``params`` the latest, as the result of ``version`` updates."""
        with self._lock:
            self._params, self._version = params, version

    def latest(self) -> tuple[int, Params]:
        """The latest version and its params."""
        with self._lock:
            return self._version, self._params


class RolloutQueue:
    """A FIFO of rollouts with at most ``maxsize`` places, reserved before collecting.

    An actor calls :meth:`reserve` before it fetches params, then :meth:`put` once its rollout
    is collected (which never blocks); the learner's :meth:`get` frees the place. Every rollout
    in flight holds a place, which is what bounds the policy lag (see the module docstring).
    All waits take a timeout, so that a stopping run never hangs on the queue.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"a rollout queue needs at least 1 place, got {maxsize}")
        self._places = threading.Semaphore(maxsize)
        self._rollouts: queue.Queue[Rollout] = queue.Queue(maxsize=maxsize)

    def reserve(self, timeout: float) -> bool:
        """Takes a place for a rollout about to be collected; False after ``timeout`` seconds."""
        return self._places.acquire(timeout=timeout)

    def put(self, rollout: Rollout) -> None:
        """Queues a rollout whose place was reserved."""
        self._rollouts.put_nowait(rollout)

    def get(self, timeout: float) -> Rollout:
        """The oldest rollout, freeing its place.

        Raises:
            queue.Empty: none came within ``timeout`` seconds.
        """
        rollout = self._rollouts.get(timeout=timeout)
        self._places.release()
        return rollout

    def qsize(self) -> int:
        """The number of rollouts waiting for the learner."""
        return self._rollouts.qsize()


class Actor(threading.Thread):
    """One actor thread: owns its envs' stepping, its key and its compiled rollout (or ``act``).

    Its exception, if any, is kept in ``error`` (with ``traceback_text``) and sets ``halt``, so
    that the learner stops and re-raises it.
    """

    def __init__(
        self,
        actor_id: int,
        env: BatchedEnv,
        agent: Agent,
        store: VersionedParams,
        rollouts: RolloutQueue,
        halt: threading.Event,
        key: PRNGKey,
        length: int,
        device: jax.Device,
        rollout: str,
    ) -> None:
        super().__init__(name=f"fnrl-actor-{actor_id}", daemon=True)
        self.rollout = rollout
        self.actor_id = actor_id
        self.env = env
        self.agent = agent
        self.store = store
        self.rollouts = rollouts
        self.halt = halt
        self.key = key
        self.length = length
        self.device = device
        self.timer = PhaseTimer()  # written by this thread only; read after it stopped
        self.error: BaseException | None = None
        self.traceback_text = ""

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread, never swallowed
            self.error = e
            self.traceback_text = traceback.format_exc()
            self.halt.set()

    def _loop(self) -> None:
        timestep = self.env.reset()
        carry = jax.device_put(self.agent.initial_carry(self.env.num_envs), self.device)
        version, params = -1, None
        # Compiled ahead of the first rollout, so that its params are not stale by the time
        # acting starts; the arguments only give shapes and placement here.
        with self.timer.phase("compile"):
            collect_segment = SegmentCollector(self.rollout, self.env, self.agent.act, self.length)
            _, latest = self.store.latest()
            collect_segment.compile(jax.device_put(latest, self.device), self.key, timestep, carry)
        for index in itertools.count():
            with self.timer.phase("queue_wait"):
                while not self.rollouts.reserve(timeout=POLL_SECONDS):
                    if self.halt.is_set():
                        return
            if self.halt.is_set():
                return
            latest_version, latest = self.store.latest()
            if latest_version != version:
                with self.timer.phase("transfer"):
                    params = jax.device_put(latest, self.device)
                version = latest_version
            segment = PhaseTimer()
            result = collect_segment(
                params, jax.random.fold_in(self.key, index), timestep, carry, segment
            )
            timestep, carry = result.timestep, result.carry
            for phase, seconds in segment.seconds.items():
                self.timer.seconds[phase] += seconds
            rollout = Rollout(
                trajectory=jax.device_get(result.trajectory),
                policy_version=version,
                actor_id=self.actor_id,
                episodes=result.episodes,
                phase_seconds=dict(segment.seconds),
            )
            self.rollouts.put(rollout)


def take(
    rollouts: RolloutQueue, count: int, events: tuple[threading.Event, ...]
) -> list[Rollout] | None:
    """The next ``count`` rollouts, or None as soon as one of ``events`` is set."""
    batch: list[Rollout] = []
    while len(batch) < count:
        if any(event.is_set() for event in events):
            return None
        try:
            batch.append(rollouts.get(timeout=POLL_SECONDS))
        except queue.Empty:
            continue
    return batch


def take_dynamic(
    rollouts: RolloutQueue, sizes: tuple[int, ...], events: tuple[threading.Event, ...]
) -> list[Rollout] | None:
    """The rollouts ready now, as many as the largest of ``sizes`` that they fill.

    Waits for ``sizes[0]`` rollouts (adept's ``--min-dynamic-batch``), then takes those that
    are waiting, up to ``sizes[-1]``, and keeps the ones past the largest size they fill in the
    queue for the next update; None as soon as one of ``events`` is set.
    """
    batch = take(rollouts, sizes[0], events)
    if batch is None:
        return None
    ready = min(sizes[-1], len(batch) + rollouts.qsize())
    count = max(size for size in sizes if size <= ready)
    while len(batch) < count:  # only this thread gets: the rollouts counted are still there
        batch.append(rollouts.get(timeout=POLL_SECONDS))
    return batch
