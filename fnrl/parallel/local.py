"""Local mode: one device, synchronous A2C (adept's Local).

Impure shell: owns the environments and the compiled functions. It alternates a T-step
rollout of B envs with one learner update, through a :class:`~fnrl.parallel.rollout.Trainer`
that ``--rollout`` picks: on envpool envs, by default, several rollouts and updates run in one
XLA computation per call; otherwise the envs are stepped from Python. Resume is exact: the
checkpoints hold the learner state, the carry and the log of env actions (see
:mod:`fnrl.parallel.resume`); an evaluation thread (``--nb-eval-env``) plays the latest params on
its own envs.
"""

from __future__ import annotations

import functools
import threading

import jax
import optax

from fnrl.agents import Agent, get_agent, init_train_state, make_update
from fnrl.config import TrainConfig, with_agent_settings
from fnrl.envs import BatchedEnv, atari_task_id, make_env
from fnrl.networks import (
    ModularNetwork,
    get_discrete_network,
    get_network_body,
    get_vision_network,
    is_recurrent,
)
from fnrl.optimizers import make_optimizer
from fnrl.parallel.rollout import check_rollout, make_trainer
from fnrl.parallel.run import RunResult, TrainingRun
from fnrl.specs import EnvSpec


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


def make_network(config: TrainConfig, spec: EnvSpec) -> ModularNetwork:
    """The network ``config`` names, for envs with ``spec``.

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
    return get_agent(config.agent).make(make_network(config, spec), spec, config)


def make_training_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optimizer ``config`` names, with its learning rate and gradient clipping."""
    return make_optimizer(
        config.optimizer, config.learning_rate, max_grad_norm=config.max_grad_norm
    )


def train_local(
    config: TrainConfig,
    *,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
) -> RunResult:
    """Trains ``config.agent`` on ``config.env_id`` until ``config.max_train_steps``.

    The run stops at the first update boundary at or after the step budget (or when ``stop``
    is set), saves a final checkpoint and returns what it did (see ``TrainingRun``). With
    ``config.resume`` it continues the run in that directory exactly where its latest
    checkpoint left it: same params, optimizer state, keys, carry and env states, so the result
    is bit-identical to an uninterrupted run's (on CPU; see :mod:`fnrl.parallel.resume`).

    Args:
        config: the run's settings.
        stop: when set, the run stops at the next update boundary (Ctrl-C in the CLI).
        show_progress: progress bar on/off; ``None`` shows it on a terminal only.

    Raises:
        TrainingDiverged: the loss became NaN; the last good checkpoint stays on disk.
        CheckpointError: the checkpoint to resume from is corrupt or does not fit.
    """
    config = with_agent_settings(config)
    env = make_training_env(config, config.nb_env, config.seed)
    try:
        check_rollout(config.rollout, env)
        agent = make_agent(config, env.spec)
        optimizer = make_training_optimizer(config)
        run = TrainingRun(
            config,
            "local",
            frames_per_step=env.frames_per_step,
            stop=stop,
            show_progress=show_progress,
        )
        try:
            state, carry = run.restore(
                init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed)),
                agent.initial_carry(config.nb_env),
            )
            run.announce(state)
            env = run.resumable_env(env)
            train = make_trainer(
                config.rollout,
                env,
                agent.act,
                make_update(agent, optimizer),
                config.exp_length,
                run.timer,
            )
            run.start_evaluation(
                functools.partial(make_training_env, config), make_network(config, env.spec)
            )
            timestep = env.reset()
            steps_per_update = config.exp_length * config.nb_env
            while not run.finished:
                count = min(train.suggested_count(), run.updates_before_pause(steps_per_update))
                state, timestep, carry, results = train(state, timestep, carry, run.updates, count)
                for result in results:
                    run.record(
                        state, result.metrics, steps_per_update, result.episodes, carry=carry
                    )
            return run.finish(state, carry)
        finally:
            run.close()
    finally:
        env.close()
