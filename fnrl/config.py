"""Training configuration: one frozen dataclass, adept's flags and proven defaults.

Each field carries its command-line flags and help text; ``fnrl.train`` builds its parser from
them, so ``--help`` and this file never disagree. Field defaults are adept's (heronsystems/adeptRL,
2018), tuned for Atari, except ``env_id``: CartPole-v1 instead of PongNoFrameskip-v4, so that
the bare command finishes learning on a laptop CPU in minutes.

adept's Atari settings do not suit low-dimensional control: an LSTM with batch norm over the
env batch learns CartPole slowly (about 90 mean return after 1M steps).
So the defaults depend on the kind of env (``fnrl.envs.env_kind``): images keep adept's,
small images :data:`SMALL_IMAGE_PRESET`, vectors :data:`VECTOR_PRESET`, continuous actions
:data:`CONTINUOUS_PRESET`.
:func:`make_config` applies them under the flags a user gives; the resulting config holds every
effective value and is saved as ``config.json``.

Each field also declares the values it may take (:func:`fnrl.settings.setting`: a range,
choices, a safe path component; floats must be finite), and every config checks them when it is
made (:func:`fnrl.settings.check_settings`): flags, presets and a stored ``config.json`` read
back (:func:`stored_config`) go through the same check, whose ``ConfigError`` names the field.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnrl import settings
from fnrl.agents import AGENTS, get_agent
from fnrl.networks import DISCRETE_NETWORKS, NETWORK_BODIES, NORMALIZATIONS, VISION_NETWORKS
from fnrl.optimizers import OPTIMIZERS
from fnrl.plugins import import_plugins
from fnrl.settings import (  # noqa: F401 (re-exported: the settings machinery's old home)
    ConfigError,
    check_settings,
    field_error,
    field_kind,
    setting,
    shown_value,
    value_problem,
)

ROLLOUTS = ("auto", "compiled", "host")

# envpool takes int32 seeds (and fnrl.envs checks that seed + i fits for env i).
MAX_SEED = 2**31 - 1

# The learning rate's upper bound. RMSprop and Adam move each weight by about the learning rate
# per update whatever the gradient's scale, so a rate above 1 moves every weight by more than its
# whole initial scale at the first update: the run diverges to NaN or inf params (as -lr 1e38
# did) instead of learning. Useful rates are 1e-5 to 1e-2.
MAX_LEARNING_RATE = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run reads; saved as ``config.json`` in the run directory."""

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
    exp_length: int = setting(
        20,
        "rollout length: agent steps per env per update",
        "--exp-length",
        "--nb-rollout",
        at_least=1,
    )
    max_train_steps: int = setting(
        10_000_000,
        "stop after this many environment steps, summed over all envs",
        "-mts",
        "--max-train-steps",
        at_least=1,
    )
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
    stop_timeout: float = setting(
        60.0,
        "seconds a run asked to stop (Ctrl-C, SIGTERM) may take to reach its next update and "
        "save; past them it ends without that save, keeping its checkpoints (an env that hangs)",
        "--stop-timeout",
        above=0.0,
    )
    tag: str = setting("", "prefix of the run directory name", "-t", "--tag", path_component=True)
    log_dir: str = setting("/tmp/fnrl_logs", "root of the run directories", "--log-dir")
    skip_rate: int = setting(4, "Atari frame skip", "--skip-rate", at_least=1)
    max_episode_length: int = setting(
        10_000, "Atari time limit in agent steps", "-mel", "--max-episode-length", at_least=1
    )
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
    agent: str = setting("ActorCritic", "agent", "--agent", choices=AGENTS)
    profile: bool = setting(
        False, "train for 10e3 steps and print a per-phase timing report", "--profile"
    )
    debug: bool = setting(False, "3 envs, logs under /tmp/fnrl_debug", "--debug")
    nb_last_model: int = setting(
        2,
        "number of most recent checkpoints kept, besides the best ones",
        "--nb-last-model",
        at_least=1,
    )
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
    resume: str = setting(
        "",
        "run directory to continue from its latest checkpoint, with its stored config.json "
        "(flags given override it)",
        "--resume",
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
    exact_resume: bool = setting(
        True,
        "record the actions sent to the envs and replay them on resume, so that a resumed run "
        "continues bit-exactly; false restarts the envs fresh on resume (faster for long Atari "
        "runs, not exact)",
        "--exact-resume",
    )

    def __post_init__(self):
        check_settings(type(self), vars(self))
        if self.eval_every and self.nb_eval_env:
            problem = (
                f"must be 0 when --eval-every is not (both write reward/eval), got "
                f"{self.nb_eval_env}; pass --eval-every 0 to use the evaluation thread"
            )
            raise field_error(type(self), "nb_eval_env", problem)

    def device_positions(self) -> list[int] | None:
        """The indices in ``jax.local_devices()`` of the devices the run uses; None for all."""
        return [self.gpu_id]

    def effective(self) -> TrainConfig:
        """The config actually run: ``--debug`` and ``--profile`` rewrite a few fields."""
        config = self
        if self.debug:
            config = dataclasses.replace(config, nb_env=3, log_dir="/tmp/fnrl_debug")
        if self.profile:
            config = dataclasses.replace(config, max_train_steps=10_000)
        return config

    def to_dict(self) -> dict[str, Any]:
        """All fields, for ``config.json``."""
        return dataclasses.asdict(self)


# A2C for vector observations as RL Baselines3 Zoo runs it (DLR-RM/rl-baselines3-zoo,
# hyperparams/a2c.yml for CartPole-v1, Acrobot-v1 and MountainCar-v0, over stable-baselines3's
# A2C defaults): 16 envs (the Zoo's Acrobot-v1 and MountainCar-v0 setting), 5-step rollouts,
# gradients clipped to 0.5, 500k steps, a small feed-forward network (here adept's Linear body,
# 512 units), and observations normalized with running statistics (--zscore-norm-env; the Zoo's
# `normalize: true`, VecNormalize, on Acrobot-v1 and MountainCar-v0). Learning rate, discount,
# GAE lambda and entropy weight stay adept's, which equal the Zoo's except the entropy weight
# (0.01 instead of 0). Normalization is layer norm, per sample: batch statistics over the env
# batch hide what all envs share, which low-dimensional control needs (batch norm cannot balance
# CartPole). Measured on seeds 0, 1, 2 (greedy means over 50 games): observation normalization
# makes MountainCar-v0 learn (-129, -132, -132; -200 without: its velocity, about 0.01 in size,
# is invisible to the network otherwise), Acrobot-v1 reaches -85, -80, -82 (about -83 without
# it) and CartPole-v1 500; without layer norm, Acrobot-v1's seed 2 does not learn (-500; near
# -160 before observation normalization).
VECTOR_PRESET: dict[str, Any] = {
    "nb_env": 16,
    "exp_length": 5,
    "network_body": "Linear",
    "normalize": True,
    "normalization": "layer",
    "zscore_norm_env": True,
    "max_grad_norm": 0.5,
    "max_train_steps": 500_000,
    "eval_every": 25_000,
}

# Continuous actions (a Gaussian head) on vector observations: the vector preset without the
# entropy bonus, which on a Gaussian only widens it (the Zoo and CleanRL use none for
# continuous control).
CONTINUOUS_PRESET: dict[str, Any] = {**VECTOR_PRESET, "entropy_coef": 0.0}

# Small screens (MinAtar's 10x10 boards), which adept's trunks shrink to nothing: the MinAtar
# trunk (Young & Tian 2019's network) under the vector preset's rollouts, layer norm and
# clipping, for the paper's 5M frames. Measured on MinAtar/Breakout-v1, seed 0: a recent return
# of 5.4 after 300k steps (random play: 0.41; tests/envs/test_minatar.py).
SMALL_IMAGE_PRESET: dict[str, Any] = {
    **{
        name: VECTOR_PRESET[name]
        for name in ("nb_env", "exp_length", "network_body", "normalization", "max_grad_norm")
    },
    "vision_network": "MinAtar",
    "max_train_steps": 5_000_000,
    "eval_every": 100_000,
}

# The defaults of each kind of env (fnrl.envs.ENV_KINDS), under the flags given.
# Images (Atari) keep adept's defaults, the field defaults of TrainConfig.
PRESETS: dict[str, dict[str, Any]] = {
    "image": {},
    "small_image": SMALL_IMAGE_PRESET,
    "vector": VECTOR_PRESET,
    "continuous": CONTINUOUS_PRESET,
}

# What -h says about each kind: the envs of that kind, and where its defaults come from.
PRESET_SOURCES: dict[str, tuple[str, str]] = {
    "image": ("Images (Atari and other rank-3 screens)", "adept's Atari settings"),
    "small_image": (
        "Small images (screens under 36 pixels on a side, such as MinAtar's 10x10 boards)",
        "the MinAtar network of Young & Tian 2019 under the vector preset's rollouts "
        "(see fnrl.config.SMALL_IMAGE_PRESET)",
    ),
    "vector": (
        "Vectors with discrete actions (classic control, Box2D, toy text)",
        "A2C as RL Baselines3 Zoo runs it on classic control (observations normalized with "
        "running statistics), with layer norm as measured (see fnrl.config.VECTOR_PRESET)",
    ),
    "continuous": (
        "Continuous actions (MuJoCo, Pendulum and other Box actions)",
        "the vector preset without an entropy bonus (see fnrl.config.CONTINUOUS_PRESET)",
    ),
}

# The value that runs saved before a field existed trained with, for the fields whose preset
# value now differs from it: a config.json without the field gets this value, not the preset's.
OLD_RUN_VALUES: dict[str, Any] = {"zscore_norm_env": False, "eval_every": 0}


def preset(kind: str, agent: str | None = None) -> dict[str, Any]:
    """The defaults of envs of ``kind``, applied under the flags a user gives.

    Args:
        kind: a kind of env, as :func:`fnrl.envs.env_kind` returns.
        agent: a registered agent whose own preset for ``kind`` goes over the shared one;
            None for the shared one alone.

    Returns:
        Field name -> default; empty for images, which keep adept's defaults (unless the
        agent's preset says otherwise). With an agent, only the fields its runs have: a shared
        agent setting (``entropy_coef``) is left out for an agent without it.

    Raises:
        ValueError: an unknown kind or agent.
    """
    if kind not in PRESETS:
        raise ValueError(f"unknown kind of env {kind!r}; choose one of: {', '.join(PRESETS)}")
    if agent is None:
        return dict(PRESETS[kind])
    plugin = get_agent(agent)
    fields = {f.name for cls in (TrainConfig, plugin.settings) for f in dataclasses.fields(cls)}
    shared = {name: value for name, value in PRESETS[kind].items() if name in fields}
    return {**shared, **plugin.presets.get(kind, {})}


_AGENT_CONFIGS: dict[tuple[type, str], tuple[Any, type]] = {}


def agent_config_class(base: type[TrainConfig], agent: str) -> type[TrainConfig]:
    """The config class of a run of ``agent`` in a mode: ``base`` and the agent's settings.

    Its fields are ``base``'s, then those of the agent's settings dataclass; the agent's
    ``defaults`` replace the defaults of the fields they name, so ``-h`` shows them. Built once
    per mode, agent and plug-in.

    Args:
        base: ``TrainConfig`` or a mode's subclass (or a class this function returned).
        agent: a registered agent name (``fnrl.agents.register_agent``).

    Raises:
        ValueError: an unknown agent, or settings that redefine a field of ``base``.
    """
    base = getattr(base, "mode_config", base)
    plugin = get_agent(agent)
    cached = _AGENT_CONFIGS.get((base, agent))
    if cached is not None and cached[0] is plugin:
        return cached[1]
    own = dataclasses.fields(plugin.settings)
    clashes = sorted({f.name for f in own} & set(base.__dataclass_fields__))
    if clashes:
        raise ValueError(f"the settings of agent {agent!r} redefine run fields: {clashes}")
    by_name = {**base.__dataclass_fields__, **{f.name: f for f in own}}
    defaults = {"agent": agent, **plugin.defaults}
    unknown = sorted(set(defaults) - set(by_name))
    if unknown:
        raise ValueError(f"the defaults of agent {agent!r} name unknown fields: {unknown}")
    fields = [
        (f.name, f.type, field(default=defaults.get(f.name, f.default), metadata=f.metadata))
        for f in (*own, *(by_name[name] for name in defaults if name in base.__dataclass_fields__))
    ]

    def __post_init__(self):
        base.__post_init__(self)
        check = getattr(plugin.settings, "__post_init__", None)
        if check is not None:
            check(self)

    config_class = dataclasses.make_dataclass(
        f"{base.__name__}With{agent.replace('-', '_')}",
        fields,
        bases=(plugin.settings, base),
        frozen=True,
        namespace={"__post_init__": __post_init__, "mode_config": base},
    )
    config_class.__module__ = __name__
    _AGENT_CONFIGS[(base, agent)] = (plugin, config_class)
    return config_class


def with_agent_settings(config: TrainConfig) -> TrainConfig:
    """``config`` as a config of its agent's class: with the agent's settings at their defaults.

    A config from :func:`make_config` has them already and comes back unchanged; a plain
    ``TrainConfig(...)`` gets them (the agent's ``defaults`` apply only to the fields it does
    not hold already, so nothing it sets changes), and a config whose ``agent`` was replaced
    trades the old agent's settings for the new one's.

    Raises:
        ValueError: an unknown agent.
    """
    config_class = agent_config_class(type(config), config.agent)
    if isinstance(config, config_class):
        return config
    fields = set(config_class.__dataclass_fields__)  # another agent's settings are dropped
    return config_class(
        **{name: value for name, value in config.to_dict().items() if name in fields}
    )


def make_config(config_class: type[TrainConfig] = TrainConfig, /, **settings: Any) -> TrainConfig:
    """A config from the settings a user gave, over its env's preset, over the defaults.

    The class is ``config_class`` with the settings of the agent named by ``settings["agent"]``
    (or the mode's default agent) added (:func:`agent_config_class`). The preset is the one of
    the env's kind (:func:`preset` of :func:`fnrl.envs.env_kind`), with the agent's own preset for
    that kind over it: images keep adept's defaults, vectors get :data:`VECTOR_PRESET`,
    continuous actions :data:`CONTINUOUS_PRESET`. The config returned holds every effective value.

    Args:
        config_class: ``TrainConfig`` or a mode's subclass of it.
        **settings: its fields and the agent's, given explicitly (e.g. from the command line).

    Raises:
        ConfigError: a setting does not fit its field (the message names the flag).
        ValueError: another invalid setting, or the env id is unknown.
        TypeError: an unknown field name.
    """
    # Imported here: fnrl.envs loads the simulators, which `--help` does not need.
    from fnrl.envs import env_kind

    base = getattr(config_class, "mode_config", config_class)
    agent = settings.get("agent", base.agent)
    check_settings(base, {"agent": agent})  # it decides which settings exist
    run_class = agent_config_class(base, agent)
    check_settings(run_class, settings)  # before the env id is used and an env made for its kind
    kind = env_kind(settings.get("env_id", run_class.env_id))
    return run_class(**{**preset(kind, agent), **settings})


@contextlib.contextmanager
def _naming_config_json(run_dir: str | Path, given: Collection[str] = ()) -> Iterator[None]:
    """Turns a :class:`ConfigError` of a stored value into one that names ``config.json``."""
    try:
        yield
    except ConfigError as e:
        if e.field in given:
            raise
        message = f"config.json of {run_dir}: {e.field} {e.problem}"
        raise ConfigError(message, e.field, e.problem) from None


def read_stored_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings a run stored in its ``config.json``, with its plug-ins imported.

    The modules of its ``imports`` are imported first (:func:`fnrl.plugins.import_plugins`), so
    that the agent and networks they register resolve in every command that reads a run. The
    agent is checked here because it decides the run's config class, and so which of the
    other settings exist (:func:`stored_config` checks those).

    Raises:
        ValueError: no readable ``config.json`` in ``run_dir``, or a module of its ``imports``
            that cannot be imported.
        ConfigError: it holds no JSON object, an ``imports`` that is no string, or an invalid
            agent.
    """
    path = Path(run_dir).expanduser() / "config.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{run_dir} is not a run directory: cannot read {path.name}: {e}") from e
    if not isinstance(stored, dict):
        problem = f"must hold a JSON object of settings, got {shown_value(stored)}"
        raise ConfigError(f"config.json of {run_dir} {problem}", None, problem)
    with _naming_config_json(run_dir):
        check_settings(TrainConfig, {k: v for k, v in stored.items() if k == "imports"})
    try:
        import_plugins(stored.get("imports", ""))
    except ValueError as e:
        raise ValueError(f"config.json of {run_dir}: {e}") from e
    with _naming_config_json(run_dir):
        check_settings(TrainConfig, {k: v for k, v in stored.items() if k == "agent"})
    return stored


def stored_config(
    run_dir: str | Path,
    stored: Mapping[str, Any],
    config_class: type[TrainConfig] = TrainConfig,
    **given: Any,
) -> TrainConfig:
    """The config of a stored run: its ``config.json`` settings with ``given`` over them.

    ``config.json`` records every effective value of the run, its env's preset included; fields
    it lacks (written before they existed) come from its env's preset rather than adept's Atari
    defaults, or are the values such runs trained with (:data:`OLD_RUN_VALUES`). Fields that
    ``config_class`` and the agent do not have (another mode's) are ignored, and so are those
    another mode stored in its own type (a towered run's ``gpu_id`` list, for an evaluation).

    Args:
        run_dir: the run directory, as errors name it.
        stored: its settings, from :func:`read_stored_config`.
        config_class: the mode's config class.
        **given: settings that override the stored ones (the flags of a resume).

    Raises:
        ConfigError: a stored value does not fit its field (``config.json of RUN_DIR: nb_env
            must be an integer, got "abc"``), or a given one (named by its flag).
        ValueError: another invalid setting, e.g. an unknown env id.
    """
    base = getattr(config_class, "mode_config", config_class)
    run_class = agent_config_class(base, given.get("agent", stored.get("agent", base.agent)))
    types = {f.name: f.type for f in dataclasses.fields(run_class)}
    retyped = _retyped_fields()
    settings = {
        name: value
        for name, value in stored.items()
        if name in types and not (name in retyped and type(value).__name__ != types[name])
    }
    with _naming_config_json(run_dir, given):
        return make_config(run_class, **{**OLD_RUN_VALUES, **settings, **given})


def _retyped_fields() -> set[str]:
    """Fields a mode gives another type (towered's and IMPALA's ``--gpu-id`` lists devices): a
    run of that mode stored them in its type, which another mode's evaluation ignores."""
    base = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    modes = (ToweredConfig, ImpalaConfig)
    return {
        f.name
        for mode in modes
        for f in dataclasses.fields(mode)
        if f.name in base and f.type != base[f.name]
    }


def flags_of(name: str, config_class: type = TrainConfig) -> tuple[str, ...]:
    """The command-line flags of a field of ``config_class`` (:func:`fnrl.settings.flags_of`)."""
    return settings.flags_of(name, config_class)


def long_flag(name: str, config_class: type = TrainConfig) -> str:
    """The main long flag of a config field, e.g. ``--nb-env`` for ``nb_env``."""
    return settings.long_flag(name, config_class)


def _device_list(config: TrainConfig) -> list[int] | None:
    """The device indices of a mode whose ``--gpu-id`` (or ``--devices``) lists several.

    Returns:
        The distinct indices given, in order; None when neither flag names any.

    Raises:
        ConfigError: a malformed list, or both flags given with different lists.
    """
    given = {name: getattr(config, name).strip() for name in ("gpu_id", "devices")}
    given = {name: text for name, text in given.items() if text}
    if not given:
        return None
    if len(set(given.values())) > 1:
        problem = f"must equal --devices {shown_value(config.devices)} when both are given, got "
        raise field_error(type(config), "gpu_id", problem + shown_value(config.gpu_id))
    name, text = next(iter(given.items()))
    try:
        positions = [int(p) for p in text.split(",")]
    except ValueError:
        raise field_error(
            type(config), name, f"must be like '0,1', got {shown_value(text)}"
        ) from None
    if any(p < 0 for p in positions) or len(set(positions)) != len(positions):
        problem = f"must list distinct positions >= 0, got {shown_value(text)}"
        raise field_error(type(config), name, problem)
    return positions


@dataclass(frozen=True)
class ToweredConfig(TrainConfig):
    """Towered mode: data-parallel A2C over devices and hosts; ``--nb-env`` is per device."""

    gpu_id: str = setting(
        "",
        "comma-separated indices in each host's jax.local_devices() to train on, e.g. '0,1' "
        "(adept's --gpu-id list, written with commas; any platform's devices); empty: all",
        "--gpu-id",
    )
    devices: str = setting("", "the same as --gpu-id", "--devices")
    coordinator_address: str = setting(
        "",
        "HOST:PORT of process 0, to train with several processes; every process must reach it "
        "within --heartbeat-timeout",
        "--coordinator-address",
    )
    num_processes: int = setting(
        1, "number of processes (hosts) training together", "--num-processes", at_least=1
    )
    process_id: int = setting(
        0, "this process's index, 0 .. num-processes - 1", "--process-id", at_least=0
    )
    heartbeat_timeout: int = setting(
        100,
        "seconds a process waits to join the others at start-up, or for them at an update, "
        "before it ends with an error (a peer frozen, dead or unreachable)",
        "--heartbeat-timeout",
        at_least=1,
    )
    num_grads_to_drop: int = setting(
        0,
        "adept's backup workers (Chen et al. 2016): drop the N slowest workers' gradients per "
        "update. Only 0 is accepted: a towered update is one synchronous all-reduce inside the "
        "compiled step, so no gradient is late and none can be dropped",
        "--num-grads-to-drop",
        at_least=0,
    )

    def __post_init__(self):
        super().__post_init__()
        if self.process_id >= self.num_processes:
            problem = f"must be in [0, {self.num_processes - 1}], got {self.process_id}"
            raise field_error(type(self), "process_id", problem)
        host, _, port = self.coordinator_address.rpartition(":")
        if self.coordinator_address and not (host and port.isdigit() and 0 < int(port) < 2**16):
            problem = (
                f"must be HOST:PORT, a port 1 to 65535, got {shown_value(self.coordinator_address)}"
            )
            raise field_error(type(self), "coordinator_address", problem)
        if self.num_processes > 1 and not self.coordinator_address:
            problem = 'must be HOST:PORT when --num-processes is more than 1, got ""'
            raise field_error(type(self), "coordinator_address", problem)
        if self.num_grads_to_drop:
            problem = (
                f"must be 0, got {self.num_grads_to_drop}: towered updates average gradients "
                "in one synchronous all-reduce, so no worker's gradient is late to be dropped"
            )
            raise field_error(type(self), "num_grads_to_drop", problem)
        self.device_positions()  # validates --devices

    def device_positions(self) -> list[int] | None:
        """The chosen positions in each host's local device list, or None for all."""
        return _device_list(self)


@dataclass(frozen=True)
class ImpalaConfig(TrainConfig):
    """IMPALA mode: actor threads feed a V-trace learner through a bounded queue.

    As in adept, ``--nb-env`` counts the envs of each actor (adept: of each actor process): a run
    steps ``nb_env * nb_actor`` envs, and each learner update trains on ``batch_size`` rollouts
    of ``nb_env`` envs by ``exp_length`` steps.
    """

    nb_env: int = setting(32, "environments per actor thread", "-n", "--nb-env", at_least=1)
    agent: str = setting("ActorCriticVtrace", "agent", "--agent", choices=AGENTS)
    vision_network: str = setting(
        "Nature",
        "trunk for image observations (IMPALA's default is adept's IMPALA one, Nature)",
        "-vn",
        "--vision-network",
        choices=VISION_NETWORKS,
    )
    nb_actor: int = setting(
        2,
        "actor threads, each stepping its own --nb-env envs with the latest params",
        "--nb-actor",
        at_least=1,
    )
    batch_size: int = setting(
        2,
        "rollouts per learner update (adept's --num-rollouts-in-batch, which defaulted to the "
        "number of actors)",
        "--batch-size",
        "--num-rollouts-in-batch",
        at_least=1,
    )
    max_queue_length: int = setting(
        4,
        "rollouts in flight at most, queued for the learner or being collected; an actor waits "
        "for a free place before it collects, which keeps the policy lag within "
        "ceil(max-queue-length / batch-size) updates (adept: 2 x actors, 4 for the default 2)",
        "--max-queue-length",
        at_least=1,
    )
    gpu_id: str = setting(
        "",
        "comma-separated indices in jax.local_devices(), e.g. '0,1' (adept's --gpu-id list, "
        "written with commas; any platform's devices): the learner's update is sharded over "
        "them and the actor threads act on them in turn (adept put its learner on the first "
        "and the actors on the rest); empty: the learner on all, the actors on the first",
        "--gpu-id",
    )
    devices: str = setting("", "the same as --gpu-id", "--devices")
    max_dynamic_batch: int = setting(
        0,
        "when above 0, dynamic batching (adept's): each update takes the rollouts that are "
        "ready, at least --min-dynamic-batch (and 1) and at most this many, instead of "
        "--batch-size; the count is rounded down to one of a few compiled sizes (the powers of "
        "2 between the two bounds, and the bounds) that split over the learner devices, so XLA "
        "compiles once per size; 0 disables",
        "--max-dynamic-batch",
        at_least=0,
    )
    min_dynamic_batch: int = setting(
        0,
        "the fewest rollouts a dynamic batch waits for (adept's; 0 and 1 both mean one)",
        "--min-dynamic-batch",
        at_least=0,
    )
    host_training_info_interval: int = setting(
        100,
        "learner updates between the learner's info lines in train_log.txt (updates done, and "
        "over the interval: rollouts per batch, policy lag, queue wait, learner time; adept's)",
        "--host-training-info-interval",
        at_least=1,
    )
    use_local_buffers: bool = setting(
        False,
        "adept: each actor acts with its own batch-norm statistics instead of the host's. Only "
        "false is accepted: fnrl's actors are threads that act with the learner's published "
        "params, batch-norm statistics included, and keep no buffers of their own",
        "--use-local-buffers",
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_dynamic_batch and self.min_dynamic_batch > self.max_dynamic_batch:
            problem = (
                f"must be at most --max-dynamic-batch {self.max_dynamic_batch}, got "
                f"{self.min_dynamic_batch}"
            )
            raise field_error(type(self), "min_dynamic_batch", problem)
        if self.max_dynamic_batch and self.min_dynamic_batch > self.max_queue_length:
            problem = (
                f"must be at most --max-queue-length {self.max_queue_length} (the rollouts that "
                f"can be waiting), got {self.min_dynamic_batch}"
            )
            raise field_error(type(self), "min_dynamic_batch", problem)
        self.device_positions()  # validates --gpu-id
        if self.use_local_buffers:
            problem = (
                "must be false, got True: fnrl's actors are threads acting with the learner's "
                "published params and batch-norm statistics; they keep no local buffers"
            )
            raise field_error(type(self), "use_local_buffers", problem)

    def device_positions(self) -> list[int] | None:
        """The chosen indices in ``jax.local_devices()``, or None for all."""
        return _device_list(self)

    def dynamic_batch_sizes(self, devices: int = 1) -> tuple[int, ...]:
        """The rollout counts a dynamic learner batch may have, ascending; () when disabled.

        The bounds and the powers of 2 between them, those whose envs split over ``devices``.
        """
        if not self.max_dynamic_batch:
            return ()
        low, high = max(1, self.min_dynamic_batch), self.max_dynamic_batch
        sizes = {low, high, *(2**k for k in range(high.bit_length()) if low <= 2**k <= high)}
        return tuple(n for n in sorted(sizes) if n * self.nb_env % devices == 0)
