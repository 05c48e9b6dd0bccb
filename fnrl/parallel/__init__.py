"""Execution modes: where jit, devices, threads and environments meet (impure)."""

from fnrl.parallel.budget import Budget, Schedule
from fnrl.parallel.build import (
    RunHooks,
    RunParts,
    build_run,
    make_agent,
    make_network,
    make_training_env,
    make_training_optimizer,
)
from fnrl.parallel.checkpointer import Checkpointer, NoCheckpoints, ResumePoint, find_resume_point
from fnrl.parallel.evaluation import (
    Evaluations,
    EvaluationThread,
    NoEvaluations,
    episode_quotas,
    make_eval_policy,
    run_episodes,
)
from fnrl.parallel.impala import ActorFailed, Rollout, train_impala
from fnrl.parallel.local import train_local
from fnrl.parallel.phases import Episode, PhaseTimer
from fnrl.parallel.resume import ActionLog, ResumableEnv, ResumeWarning, timestep_fingerprint
from fnrl.parallel.rollout import (
    CompiledTrainer,
    HostTrainer,
    RolloutResult,
    Trainer,
    UpdateResult,
    collect,
    make_compiled_rollout,
    make_compiled_training,
    make_trainer,
    supports_compiled_rollout,
)
from fnrl.parallel.run import RunResult, TrainingDiverged, TrainingRun, open_run, silent_run
from fnrl.parallel.runlog import RunLog, SilentLog
from fnrl.parallel.towered import train_towered

__all__ = [
    "ActionLog",
    "ActorFailed",
    "Budget",
    "Checkpointer",
    "CompiledTrainer",
    "Episode",
    "EvaluationThread",
    "Evaluations",
    "HostTrainer",
    "NoCheckpoints",
    "NoEvaluations",
    "PhaseTimer",
    "ResumableEnv",
    "ResumePoint",
    "ResumeWarning",
    "Rollout",
    "RolloutResult",
    "RunHooks",
    "RunLog",
    "RunParts",
    "RunResult",
    "Schedule",
    "SilentLog",
    "TrainingDiverged",
    "Trainer",
    "TrainingRun",
    "UpdateResult",
    "build_run",
    "collect",
    "episode_quotas",
    "find_resume_point",
    "make_agent",
    "make_compiled_rollout",
    "make_compiled_training",
    "make_eval_policy",
    "make_network",
    "make_trainer",
    "make_training_env",
    "make_training_optimizer",
    "open_run",
    "run_episodes",
    "silent_run",
    "supports_compiled_rollout",
    "timestep_fingerprint",
    "train_impala",
    "train_local",
    "train_towered",
]
