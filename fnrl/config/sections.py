"""The sections of a run's config, grouped by the part of a run that reads them.

Each section is a frozen dataclass of settings (:func:`fnrl.settings.setting`): the envs
(:class:`EnvSettings`), the network (:class:`NetworkSettings`), the optimizer, the rollouts, the
run's budget and device, its checkpoints, its logs and its evaluations. ``TrainConfig``
(:mod:`fnrl.config.modes`) holds the fields of every section; a part that reads only its own
receives them with ``config.section(NetworkSettings)``. Made alone, a section checks its values
as a whole config does.

Field defaults are adept's (heronsystems/adeptRL, 2018), tuned for Atari, except ``env_id``:
CartPole-v1 instead of PongNoFrameskip-v4, so that the bare command finishes learning on a
laptop CPU in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnrl.agents import AGENTS
from fnrl.networks import DISCRETE_NETWORKS, NETWORK_BODIES, NORMALIZATIONS, VISION_NETWORKS
from fnrl.optimizers import OPTIMIZERS
from fnrl.settings import check_settings, field_error, setting, shown_value

ROLLOUTS = ("auto", "compiled", "host")

# envpool takes int32 seeds (and fnrl.envs checks that seed + i fits for env i).
MAX_SEED = 2**31 - 1

# The learning rate's upper bound. RMSprop and Adam move each weight by about the learning rate
# per update whatever the gradient's scale, so a rate above 1 moves every weight by more than its
# whole initial scale at the first update: the run diverges to NaN or inf params (as -lr 1e38
# did) instead of learning. Useful rates are 1e-5 to 1e-2.
MAX_LEARNING_RATE = 1.0

# The characters W&B refuses in a project name (wandb's Settings.validate_project).
WANDB_FORBIDDEN = "/\\#?%:"


class Section:
    """Base of the sections: made alone, a section checks its settings and its invariants."""

    def __post_init__(self) -> None:
        check_settings(type(self), vars(self))
        self.check_invariants()

    def check_invariants(self) -> None:
        """Checks what involves several fields of the section.

        Raises:
            ConfigError: naming the field to change.
        """


@dataclass(frozen=True)
class EnvSettings(Section):
    """The envs of a run: which env, how many, how seeded, and adept's Atari wrappers.

    Read by the env factory (``fnrl.parallel.build.make_training_env``); ``seed`` also seeds the
    run's keys.
    """

    env_id: str = setting(
        "CartPole-v1",
        "environment: adept/Gym Atari ids (PongNoFrameskip-v4), envpool ids (Pong-v5, "
        "CartPole-v1) or any Gymnasium id",
        "--env-id",
    )
    nb_env: int = setting(32, "number of parallel environments", "-n", "--nb-env", at_least=1)
    seed: int = setting(
        0,
        "random seed of the network, the actions and the envs",
        "-s",
        "--seed",
        at_least=0,
        at_most=MAX_SEED,
    )
    skip_rate: int = setting(4, "Atari frame skip", "--skip-rate", at_least=1)
    max_episode_length: int = setting(
        10_000, "Atari time limit in agent steps", "-mel", "--max-episode-length", at_least=1
    )


@dataclass(frozen=True)
class NetworkSettings(Section):
    """The network: adept's trunk, body and normalization choices, and observation statistics.

    Read by ``fnrl.parallel.build.make_network``.
    """

    normalize: bool = setting(
        True, "batch norm in trunks and Linear body, layer-norm LSTM cell", "--normalize"
    )
    normalization: str = setting(
        "batch",
        "the layer --normalize adds: 'batch' (batch norm with each step's env batch while acting "
        "and learning, adept's), 'running' (batch norm with its running statistics) or 'layer' "
        "(layer norm, per sample); evaluation uses batch norm's running statistics",
        "--normalization",
        choices=NORMALIZATIONS,
    )
    zscore_norm_env: bool = setting(
        False,
        "normalize vector observations with the running mean and variance of every observation "
        "learned from (Stable-Baselines3's VecNormalize: clip((x - mean) / sqrt(var + 1e-8), "
        "-10, 10)); the statistics are saved in checkpoints; images are left as they are",
        "--zscore-norm-env",
    )
    nb_head: int = setting(1, "attention heads of attention networks", "--nb-head", at_least=1)
    vision_network: str = setting(
        "FourConv",
        "trunk for image observations",
        "-vn",
        "--vision-network",
        choices=VISION_NETWORKS,
    )
    discrete_network: str = setting(
        "Identity",
        "trunk for vector observations",
        "-dn",
        "--discrete-network",
        choices=DISCRETE_NETWORKS,
    )
    network_body: str = setting(
        "LSTM", "network body", "-nb", "--network-body", choices=NETWORK_BODIES
    )
    hidden_size: int = setting(
        512, "width of the network body (adept's: 512)", "--hidden-size", at_least=1
    )


@dataclass(frozen=True)
class OptimizerSettings(Section):
    """The optimizer of the learner's updates (``fnrl.optimizers``)."""

    learning_rate: float = setting(
        7e-4, "learning rate", "-lr", "--learning-rate", above=0.0, at_most=MAX_LEARNING_RATE
    )
    optimizer: str = setting(
        "rmsprop",
        "'rmsprop' (adept's: torch's RMSprop, decay 0.99, eps 1e-5 outside the root), "
        "'rmsprop_tf' (TensorFlow's: the mean square starts at 1, eps 1e-5 inside the root) or "
        "'adam' (eps 1e-5)",
        "--optimizer",
        choices=OPTIMIZERS,
    )
    max_grad_norm: float = setting(
        0.0, "clip gradients to this global norm; 0 disables", "--max-grad-norm", at_least=0.0
    )


@dataclass(frozen=True)
class RolloutSettings(Section):
    """How experience is collected: the rollout length and where its steps run."""

    exp_length: int = setting(
        20,
        "rollout length: agent steps per env per update",
        "--exp-length",
        "--nb-rollout",
        at_least=1,
    )
    rollout: str = setting(
        "auto",
        "how experience is collected: 'compiled' runs the T acting and env steps of a rollout "
        "inside one XLA computation, with the update in local mode (envpool envs, every mode), "
        "'host' steps the envs from Python with a compiled policy; 'auto' picks "
        "compiled where it applies",
        "--rollout",
        choices=ROLLOUTS,
    )


@dataclass(frozen=True)
class RunSettings(Section):
    """What a run trains and for how long, on which device, with which plug-ins.

    Read by the command line and the modes.
    """

    agent: str = setting("ActorCritic", "agent", "--agent", choices=AGENTS)
    max_train_steps: int = setting(
        10_000_000,
        "stop after this many environment steps, summed over all envs",
        "-mts",
        "--max-train-steps",
        at_least=1,
    )
    stop_timeout: float = setting(
        60.0,
        "seconds a run asked to stop (Ctrl-C, SIGTERM) may take to reach its next update and "
        "save; past them it ends without that save, keeping its checkpoints (an env that hangs)",
        "--stop-timeout",
        above=0.0,
    )
    profile: bool = setting(
        False, "train for 10e3 steps and print a per-phase timing report", "--profile"
    )
    debug: bool = setting(False, "3 envs, logs under /tmp/fnrl_debug", "--debug")
    gpu_id: int = setting(
        0,
        "the device to train on, by its index in jax.local_devices() (adept's --gpu-id; here "
        "any platform's devices, CPU ones too)",
        "--gpu-id",
        at_least=0,
    )
    imports: str = setting(
        "",
        "comma-separated Python modules to import first, which register plug-ins (agents, "
        "networks, envs); stored in config.json, so fnrl.evaluate, fnrl.render and --resume "
        "import them too",
        "--import",
    )
    compilation_cache: bool = setting(
        True,
        "keep XLA's compiled programs in JAX's persistent compilation cache, in "
        "$XDG_CACHE_HOME/fnrl/jax (~/.cache/fnrl/jax; JAX_COMPILATION_CACHE_DIR wins), so that "
        "a run like an earlier one starts without compiling again",
        "--compilation-cache",
    )


@dataclass(frozen=True)
class CheckpointSettings(Section):
    """When checkpoints are saved, which are kept, and how a run resumes from one."""

    epoch_len: int = setting(
        1_000_000, "save a checkpoint every this many environment steps", "--epoch-len", at_least=1
    )
    nb_top_model: int = setting(
        3,
        "number of best checkpoints kept, ranked by the mean return of the last 100 training "
        "episodes at save time (adept); 0 keeps none",
        "--nb-top-model",
        at_least=0,
    )
    nb_last_model: int = setting(
        2,
        "number of most recent checkpoints kept, besides the best ones",
        "--nb-last-model",
        at_least=1,
    )
    resume: str = setting(
        "",
        "run directory to continue from its latest checkpoint, with its stored config.json "
        "(flags given override it)",
        "--resume",
    )
    exact_resume: bool = setting(
        True,
        "record the actions sent to the envs and replay them on resume, so that a resumed run "
        "continues bit-exactly; false restarts the envs fresh on resume (faster for long Atari "
        "runs, not exact)",
        "--exact-resume",
    )


@dataclass(frozen=True)
class LoggingSettings(Section):
    """Where a run writes and how often it reports (``fnrl.logging``)."""

    summary_frequency: float = setting(
        10.0,
        "seconds between two summary lines (steps, recent frames/s, recent return, losses) on "
        "stdout and in train_log.txt",
        "-sf",
        "--summary-frequency",
        above=0.0,
    )
    log_interval: int = setting(
        10,
        "learner updates between two tensorboard writes of the losses and metrics (their means "
        "over those updates)",
        "--log-interval",
        at_least=1,
    )
    tag: str = setting("", "prefix of the run directory name", "-t", "--tag", path_component=True)
    log_dir: str = setting("/tmp/fnrl_logs", "root of the run directories", "--log-dir")
    wandb_project: str = setting(
        "",
        "Weights & Biases project that gets the run too: every tensorboard scalar at its step, "
        "the evaluations and config.json, in a W&B run named after the run directory, which "
        "--resume continues (needs the wandb extra; WANDB_MODE=offline keeps it on disk); "
        "empty: none",
        "--wandb-project",
    )

    def check_invariants(self) -> None:
        """A W&B project name must be one W&B accepts (``wandb.init`` would refuse it only
        once the run directory is written)."""
        if len(self.wandb_project) > 128 or any(c in self.wandb_project for c in WANDB_FORBIDDEN):
            problem = (
                f"must be at most 128 characters, none of {' '.join(WANDB_FORBIDDEN)}, got "
                f"{shown_value(self.wandb_project)}"
            )
            raise field_error(type(self), "wandb_project", problem)


@dataclass(frozen=True)
class EvalSettings(Section):
    """The evaluations played beside training (``fnrl.parallel.evaluation``)."""

    eval_every: int = setting(
        250_000,
        "environment steps between two evaluations, each of --eval-episodes greedy games on "
        "fresh envs with the params of an update boundary, played beside training and logged as "
        "reward/eval and in eval.csv; 0 disables them",
        "--eval-every",
        at_least=0,
    )
    eval_episodes: int = setting(
        10, "games of each evaluation, played in parallel", "--eval-episodes", at_least=1
    )
    nb_eval_env: int = setting(
        0,
        "envs of adept's evaluation thread, which plays the latest params greedily alongside "
        "training and logs each game as reward/eval; 0 disables it (adept's default was 1); "
        "it needs --eval-every 0",
        "--nb-eval-env",
        at_least=0,
    )
    eval_step_rate: float = setting(
        0.0,
        "evaluation steps per second at most; 0 throttles the evaluation thread to about 2 "
        "percent of one core instead (adept's 0 meant unlimited)",
        "--eval-step-rate",
        at_least=0.0,
    )

    def check_invariants(self) -> None:
        """Both kinds of evaluation log ``reward/eval``: at most one may be on."""
        if self.eval_every and self.nb_eval_env:
            problem = (
                f"must be 0 when --eval-every is not (both write reward/eval), got "
                f"{self.nb_eval_env}; pass --eval-every 0 to use the evaluation thread"
            )
            raise field_error(type(self), "nb_eval_env", problem)
