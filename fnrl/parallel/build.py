"""The builder: a config in, the parts of a training run out (acme's ``ExperimentConfig``).

Every execution mode trains with the same parts: its training envs (from
:func:`make_training_env`), the network and agent the config names, the optimizer, and the run
shell that owns the run directory (a :class:`~fnrl.parallel.run.TrainingRun`, whose parts
write nothing on a process that must not write). :func:`build_run`
builds them in the order that keeps a bad configuration from leaving anything behind (envs and
names are checked before the run directory exists) and closes them when the mode's loop ends;
the mode passes what differs (how many envs, their seeds, whether this process writes).

Impure: makes envs and, through the run shell, the run directory.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import jax
import optax

from fnrl.agents import Agent, get_agent, init_train_state
from fnrl.config import NetworkSettings, OptimizerSettings, TrainConfig, with_agent_settings
from fnrl.envs import BatchedEnv, atari_task_id, make_env
from fnrl.networks import (
    ModularNetwork,
    get_discrete_network,
    get_network_body,
    get_vision_network,
    is_recurrent,
)
from fnrl.optimizers import make_optimizer
from fnrl.parallel.rollout import check_rollout
from fnrl.parallel.run import TrainingRun, open_run, silent_run
from fnrl.specs import EnvSpec
from fnrl.types import Carry, TrainState


def make_training_env(
    config: TrainConfig, num_envs: int, seed: int, *, render: bool = False
) -> BatchedEnv:
    """The envs for ``config``: frame stack 4 for feed-forward bodies, 1 for recurrent (adept).

    ``--max-episode-length`` is adept's Atari time limit; other envs keep their registered one.
    ``render`` adds RGB frames (see :func:`fnrl.envs.make_env`).
    """
    frame_stack = 1 if is_recurrent(config.network_body) else 4
    is_atari = atari_task_id(config.env_id) is not None
    return make_env(
        config.env_id,
        num_envs,
        seed,
        skip_rate=config.skip_rate,
        max_episode_steps=config.max_episode_length if is_atari else None,
        frame_stack=frame_stack,
        render=render,
    )


def chosen_local_devices(positions: Sequence[int] | None) -> list[jax.Device]:
    """The devices at ``positions`` in ``jax.local_devices()`` (all of them for None).

    Raises:
        ValueError: a position with no device, naming the devices there are.
    """
    return devices_at(positions, jax.local_devices(), "this process")


def devices_at(
    positions: Sequence[int] | None, devices: Sequence[jax.Device], owner: str
) -> list[jax.Device]:
    """The devices at ``positions`` in ``owner``'s ``devices`` (all of them for None).

    Raises:
        ValueError: a position with no device, naming ``owner`` and the devices it has.
    """
    if positions is None:
        return list(devices)
    missing = [p for p in positions if p >= len(devices)]
    if missing:
        raise ValueError(
            f"--gpu-id {','.join(map(str, positions))}: no device {missing[0]}; {owner} "
            f"has {len(devices)}: {', '.join(f'{i} = {d}' for i, d in enumerate(devices))}"
        )
    return [devices[p] for p in positions]


def make_network(config: NetworkSettings, spec: EnvSpec) -> ModularNetwork:
    """The network ``config`` names (a run's ``NetworkSettings`` section), for envs with
    ``spec``.

    Raises:
        ValueError: an unknown trunk or body name (naming the registered ones).
    """
    # Look every name up, used or not, so that a typo fails before training starts.
    get_vision_network(config.vision_network)
    get_discrete_network(config.discrete_network)
    get_network_body(config.network_body)
    return ModularNetwork(
        spec=spec,
        vision_network=config.vision_network,
        discrete_network=config.discrete_network,
        network_body=config.network_body,
        hidden_size=config.hidden_size,
        normalize=config.normalize,
        nb_head=config.nb_head,
        normalization=config.normalization,
        zscore_norm_env=config.zscore_norm_env,
    )


def make_agent(config: TrainConfig, spec: EnvSpec) -> Agent:
    """The agent (``--agent``, with its settings from ``config``) and network, for ``spec``.

    Raises:
        ValueError: an unknown agent, or a network name that is not registered.
    """
    config = with_agent_settings(config)
    network = make_network(config.section(NetworkSettings), spec)
    return get_agent(config.agent).make(network, spec, config)


def make_training_optimizer(config: OptimizerSettings) -> optax.GradientTransformation:
    """The optimizer ``config`` (a run's ``OptimizerSettings`` section) names, with its learning
    rate and gradient clipping."""
    return make_optimizer(
        config.optimizer, config.learning_rate, max_grad_norm=config.max_grad_norm
    )


class RunHooks(NamedTuple):
    """What a caller may change in how a mode builds and watches its run, without touching
    the mode (acme's ``environment_factory``; SB3's callbacks).

    Attributes:
        make_env: ``make_env(config, num_envs, seed) -> BatchedEnv`` makes the training envs
            and the evaluations' (:func:`make_training_env` by default).
        on_update: ``on_update(run)`` after each update the run recorded: it may read the
            :class:`~fnrl.parallel.run.TrainingRun`'s ``budget``, ``episode_returns`` and
            ``metrics``, and set ``run.stop`` (e.g. to stop once the agent solved the task).
    """

    make_env: Callable[[TrainConfig, int, int], BatchedEnv] = make_training_env
    on_update: Callable[[TrainingRun], None] | None = None


NO_HOOKS = RunHooks()  # the default envs, no callback


@dataclass(frozen=True)
class RunParts:
    """What a mode's loop trains with, built by :func:`build_run` from the config."""

    config: TrainConfig  # the mode's config, with its agent's settings
    envs: tuple[BatchedEnv, ...]  # the training envs, in the order of the seeds given
    network: ModularNetwork
    agent: Agent  # acting and learning with ``network``
    optimizer: optax.GradientTransformation
    run: TrainingRun  # the run shell: counters, timer, stop, logs, checkpoints
    make_env: Callable[[TrainConfig, int, int], BatchedEnv] = make_training_env

    def start(self, carry: Carry = None, *lines: str) -> tuple[TrainState, Carry]:
        """The learner state (and carry) the loop starts from; announces the run first.

        Fresh from ``config.seed``, or the checkpoint's when resuming (see
        :meth:`~fnrl.parallel.checkpointer.Checkpointer.restore`). Then prints and logs the
        run's size, where it writes and ``lines``, and starts the run's evaluations.

        Args:
            carry: the fresh carry of the envs whose state a checkpoint holds, if any.
            *lines: more about the run, for the console and the log.
        """
        fresh = init_train_state(self.agent, self.optimizer, jax.random.PRNGKey(self.config.seed))
        state, carry = self.run.checkpointer.restore(fresh, carry)
        self.run.announce(state, *lines)
        make_env = functools.partial(self.make_env, self.config)
        self.run.evaluations.start(make_env, self.network)
        return state, carry


def _never(env: BatchedEnv) -> bool:
    del env
    return False


@contextlib.contextmanager
def build_run(
    config: TrainConfig,
    mode: str,
    *,
    num_envs: int,
    seeds: Sequence[int],
    writes: bool = True,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
    in_use: Callable[[BatchedEnv], bool] = _never,
    hooks: RunHooks | None = None,
) -> Iterator[RunParts]:
    """The parts of a ``mode`` run of ``config``; closes the run and the envs on exit.

    The envs, the rollout kind and the network's names are checked before the run directory
    exists, so that a bad configuration leaves nothing behind.

    Args:
        config: the run's settings (the agent's settings are added if missing).
        mode: the execution mode's name, written into the checkpoints.
        num_envs: envs per batch.
        seeds: one batch of ``num_envs`` envs per seed, seeded ``seed, seed + 1, ...``.
        writes: False on a process that must not write (its run's parts write nothing).
        stop: when set, the run stops at the next update boundary.
        show_progress: progress bar on/off; ``None`` shows it on a terminal only (a
            process that must not write shows none).
        in_use: True for an env that a thread still steps, which is left open on exit.
        hooks: the caller's env factory and update callback; None: :data:`NO_HOOKS`.

    Raises:
        ValueError: bad configuration (an unknown name, a rollout the envs cannot run, a
            resume that does not fit).
        CheckpointError: the checkpoint to resume from is unreadable.
    """
    config = with_agent_settings(config)
    # Computations without a placement of their own run on the first device chosen.
    device = chosen_local_devices(config.device_positions())[0]
    with jax.default_device(device):
        yield from _built_run(
            config, mode, num_envs, seeds, writes, stop, show_progress, in_use, hooks or NO_HOOKS
        )


def _built_run(
    config: TrainConfig,
    mode: str,
    num_envs: int,
    seeds: Sequence[int],
    writes: bool,
    stop: threading.Event | None,
    show_progress: bool | None,
    in_use: Callable[[BatchedEnv], bool],
    hooks: RunHooks,
) -> Iterator[RunParts]:
    """The body of :func:`build_run`, on its default device."""
    envs: list[BatchedEnv] = []
    try:
        for seed in seeds:
            envs.append(hooks.make_env(config, num_envs, seed))
        spec = envs[0].spec
        check_rollout(config.rollout, envs[0])
        network = make_network(config.section(NetworkSettings), spec)
        agent = get_agent(config.agent).make(network, spec, config)
        optimizer = make_training_optimizer(config.section(OptimizerSettings))
        if writes:
            run = open_run(
                config,
                mode,
                frames_per_step=envs[0].frames_per_step,
                trunks=network.built_trunks,
                stop=stop,
                show_progress=show_progress,
            )
        else:
            run = silent_run(config, mode, stop=stop)
        run.on_update = hooks.on_update
        try:
            yield RunParts(config, tuple(envs), network, agent, optimizer, run, hooks.make_env)
        finally:
            run.close()
    finally:
        for env in envs:
            if not in_use(env):
                env.close()
