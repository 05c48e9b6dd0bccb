"""The config of each execution mode: ``TrainConfig`` (local) and the towered and IMPALA ones.

``TrainConfig`` holds the fields of every section of :mod:`fnrl.config.sections`; a mode's
config adds its own section (:class:`ToweredSettings`, :class:`ImpalaSettings`). Each is saved
as ``config.json`` in the run directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from fnrl import settings
from fnrl.agents import AGENTS
from fnrl.config.sections import (
    CheckpointSettings,
    EnvSettings,
    EvalSettings,
    LoggingSettings,
    NetworkSettings,
    OptimizerSettings,
    RolloutSettings,
    RunSettings,
    Section,
)
from fnrl.networks import VISION_NETWORKS
from fnrl.settings import check_settings, field_error, fields_in_order, setting, shown_value

SECTIONS: tuple[type[Section], ...] = (
    EnvSettings,
    NetworkSettings,
    OptimizerSettings,
    RolloutSettings,
    RunSettings,
    CheckpointSettings,
    LoggingSettings,
    EvalSettings,
)

# The order of TrainConfig's fields, and so of its flags in -h and of its checks: the order they
# were added in, which mixes the sections.
FIELD_ORDER = (
    "env_id", "nb_env", "seed", "learning_rate", "optimizer", "max_grad_norm", "exp_length",
    "max_train_steps", "epoch_len", "nb_top_model", "summary_frequency", "log_interval",
    "stop_timeout", "tag", "log_dir", "skip_rate", "max_episode_length", "normalize",
    "normalization", "zscore_norm_env", "nb_head", "vision_network", "discrete_network",
    "network_body", "agent", "profile", "debug", "nb_last_model", "eval_every", "eval_episodes",
    "nb_eval_env", "eval_step_rate", "resume", "rollout", "gpu_id", "imports", "exact_resume",
    "compilation_cache", "hidden_size", "wandb_project",
)  # fmt: skip

S = TypeVar("S")

# The base that holds TrainConfig's fields.
TrainFields = fields_in_order("TrainFields", SECTIONS, FIELD_ORDER, module=__name__)


@dataclass(frozen=True)
class TrainConfig(TrainFields):
    """Everything a training run reads; saved as ``config.json`` in the run directory.

    Its fields are those of its :data:`SECTIONS` (``config.nb_env`` is
    :class:`~fnrl.config.sections.EnvSettings`'s); :meth:`section` gives a part of the run only
    the fields it reads.
    """

    def __post_init__(self):
        check_settings(type(self), vars(self))
        for section in SECTIONS:
            section.check_invariants(self)

    def section(self, kind: type[S]) -> S:
        """This config's values of the fields of ``kind``, as a ``kind``.

        Args:
            kind: a section (:data:`SECTIONS`, a mode's) or any dataclass whose fields this
                config has, such as its agent's settings.

        Returns:
            E.g. ``config.section(NetworkSettings)``: a ``NetworkSettings`` holding this
            config's ``vision_network``, ``network_body``, ...

        Raises:
            AttributeError: ``kind`` has a field this config has not.
        """
        return kind(**{f.name: getattr(self, f.name) for f in dataclasses.fields(kind)})

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


def _device_list(config: Any) -> list[int] | None:
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
        problem = f"must be like '0,1', got {shown_value(text)}"
        raise field_error(type(config), name, problem) from None
    if any(p < 0 for p in positions) or len(set(positions)) != len(positions):
        problem = f"must list distinct positions >= 0, got {shown_value(text)}"
        raise field_error(type(config), name, problem)
    return positions


@dataclass(frozen=True)
class ToweredSettings(Section):
    """The towered mode's devices and processes (``fnrl.parallel.towered``)."""

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

    def check_invariants(self) -> None:
        """The processes and their coordinator agree; no gradient is dropped; the devices parse."""
        if self.process_id >= self.num_processes:
            problem = f"must be in [0, {self.num_processes - 1}], got {self.process_id}"
            raise field_error(type(self), "process_id", problem)
        host, _, port = self.coordinator_address.rpartition(":")
        if self.coordinator_address and not (host and port.isdigit() and 0 < int(port) < 2**16):
            shown = shown_value(self.coordinator_address)
            problem = f"must be HOST:PORT, a port 1 to 65535, got {shown}"
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


# A mode's section is its config's first base so that the section's fields come after
# TrainConfig's (dataclasses collect the fields of the last base first), as its flags do in -h.


@dataclass(frozen=True)
class ToweredConfig(ToweredSettings, TrainConfig):
    """Towered mode: data-parallel A2C over devices and hosts; ``--nb-env`` is per device."""

    def __post_init__(self):
        TrainConfig.__post_init__(self)
        ToweredSettings.check_invariants(self)


@dataclass(frozen=True)
class ImpalaSettings(Section):
    """The IMPALA mode's actors, learner batches, queue and devices (``fnrl.parallel.impala``)."""

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

    def check_invariants(self) -> None:
        """The dynamic batch bounds fit the queue; the devices parse; no local buffers."""
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


@dataclass(frozen=True)
class ImpalaConfig(ImpalaSettings, TrainConfig):
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

    def __post_init__(self):
        TrainConfig.__post_init__(self)
        ImpalaSettings.check_invariants(self)

    def dynamic_batch_sizes(self, devices: int = 1) -> tuple[int, ...]:
        """The rollout counts a dynamic learner batch may have, ascending; () when disabled.

        The bounds and the powers of 2 between them, those whose envs split over ``devices``.
        """
        if not self.max_dynamic_batch:
            return ()
        low, high = max(1, self.min_dynamic_batch), self.max_dynamic_batch
        sizes = {low, high, *(2**k for k in range(high.bit_length()) if low <= 2**k <= high)}
        return tuple(n for n in sorted(sizes) if n * self.nb_env % devices == 0)


# Each execution mode's config class, by the name ``fnrl.train`` takes; a run's checkpoints
# record the name (meta.json's ``mode``).
MODE_CONFIGS: dict[str, type[TrainConfig]] = {
    "local": TrainConfig,
    "towered": ToweredConfig,
    "impala": ImpalaConfig,
}


def config_mode(stored: Mapping[str, Any]) -> str:
    """The mode of a stored ``config.json``: the one whose own fields (those of no other mode)
    it holds, ``local`` when it holds none.

    Args:
        stored: a run's ``config.json``, as a dict.

    Returns:
        A key of :data:`MODE_CONFIGS`.
    """
    fields = {
        name: {f.name for f in dataclasses.fields(config_class)}
        for name, config_class in MODE_CONFIGS.items()
    }
    for name, own in fields.items():
        others = set().union(*(f for other, f in fields.items() if other != name))
        if (own - others) & stored.keys():
            return name
    return "local"


def flags_of(name: str, config_class: type = TrainConfig) -> tuple[str, ...]:
    """The command-line flags of a field of ``config_class`` (:func:`fnrl.settings.flags_of`)."""
    return settings.flags_of(name, config_class)


def long_flag(name: str, config_class: type = TrainConfig) -> str:
    """The main long flag of a config field, e.g. ``--nb-env`` for ``nb_env``."""
    return settings.long_flag(name, config_class)
