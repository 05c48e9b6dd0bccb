"""Exact resume of the environments: record the actions sent to them, replay them on resume.

Impure: wraps environments and reads the clock.

Why replay. A resumed run continues bit-exactly only if everything that feeds the next update
is restored: params, optimizer state, PRNG key and counters (in the checkpoint), the recurrent
carry of the acting envs (in the checkpoint too), and the environments themselves. The last
cannot be saved: envpool keeps its simulators in C++ and offers no way to serialize them (the
ALE's ``cloneState`` is not exposed), and a Gymnasium env's state is whatever its Python object
holds. But every backend fnrl uses is deterministic given its seeds and the actions it receives,
so the state of B envs after N vector steps is a function of ``(seeds, actions[0:N])``.
:class:`ResumableEnv` therefore records the actions of every step in compact arrays
(:class:`ActionLog`: one byte per env and step for up to 256 choices, float32 for continuous
actions), the checkpoint stores
them, and on resume fresh envs built with the same seeds are reset and stepped through the log.
The last TimeStep of the replay is the one the interrupted run had (observation, frame stack,
episode statistics and the pending automatic resets included), so the mode needs no other
env-side state. A fingerprint of that TimeStep is saved with each checkpoint and checked after
the replay; a mismatch (a non-deterministic user env) is reported as a warning and the run
continues, no longer exact.

Other designs considered: snapshotting the simulators (impossible with envpool, see above);
pickling Gymnasium envs (not general: C-backed envs do not pickle, and it would still not cover
envpool); restarting the envs fresh (cheap but not exact: the continuation sees different
episodes from an uninterrupted run). That last one remains as the documented fallback.

Cost, measured on 2 shared CPU cores: the log takes one byte per env and step (up to 256
choices) in memory and in each checkpoint, compressed there by ``np.savez_compressed``: a
500k-step CartPole run (16 envs) logs 500 kB, 80 kB on disk; a 10M-step Atari run 10 MB before
compression. The replay runs at the environments' own speed, without inference or learning:
CartPole replays 500k steps in about 2 s (its training takes about 15 s); Pong (32 envs)
replays 2,000-7,000 env steps/s, so a 10M-step (40M-frame) run takes roughly 25-70 minutes to
replay, a small fraction of its training time on the same CPU but long in absolute terms. For
such runs ``--exact-resume false`` skips the recording and the replay: the envs restart fresh
(with the same seeds) on resume and the run warns that it is not exact. (Resuming such a
checkpoint with ``--exact-resume true`` starts a new log at that restart, so later resumes of
the continued run are exact again.)

What a mode does to get exact resume (``fnrl.parallel.local`` is the example):

1. build its fresh ``TrainState`` and carry, then
   ``state, carry = run.checkpointer.restore(state, carry)``;
2. wrap its envs with ``env = run.checkpointer.resumable_env(env)`` before the first
   ``env.reset()``, and step them only through the wrapper;
3. take every per-update key as ``fold_in(state.key, run.budget.updates)``;
4. pass ``carry=`` to ``run.record`` and ``run.finish`` so that the checkpoint holds the carry
   matching the envs' state; checkpoints must be written between env steps, when the log and
   the learner state describe the same moment (true of any synchronous loop).

Asynchronous modes (actor threads that keep stepping while the learner saves) cannot meet (4);
they skip (2) and get the non-exact resume: params, optimizer state, key and counters restored,
envs fresh.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping

import numpy as np

from fnrl.envs import BatchedEnv
from fnrl.specs import ActionSpec, is_continuous
from fnrl.types import TimeStep


class ResumeWarning(UserWarning):
    """A resumed run will not continue exactly as an uninterrupted one would have."""


def _action_dtype(spec: ActionSpec) -> np.dtype:
    if is_continuous(spec):
        return np.dtype(np.float32)
    for dtype in (np.uint8, np.uint16, np.int32):
        if spec.num_values - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    raise ValueError(f"an action with {spec.num_values} choices does not fit int32")


class ActionLog:
    """The actions sent to B envs, one row per vector step.

    Discrete actions are kept in the smallest integer type that holds them, continuous ones as
    the float32 the policy sampled (the env adapter clips them again on replay).

    Args:
        actions: the env's action specs (name -> ``DiscreteSpec`` or ``BoxSpec``).
        num_envs: B.
        arrays: optional initial content, name -> ``[N, B]`` (a checkpoint's log).
    """

    def __init__(
        self,
        actions: Mapping[str, ActionSpec],
        num_envs: int,
        arrays: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        self.num_envs = num_envs
        self._dtypes = {name: _action_dtype(spec) for name, spec in actions.items()}
        self._shapes = {name: (num_envs, *spec.shape) for name, spec in actions.items()}
        self._length = 0
        self._buffers = {
            name: np.empty((1024, *self._shapes[name]), dtype)
            for name, dtype in self._dtypes.items()
        }
        if arrays is not None:
            if set(arrays) != set(self._dtypes):
                raise ValueError(
                    f"the action log holds actions {sorted(arrays)} but the env takes "
                    f"{sorted(self._dtypes)}"
                )
            lengths = {a.shape[0] for a in arrays.values()}
            if len(lengths) != 1 or any(
                a.shape[1:] != self._shapes[name] for name, a in arrays.items()
            ):
                raise ValueError(
                    f"the action log does not fit {num_envs} envs: shapes "
                    f"{ {name: a.shape for name, a in arrays.items()} }"
                )
            self._reserve(lengths.pop())
            for name, array in arrays.items():
                self._buffers[name][: len(array)] = array
            self._length = len(next(iter(arrays.values())))

    def __len__(self) -> int:
        """Number of vector steps recorded."""
        return self._length

    @property
    def nbytes(self) -> int:
        """Bytes of the recorded actions (what a checkpoint stores before compression)."""
        return sum(self._buffers[name][: self._length].nbytes for name in self._buffers)

    def _reserve(self, length: int) -> None:
        capacity = len(next(iter(self._buffers.values())))
        if length <= capacity:
            return
        capacity = max(length, 2 * capacity)
        for name, buffer in self._buffers.items():
            grown = np.empty((capacity, *buffer.shape[1:]), buffer.dtype)
            grown[: self._length] = buffer[: self._length]
            self._buffers[name] = grown

    def append(self, actions: Mapping[str, np.ndarray]) -> None:
        """Records one vector step: action name -> ``[B]`` integers or ``[B, D]`` floats."""
        self.extend({name: np.asarray(a)[None] for name, a in actions.items()})

    def extend(self, actions: Mapping[str, np.ndarray]) -> None:
        """Records N vector steps: action name -> ``[N, B]`` integers or ``[N, B, D]`` floats."""
        steps = len(next(iter(actions.values())))
        self._reserve(self._length + steps)
        for name, buffer in self._buffers.items():
            buffer[self._length : self._length + steps] = np.asarray(actions[name])
        self._length += steps

    def step(self, index: int) -> dict[str, np.ndarray]:
        """The actions of vector step ``index``, name -> ``[B]`` int32 or ``[B, D]`` float32."""
        return {
            name: b[index].astype(np.float32 if b.dtype == np.float32 else np.int32)
            for name, b in self._buffers.items()
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """A copy of the log: name -> ``[N, B]``."""
        return {name: b[: self._length].copy() for name, b in self._buffers.items()}


def timestep_fingerprint(timestep: TimeStep) -> int:
    """A CRC32 of a TimeStep's observations, rewards, flags and episode statistics."""
    crc = 0
    for name in sorted(timestep.obs):
        crc = zlib.crc32(np.ascontiguousarray(timestep.obs[name]).tobytes(), crc)
    for array in (
        timestep.reward,
        timestep.terminated,
        timestep.truncated,
        timestep.first,
        *timestep.episode,
    ):
        crc = zlib.crc32(np.ascontiguousarray(array).tobytes(), crc)
    return crc


class ResumableEnv:
    """A :class:`~fnrl.envs.BatchedEnv` that records its actions and can replay a log on reset.

    ``reset`` resets the wrapped envs and, if a log to replay was given, steps them through it
    and returns the last TimeStep (the envs' state at the checkpoint); the replayed steps stay
    in the log, which new steps extend. The envs can be reset only once: a second reset would
    need the log to say where it happened.

    Args:
        env: fresh envs with the same seeds as the run that wrote ``replay``.
        replay: a log to replay on reset, or None for a fresh start.
        on_replay: called after the reset as ``on_replay(steps, seconds, matched)``, where
            ``matched`` tells whether the last TimeStep has the ``expected`` fingerprint (None
            when nothing is expected).
        expected: the :func:`timestep_fingerprint` the replay should end on.
    """

    def __init__(
        self,
        env: BatchedEnv,
        replay: ActionLog | None = None,
        *,
        on_replay: Callable[[int, float, bool | None], None] | None = None,
        expected: int | None = None,
    ) -> None:
        self.env = env
        self.spec = env.spec
        self.num_envs = env.num_envs
        self.frames_per_step = env.frames_per_step
        self.log = replay if replay is not None else ActionLog(env.spec.actions, env.num_envs)
        self.replay_seconds = 0.0
        self.replayed_steps = 0
        self.last: TimeStep | None = None
        self._reset_done = False
        self._on_replay = on_replay
        self._expected = expected

    def reset(self) -> TimeStep:
        """Resets the envs and replays the log; see the class docstring."""
        if self._reset_done:
            raise RuntimeError(
                "ResumableEnv resets only once: its action log replays from a single reset"
            )
        self._reset_done = True
        start = time.perf_counter()
        timestep = self.env.reset()
        for index in range(len(self.log)):
            timestep = self.env.step(self.log.step(index))
        self.replayed_steps = len(self.log)
        self.replay_seconds = time.perf_counter() - start
        self.last = timestep
        if self._on_replay is not None and self.replayed_steps:
            matched = None
            if self._expected is not None:
                matched = timestep_fingerprint(timestep) == self._expected
            self._on_replay(self.replayed_steps, self.replay_seconds, matched)
        return timestep

    def step(self, actions: Mapping[str, np.ndarray]) -> TimeStep:
        """Records ``actions`` and steps the envs."""
        self.log.append(actions)
        self.last = self.env.step(actions)
        return self.last

    def record(self, actions: Mapping[str, np.ndarray], last: TimeStep) -> None:
        """Records N vector steps that a compiled rollout took on the wrapped envs.

        Args:
            actions: action name -> ``[N, B]``, the actions in the order they were sent.
            last: the TimeStep they ended on (host or device arrays).
        """
        self.log.extend(actions)
        self.last = last

    def render(self) -> np.ndarray:
        """The wrapped envs' RGB frame (see :meth:`BatchedEnv.render`)."""
        return self.env.render()

    def close(self) -> None:
        """Closes the wrapped envs."""
        self.env.close()
