"""Execution modes: where jit, devices, threads and environments meet (impure)."""

from fnrl.parallel.build import (
    RunParts,
    build_run,
    make_agent,
    make_network,
    make_training_env,
    make_training_optimizer,
)
from fnrl.parallel.evaluation import (
    EvaluationThread,
    episode_quotas,
    make_eval_policy,
    run_episodes,
)
from fnrl.parallel.impala import ActorFailed, Rollout, train_impala
from fnrl.parallel.local import train_local
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.parallel.rollout import (
    CompiledTrainer,
    Episode,
    HostTrainer,
    PhaseTimer,
    RolloutResult,
    Trainer,
    UpdateResult,
    collect,
    make_compiled_rollout,
    make_compiled_training,
    make_trainer,
    supports_compiled_rollout,
)
from fnrl.parallel.run import RunResult, SilentRun, TrainingDiverged, TrainingRun
from fnrl.parallel.towered import train_towered

__all__ = [
    "ActionLog",
    "ActorFailed",
    "CompiledTrainer",
    "Episode",
    "EvaluationThread",
    "HostTrainer",
    "PhaseTimer",
    "ResumableEnv",
    "ResumeWarning",
    "Rollout",
    "RolloutResult",
    "RunParts",
    "RunResult",
    "SilentRun",
    "TrainingDiverged",
    "Trainer",
    "TrainingRun",
    "UpdateResult",
    "build_run",
    "collect",
    "episode_quotas",
    "make_agent",
    "make_compiled_rollout",
    "make_compiled_training",
    "make_eval_policy",
    "make_network",
    "make_trainer",
    "make_training_env",
    "make_training_optimizer",
    "run_episodes",
    "supports_compiled_rollout",
    "timestep_fingerprint",
    "train_impala",
    "train_local",
    "train_towered",
]
