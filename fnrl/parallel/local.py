"""Local mode: one device, synchronous A2C (adept's Local).

Impure shell: owns the environments, the compiled functions, the clock and the files. It
alternates a T-step rollout of B envs with one compiled learner update.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import jax
from tqdm import tqdm

from fnrl.agents import AGENTS, Agent, init_train_state, make_update
from fnrl.checkpoint import prune_checkpoints, save_checkpoint
from fnrl.config import TrainConfig
from fnrl.envs import BatchedEnv, atari_task_id, make_env
from fnrl.logging import RunLogger, make_run_dir, run_id
from fnrl.networks import (
    ModularNetwork,
    count_params,
    get_discrete_network,
    get_network_body,
    get_vision_network,
    is_recurrent,
)
from fnrl.optimizers import make_rmsprop
from fnrl.parallel.rollout import PhaseTimer, collect
from fnrl.specs import EnvSpec
from fnrl.types import TrainState


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class RunResult:
    """What a finished (or stopped) training run did."""

    run_dir: Path
    env_steps: int  # agent steps summed over envs
    frames: int  # env_steps times the frame skip
    updates: int
    seconds: float
    warmup_seconds: float  # until the end of the first update, compilation included
    episode_returns: list[float]
    metrics: list[dict[str, float]]  # one dict per update
    phase_seconds: dict[str, float]
    bound: str  # the phase that took the most time
    last_checkpoint: Path | None
    state: TrainState  # the learner state at the end
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        """Frames per second over the whole run, compilation included."""
        return self.frames / self.seconds if self.seconds > 0 else math.nan

    @property
    def steady_frames_per_second(self) -> float:
        """Frames per second after the first update (compiled code only); nan if one update."""
        if self.updates < 2:
            return math.nan
        frames_after_first = self.frames * (self.updates - 1) / self.updates
        return frames_after_first / (self.seconds - self.warmup_seconds)


def make_training_env(config: TrainConfig, num_envs: int, seed: int) -> BatchedEnv:
    """The envs for ``config``: frame stack 4 for feed-forward bodies, 1 for recurrent (adept).

    ``--max-episode-length`` is adept's Atari time limit; other envs keep their registered one.
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
    )


def make_agent(config: TrainConfig, spec: EnvSpec) -> Agent:
    """The agent and network ``config`` names, for envs with ``spec``."""
    if config.agent not in AGENTS:
        raise ValueError(f"unknown agent {config.agent!r}; choose one of: {', '.join(AGENTS)}")
    # Look every name up, used or not, so that a typo fails before training starts.
    get_vision_network(config.vision_network)
    get_discrete_network(config.discrete_network)
    get_network_body(config.network_body)
    network = ModularNetwork(
        spec=spec,
        vision_network=config.vision_network,
        discrete_network=config.discrete_network,
        network_body=config.network_body,
        normalize=config.normalize,
    )
    return AGENTS[config.agent](
        network,
        spec,
        discount=config.discount,
        gae_lambda=config.tau,
        use_gae=config.generalized_advantage_estimation,
        normalize_advantage=config.normalize_advantage,
        entropy_coef=config.entropy_coef,
    )


def train_local(
    config: TrainConfig,
    *,
    stop: threading.Event | None = None,
    show_progress: bool | None = None,
) -> RunResult:
    """Trains ``config.agent`` on ``config.env_id`` until ``config.max_train_steps``.

    The run stops at the first update boundary at or after the step budget (or when ``stop``
    is set), saves a final checkpoint and returns what it did. Checkpoints are also written
    after the first update and then every ``config.epoch_len`` environment steps.

    Args:
        config: the run's settings.
        stop: when set, the run stops at the next update boundary (Ctrl-C in the CLI).
        show_progress: progress bar on/off; ``None`` shows it on a terminal only.

    Raises:
        TrainingDiverged: the loss became NaN; the last good checkpoint stays on disk.
    """
    stop = stop or threading.Event()
    env = make_training_env(config, config.nb_env, config.seed)
    try:
        return _train(config, env, stop, show_progress)
    finally:
        env.close()


def _train(
    config: TrainConfig, env: BatchedEnv, stop: threading.Event, show_progress: bool | None
) -> RunResult:
    agent = make_agent(config, env.spec)
    optimizer = make_rmsprop(config.learning_rate, max_grad_norm=config.max_grad_norm)
    state = init_train_state(agent, optimizer, jax.random.PRNGKey(config.seed))
    run_dir = make_run_dir(config.log_dir, config.env_id, run_id("local", config))
    logger = RunLogger(run_dir, config.to_dict(), config.summary_frequency)
    for line in (f"Network parameters: {count_params(state.params['params']):,}", str(run_dir)):
        logger.line(line)
        print(line, flush=True)

    act = jax.jit(agent.act)
    update = jax.jit(make_update(agent, optimizer), donate_argnums=0)
    frames_per_step = env.frames_per_step
    steps_per_update = config.exp_length * config.nb_env
    checkpoint_dir = run_dir / "checkpoints"
    timer = PhaseTimer()
    timestep, carry = env.reset(), agent.initial_carry(config.nb_env)
    env_steps, updates, next_save, warmup_seconds = 0, 0, 0, math.nan
    returns, history, last_checkpoint = [], [], None

    def save() -> Path:
        meta = {"env_steps": env_steps, "updates": updates, "config": config.to_dict()}
        with timer.phase("checkpoint"):
            path = save_checkpoint(checkpoint_dir, state, meta, env_steps=env_steps)
            prune_checkpoints(checkpoint_dir, config.nb_top_model)
        return path

    start = time.perf_counter()
    progress = tqdm(
        total=config.max_train_steps, unit="step", disable=not show_progress and None, smoothing=0
    )
    try:
        while env_steps < config.max_train_steps and not stop.is_set():
            rollout_key = jax.random.fold_in(state.key, updates)
            rollout = collect(
                env, act, state.params, rollout_key, timestep, carry, config.exp_length, timer
            )
            timestep, carry = rollout.timestep, rollout.carry
            with timer.phase("learner"):
                state, metrics = update(state, rollout.trajectory)
                metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not all(math.isfinite(v) for v in metrics.values()):
                raise TrainingDiverged(
                    f"non-finite loss or gradient at update {updates + 1} "
                    f"(step {env_steps + steps_per_update}): {metrics}; "
                    f"last good checkpoint: {last_checkpoint or 'none'}"
                )
            env_steps += steps_per_update
            updates += 1
            if updates == 1:
                warmup_seconds = time.perf_counter() - start
            history.append(metrics)
            for episode in rollout.episodes:
                returns.append(episode.returns)
                logger.episode(env_steps, episode.returns, episode.length)
            elapsed = time.perf_counter() - start
            speed = {"frames_per_second": env_steps * frames_per_step / elapsed}
            if logger.summary(env_steps, {**metrics, **speed}):
                progress.set_postfix(
                    fps=f"{speed['frames_per_second']:.0f}",
                    ret=f"{logger.mean_recent_return(20):.1f}",
                )
            progress.update(steps_per_update)
            if env_steps >= next_save:
                last_checkpoint = save()
                next_save = (env_steps // config.epoch_len + 1) * config.epoch_len
        if history:
            last_checkpoint = save()
            logger.summary(env_steps, history[-1], force=True)
    finally:
        progress.close()
        seconds = time.perf_counter() - start
        logger.line(
            f"END: steps {env_steps} frames {env_steps * frames_per_step} updates {updates} "
            f"seconds {seconds:.1f} bound-by {timer.bound()} phases "
            + " ".join(f"{k}={v:.2f}s" for k, v in timer.seconds.items())
        )
        logger.close()
    return RunResult(
        run_dir=run_dir,
        env_steps=env_steps,
        frames=env_steps * frames_per_step,
        updates=updates,
        seconds=seconds,
        warmup_seconds=warmup_seconds,
        episode_returns=returns,
        metrics=history,
        phase_seconds=dict(timer.seconds),
        bound=timer.bound(),
        last_checkpoint=last_checkpoint,
        state=state,
        interrupted=stop.is_set(),
    )
