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

import threading

from fnrl.agents import make_learner_update
from fnrl.config import TrainConfig

# The builders live in fnrl.parallel.build; they are imported from here too.
from fnrl.parallel.build import (
    RunHooks,
    build_run,
    make_agent,
    make_network,
    make_training_env,
    make_training_optimizer,
)
from fnrl.parallel.rollout import make_trainer
from fnrl.parallel.run import RunResult

__all__ = [
    "make_agent",
    "make_network",
    "make_training_env",
    "make_training_optimizer",
    "train_local",
]


def train_local(
    config: TrainConfig,
    *,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
    hooks: RunHooks | None = None,
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
        hooks: the caller's env factory and update callback (``RunHooks``); None: none.

    Raises:
        TrainingDiverged: the loss, the gradient or the new learner state became NaN or
            infinite; it is not saved, and the error names the last finite checkpoint.
        CheckpointError: the checkpoint to resume from is corrupt or does not fit.
    """
    with build_run(
        config,
        "local",
        num_envs=config.nb_env,
        seeds=[config.seed],
        stop=stop,
        show_progress=show_progress,
        hooks=hooks,
    ) as parts:
        config, agent, run = parts.config, parts.agent, parts.run
        state, carry = parts.start(agent.initial_carry(config.nb_env))
        env = run.checkpointer.resumable_env(parts.envs[0])
        update = make_learner_update(agent, parts.optimizer)
        train = make_trainer(config.rollout, env, agent.act, update, config.exp_length, run.timer)
        timestep = env.reset()
        steps_per_update = config.exp_length * config.nb_env
        while not run.finished:
            count = min(train.suggested_count(), run.updates_before_pause(steps_per_update))
            state, timestep, carry, results = train(
                state, timestep, carry, run.budget.updates, count
            )
            for result in results:
                run.record(state, result.metrics, steps_per_update, result.episodes, carry=carry)
        return run.finish(state, carry)
