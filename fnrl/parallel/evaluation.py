"""Playing a trained policy: the evaluation policy, episode runs, and the evaluation thread.

Impure: steps environments, runs a background thread and reads the clock.

A training run evaluates either on a schedule (:class:`ScheduledEvaluation`, every
``--eval-every`` steps) or, as adept did, continuously in a thread (:class:`EvaluationThread`).

Evaluation follows adept: actions are the argmax of the policy (``greedy``, adept's
deterministic evaluation; sampling is an option), batch norm normalizes with its running
statistics (``train=False``), and returns are whole games in real (unclipped) game units
(:class:`~fnrl.types.EpisodeStats`). Evaluation envs get seeds no training env uses.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fnrl.agents import greedy_actions, sample_actions
from fnrl.envs import BatchedEnv
from fnrl.logging import RunLogger
from fnrl.parallel.budget import Schedule
from fnrl.parallel.phases import Episode
from fnrl.types import Carry, Params, PRNGKey, TrainState

# Env seeds of evaluation: far above the training envs' ``seed + i`` (adept used seed + nb_env,
# which other modes' per-device or per-actor envs can reach).
EVAL_THREAD_SEED_OFFSET = 1_000_000
EVALUATE_SEED_OFFSET = 2_000_000

# The evaluation thread's share of one core when --eval-step-rate is 0: about 2 percent.
_BUSY_FRACTION = 0.02
_JOIN_SECONDS = 10.0  # for the thread to finish its env step once asked to stop


def make_eval_policy(network: nn.Module, *, greedy: bool = True) -> Callable:
    """Builds ``policy(params, key, carry, obs, first) -> (actions, carry)`` for evaluation.

    Batch norm uses its running statistics (``train=False``); the actions are the most probable
    ones (adept's deterministic evaluation) or, with ``greedy=False``, sampled.

    Args:
        network: a ``ModularNetwork`` (or a module with its call signature).
        greedy: argmax actions; otherwise sampled from the policy.

    Returns:
        The pure policy; ``key`` is consumed when sampling and ignored when greedy. Shapes:
        ``obs`` name -> ``[B, ...]``, ``first`` ``[B]`` bool, actions name -> ``[B]`` int32.
    """

    def policy(params: Params, key: PRNGKey, carry: Carry, obs: Any, first: jax.Array):
        carry, output = network.apply(params, carry, obs, first, train=False)
        if greedy:
            del key
            return greedy_actions(output.logits), carry
        return sample_actions(key, output.logits), carry

    return policy


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    """How many episodes each of ``num_envs`` envs plays so that they total ``episodes``.

    Fixed per env before playing, so that short episodes are not over-represented (taking the
    first N episodes to finish would favour them).
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"need at least 1 episode and 1 env, got {episodes} and {num_envs}")
    return episodes // num_envs + (np.arange(num_envs) < episodes % num_envs)


def step_keys(key: PRNGKey, block: int = 256) -> Iterator[np.ndarray]:
    """Endless keys, one per env step, split from ``key`` ``block`` at a time.

    Each block is ``jax.random.split(key, block + 1)``: its first key makes the next block, the
    others are its steps' keys, as host arrays (one split and one copy per block, not per step).
    """
    while True:
        keys = np.asarray(jax.random.split(key, block + 1))
        key = keys[0]
        yield from keys[1:]


def run_episodes(
    env: BatchedEnv,
    policy: Callable,
    params: Params,
    key: PRNGKey,
    initial_carry: Carry,
    episodes: int,
) -> list[Episode]:
    """Plays ``episodes`` whole games on ``env`` with a compiled ``policy``.

    Env i plays ``episode_quotas(episodes, B)[i]`` games from its reset; games it finishes
    beyond its quota are not counted.

    Args:
        env: fresh envs (reset here).
        policy: a compiled :func:`make_eval_policy` policy.
        params: the network variables.
        key: consumed; split into one key per step (:func:`step_keys`).
        initial_carry: the body's zero state for ``env.num_envs`` envs.
        episodes: the number of games.

    Returns:
        The games, env by env, in the order they ended.
    """
    quota = episode_quotas(episodes, env.num_envs)
    played: list[list[Episode]] = [[] for _ in range(env.num_envs)]
    count = np.zeros(env.num_envs, np.int64)
    timestep, carry, keys = env.reset(), initial_carry, step_keys(key)
    while (count < quota).any():
        actions, carry = policy(params, next(keys), carry, timestep.obs, timestep.first)
        timestep = env.step(jax.device_get(actions))
        for i in np.flatnonzero(timestep.episode.done & (count < quota)):
            played[i].append(
                Episode(float(timestep.episode.returns[i]), int(timestep.episode.length[i]))
            )
            count[i] += 1
    return [episode for games in played for episode in games]


# Envs of a scheduled evaluation at most; more games are split over them (episode_quotas).
_MAX_SCHEDULED_ENVS = 32


class ScheduledEvaluation:
    """Plays ``episodes`` greedy games with given params, on envs made fresh for each call.

    The training run calls it at the update boundary at or after every ``--eval-every`` steps.
    Call ``k`` makes ``min(episodes, 32)`` envs seeded from ``seed + k * num_envs`` (modulo
    2**30) upwards, above ``EVAL_THREAD_SEED_OFFSET``: each evaluation plays new games, no
    training env plays them, and a run (resumed or not) plays the same ones for the same seed.

    Args:
        make_env: ``make_env(num_envs, seed)`` builds envs as the training envs are built.
        network: the run's network, played greedily with its running batch-norm statistics.
        episodes: games per evaluation.
        seed: the run's seed.
    """

    def __init__(
        self,
        make_env: Callable[[int, int], BatchedEnv],
        network: nn.Module,
        *,
        episodes: int,
        seed: int,
    ) -> None:
        self._make_env = make_env
        self._network = network
        self._policy = jax.jit(make_eval_policy(network, greedy=True))
        self.episodes = episodes
        self.num_envs = min(episodes, _MAX_SCHEDULED_ENVS)
        self._seed = seed

    def __call__(self, params: Params, index: int) -> list[Episode]:
        """The games of evaluation number ``index`` (its step divided by ``--eval-every``)."""
        offset = (self._seed + index * self.num_envs) % 2**30
        env = self._make_env(self.num_envs, EVAL_THREAD_SEED_OFFSET + offset)
        try:
            carry = self._network.initial_carry(self.num_envs)
            key = jax.random.PRNGKey(0)  # unused: greedy
            return run_episodes(env, self._policy, params, key, carry, self.episodes)
        finally:
            env.close()


class EvaluationThread:
    """Plays the latest training params on its own envs and logs ``reward/eval`` (adept).

    The thread asks for params when it starts and again at the end of each game (adept synced
    its weights at episode ends); the training loop hands over a copy at its next update via
    :meth:`publish`, and the thread waits for it, so that with one env (the default) every game
    is played by a single version of the params. Each game is logged at the training step of
    the params that played it.

    Throttling: with ``step_rate > 0`` the thread takes at most ``step_rate`` vector steps per
    second; with 0 it sleeps ``(1 / busy_fraction - 1)`` times as long as each step took, so it
    keeps about ``busy_fraction`` of one core and training loses no more than that.

    Lifecycle: :meth:`start`, then :meth:`publish` / :meth:`check` from the training loop, and
    :meth:`close` in ``finally``: it sets the stop event, joins the thread, closes the envs and
    re-raises the thread's exception, if any, in the calling thread.

    Args:
        env: the evaluation envs (owned: closed by :meth:`close`).
        policy: a compiled :func:`make_eval_policy` policy.
        initial_carry: the body's zero state for ``env.num_envs`` envs.
        logger: the run's (thread-safe) logger.
        key: consumed by sampling policies; unused by greedy ones.
        step_rate: vector steps per second at most; 0 for the automatic throttle.
        busy_fraction: the automatic throttle's share of one core.
    """

    def __init__(
        self,
        env: BatchedEnv,
        policy: Callable,
        initial_carry: Carry,
        logger: RunLogger,
        *,
        key: PRNGKey,
        step_rate: float = 0.0,
        busy_fraction: float = _BUSY_FRACTION,
    ) -> None:
        if step_rate < 0 or not 0 < busy_fraction <= 1:
            raise ValueError(
                f"step_rate must be >= 0 and busy_fraction in (0, 1], got {step_rate} and "
                f"{busy_fraction}"
            )
        self._env = env
        self._policy = policy
        self._initial_carry = initial_carry
        self._logger = logger
        self._key = key
        self._step_rate = step_rate
        self._busy_fraction = busy_fraction
        self._stop = threading.Event()
        self._wanted = threading.Event()
        self._wanted.set()
        self._published = threading.Condition()
        self._params: tuple[Params, int] | None = None
        self.episodes: list[tuple[int, Episode]] = []  # (training step of the params, game)
        self.busy_seconds = 0.0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fnrl-evaluation", daemon=True)
        self._closed = False

    def start(self) -> None:
        """Starts the thread."""
        self._thread.start()

    @property
    def wants_params(self) -> bool:
        """Whether the thread waits for params (cheap: check it before copying them)."""
        return self._wanted.is_set()

    def publish(self, params: Params, env_steps: int) -> None:
        """Hands a copy of ``params`` (the state after ``env_steps`` steps) to the thread.

        The copy is taken on the device now, so the caller may donate ``params`` afterwards.
        """
        copy = jax.tree.map(jnp.copy, params)
        with self._published:
            self._params = (copy, env_steps)
            self._wanted.clear()
            self._published.notify_all()

    def check(self) -> None:
        """Re-raises the thread's exception in the calling thread, if it failed."""
        if self.error is not None:
            raise RuntimeError(f"the evaluation thread failed: {self.error!r}") from self.error

    def close(self) -> None:
        """Stops and joins the thread, closes its envs, and re-raises its exception.

        A thread still running after ``_JOIN_SECONDS`` (its env hangs in a step) is left to end
        with the process, its envs open, with a line on stderr.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        with self._published:
            self._published.notify_all()
        self._thread.join(_JOIN_SECONDS)
        if self._thread.is_alive():
            print(
                f"warning: the evaluation thread did not stop within {_JOIN_SECONDS:g} s (its env "
                "hangs?); it is left to end with the process",
                file=sys.stderr,
            )
            return
        self._env.close()
        self.check()

    def _wait_for_params(self) -> tuple[Params, int] | None:
        with self._published:
            while not self._stop.is_set():
                if not self._wanted.is_set() and self._params is not None:
                    return self._params
                self._published.wait(timeout=0.5)
        return None

    def _run(self) -> None:
        try:
            self._play()
        except BaseException as e:  # re-raised in the training thread by check() and close()
            self.error = e

    def _play(self) -> None:
        current = self._wait_for_params()
        if current is None:
            return
        params, params_step = current
        timestep, carry, keys = self._env.reset(), self._initial_carry, step_keys(self._key)
        compiled = False
        while not self._stop.is_set():
            start = time.perf_counter()
            actions, carry = self._policy(params, next(keys), carry, timestep.obs, timestep.first)
            timestep = self._env.step(jax.device_get(actions))
            done = timestep.episode.done
            for i in np.flatnonzero(done):
                episode = Episode(
                    float(timestep.episode.returns[i]), int(timestep.episode.length[i])
                )
                self.episodes.append((params_step, episode))
                self._logger.eval_episode(params_step, episode.returns, episode.length)
            busy = time.perf_counter() - start
            self.busy_seconds += busy
            if not compiled:  # the first step compiles the policy: no pause for it
                compiled, busy = True, 0.0
            if done.any():
                self._wanted.set()
                current = self._wait_for_params()
                if current is None:
                    return
                params, params_step = current
            if self._step_rate > 0:
                pause = 1.0 / self._step_rate - busy
            else:
                pause = busy * (1.0 / self._busy_fraction - 1.0)
            if pause > 0:
                self._stop.wait(pause)


class Evaluations:
    """A run's evaluations: scheduled greedy games in a worker thread, or adept's thread.

    Every ``config.eval_every`` steps (at the first update boundary at or after a multiple),
    the run plays ``config.eval_episodes`` greedy games with a copy of its params
    (:class:`ScheduledEvaluation`) and logs them, in a worker thread while training goes on: at
    most one evaluation is in flight (the next one waits for it), and the run waits for it
    (:meth:`wait`) before each checkpoint, so that every evaluation of the steps a checkpoint
    covers is logged before it is written. The games depend on the params and the evaluation's
    index only, not on the timing. Or, with ``config.nb_eval_env``, adept's
    :class:`EvaluationThread` plays the latest params alongside training.

    Args:
        config: the run's settings.
        log: the run's log (a ``fnrl.parallel.runlog.RunLog``).
        timer: accumulates the ``evaluation`` phase (copying params, waiting for a game).
        env_steps: the run's steps so far (a resumed run's).
    """

    def __init__(self, config: Any, log: Any, timer: Any, env_steps: int) -> None:
        self._config, self._log, self._timer = config, log, timer
        self._schedule = Schedule(config.eval_every, env_steps)
        self._scheduled: ScheduledEvaluation | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._pending: Future | None = None
        self.thread: EvaluationThread | None = None

    @property
    def next_due(self) -> float:
        """The step at which the next scheduled evaluation is due (inf: none)."""
        return self._schedule.next

    def start(self, make_env: Callable[[int, int], BatchedEnv], network: nn.Module) -> None:
        """Prepares the scheduled evaluation (``config.eval_every``), or starts the evaluation
        thread of ``config.nb_eval_env`` envs; neither when both are 0.

        Args:
            make_env: ``make_env(num_envs, seed)`` builds the evaluation envs (seeded from
                ``config.seed + EVAL_THREAD_SEED_OFFSET``, apart from every training env).
            network: the run's network, played greedily with its running batch-norm stats.
        """
        config = self._config
        if config.eval_every:
            self._scheduled = ScheduledEvaluation(
                make_env, network, episodes=config.eval_episodes, seed=config.seed
            )
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="fnrl-evaluation")
        if config.nb_eval_env == 0:
            return
        env = make_env(config.nb_eval_env, config.seed + EVAL_THREAD_SEED_OFFSET)
        self.thread = EvaluationThread(
            env,
            jax.jit(make_eval_policy(network, greedy=True)),
            network.initial_carry(env.num_envs),
            self._log.writer,
            key=jax.random.PRNGKey(config.seed + EVAL_THREAD_SEED_OFFSET),
            step_rate=config.eval_step_rate,
        )
        self.thread.start()

    def after_update(self, state: TrainState, env_steps: int) -> None:
        """Hands the params of ``state`` (after ``env_steps`` steps) to the evaluation thread if
        it waits for them, and to a scheduled evaluation if one is due.

        Raises:
            RuntimeError: the evaluation thread failed; or the scheduled evaluation before,
                which this one waits for.
        """
        if self.thread is not None:
            self.thread.check()
            if self.thread.wants_params:
                self.thread.publish(state.params, env_steps)
        if self._schedule.due(env_steps):
            self._submit(state.params, env_steps)

    def _submit(self, params: Params, env_steps: int) -> None:
        """Hands the scheduled evaluation of ``params`` to the worker thread.

        Waits first for the one before it; the params are copied to the host, since the next
        update may reuse their device buffers.
        """
        index = env_steps // self._config.eval_every
        self.wait()
        with self._timer.phase("evaluation"):
            params = jax.device_get(params)
        self._pending = self._worker.submit(self._play, params, index, env_steps)
        self._schedule.advance(env_steps)

    def _play(self, params: Params, index: int, step: int) -> None:
        """Plays evaluation number ``index`` with ``params`` (of training ``step``) and logs it."""
        self._log.evaluation(step, self._scheduled(params, index))

    def wait(self) -> None:
        """Waits for the evaluation in flight, if any, re-raising its exception; the wait is
        timed as the ``evaluation`` phase."""
        pending, self._pending = self._pending, None
        if pending is not None:
            with self._timer.phase("evaluation"):
                pending.result()

    def close(self, seconds: float) -> None:
        """Shuts the worker down and stops the evaluation thread (logging how busy it was over
        the run's ``seconds``).

        Raises:
            RuntimeError: the evaluation thread failed.
        """
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        if self.thread is not None:
            try:
                self.thread.close()
            finally:
                busy = self.thread.busy_seconds
                self._log.line(
                    f"EVAL: {len(self.thread.episodes)} games, thread busy {busy:.2f}s "
                    f"({100 * busy / max(seconds, 1e-9):.1f}% of one core)"
                )


class NoEvaluations:
    """:class:`Evaluations`' methods for a process that must not write: it evaluates nothing
    (the writing process does)."""

    next_due = math.inf
    thread = None

    def start(self, make_env: Callable[[int, int], BatchedEnv], network: nn.Module) -> None:
        """Starts nothing."""
        del make_env, network

    def after_update(self, state: TrainState, env_steps: int) -> None:
        """Plays nothing."""
        del state, env_steps

    def wait(self) -> None:
        """Nothing is in flight."""

    def close(self, seconds: float) -> None:
        """Nothing to close."""
        del seconds
