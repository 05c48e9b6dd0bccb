"""Command line: ``python -m fnrl.train [MODE] [flags]``.

Modes (``MODES``):
    local    one device, synchronous training (adept's Local); the default when no mode is given.
    towered  synchronous data-parallel training over every device and host (adept's Towered).
    impala   actor threads feed a V-trace learner through a bounded queue (adept's IMPALA).

Every flag of the mode's config (``fnrl.config.TrainConfig`` or its subclass) and of the agent's
settings (``--agent``, see ``fnrl.agents.AGENTS``) is accepted, with adept's names and short
forms; booleans take adept's forms (``--normalize false``). Defaults depend on the agent and on
what the env observes (``fnrl.config.PRESETS`` and the agent's presets): adept's for images
(Atari), the vector preset for vector observations (classic control, Box2D, ...); flags given
override them.

``python -m fnrl.train --resume RUN_DIR [flags]`` continues a stopped run from its latest
checkpoint with its stored ``config.json`` and mode; flags given override the stored values
(with a warning), except those that define the envs or the network.

A bad flag, or a bad value in the stored ``config.json`` of a resumed run, ends the command with
one line that names the field (``fnrl.settings.check_settings``) and exit code 2; so does an env
whose first observations its declared spaces rule out (``fnrl.envs.EnvOutputError``), and
``--wandb-project`` (given, or stored by the resumed run) where wandb does not import.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from fnrl.agents import AGENTS, get_agent
from fnrl.checkpoint import CheckpointError, list_checkpoints, read_meta
from fnrl.cli import PARSERS, CommandLineParser, use_compilation_cache
from fnrl.config import (
    MODE_CONFIGS,
    PRESET_SOURCES,
    PRESETS,
    TrainConfig,
    agent_config_class,
    config_mode,
    long_flag,
    make_config,
    preset,
    read_stored_config,
    stored_config,
)
from fnrl.plot import write_run_plot
from fnrl.plugins import import_plugins, plugin_modules
from fnrl.settings import ConfigError, field_kind

if TYPE_CHECKING:  # the run shell imports the envs (seconds): -h stays fast
    from fnrl.parallel.build import RunHooks


class Mode(NamedTuple):
    """An execution mode of the command line."""

    config_class: type[TrainConfig]  # its flags
    runner: str  # "module:function" taking (config, *, stop) and returning a RunResult
    help: str


# Runners are imported when run, so that --help stays fast.
MODES: dict[str, Mode] = {
    "local": Mode(
        MODE_CONFIGS["local"], "fnrl.parallel.local:train_local", "one device, synchronous updates"
    ),
    "towered": Mode(
        MODE_CONFIGS["towered"],
        "fnrl.parallel.towered:train_towered",
        "synchronous data-parallel updates over every device and host",
    ),
    "impala": Mode(
        MODE_CONFIGS["impala"],
        "fnrl.parallel.impala:train_impala",
        "actor threads feed a V-trace learner through a bounded queue",
    ),
}


def _add_config_flags(
    parser: argparse.ArgumentParser, config_class: type[TrainConfig], env: HelpEnv
) -> None:
    presets = _presets(config_class)
    for f in dataclasses.fields(config_class):
        # Only flags the user gives are parsed, so that env presets apply under them; the
        # config checks their values, as it checks a preset's and a config.json's.
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"]}
        kind = field_kind(f)
        if kind is bool:
            kwargs.update(nargs="?", const=True, metavar="BOOL")
        if kind in PARSERS:
            kwargs.update(type=PARSERS[kind])
        kwargs["help"] += _choices_text(kwargs["help"], f.metadata["limits"]["choices"])
        kwargs["help"] += f" (default: {_defaults_text(f.name, f.default, presets, env)})"
        parser.add_argument(*f.metadata["flags"], **kwargs)


class HelpEnv(NamedTuple):
    """The env whose defaults ``-h`` shows."""

    env_id: str
    kind: str | None  # as fnrl.envs.env_kind says; None for an id no backend knows


# The kind of the default env, known without importing the simulators (fnrl.envs), which would
# make -h slower; tests/test_train_cli.py checks it against fnrl.envs.env_kind.
_DEFAULT_ENV_KINDS = {"CartPole-v1": "vector"}


def _help_env(env_id: str) -> HelpEnv:
    """``env_id`` and its kind; the kind of an id other than the default's imports the envs."""
    kind = _DEFAULT_ENV_KINDS.get(env_id)
    if kind is None:
        from fnrl.envs import env_kind

        try:
            kind = env_kind(env_id)
        except ValueError:  # the run refuses the id with its message; -h lists every kind
            kind = None
    return HelpEnv(env_id, kind)


def _choices_text(help: str, choices: Any) -> str:
    """``"; one of: A, B"`` for a field with choices (a registry is read now), unless its help
    quotes each of them already."""
    if choices is None:
        return ""
    names = list(choices() if callable(choices) else choices)
    if all(f"'{name}'" in help for name in names):
        return ""
    return f"; one of: {', '.join(names)}"


def _presets(config_class: type[TrainConfig]) -> dict[str, dict]:
    """Kind of env -> the defaults a run of ``config_class``'s agent gets for it."""
    return {kind: preset(kind, config_class.agent) for kind in PRESETS}


def _listed(names: list[str]) -> str:
    """``"a"``, ``"a and b"``, ``"a, b and c"``."""
    return " and ".join(filter(None, [", ".join(names[:-1]), names[-1]]))


def _words(kind: str) -> str:
    """A kind of env as -h writes it: ``"small_image"`` → ``"small image"``."""
    return kind.replace("_", " ")


def _a(kind: str) -> str:
    """``"a vector env"``, ``"an image env"``, ``"a small image env"``."""
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {_words(kind)} env"


def _defaults_text(name: str, default: object, presets: dict[str, dict], env: HelpEnv) -> str:
    """A field's default for ``env``, then the other values the presets of other kinds give it.

    E.g. ``16 for CartPole-v1, a vector env; 32 for image envs``; each kind's value when the
    kind of ``env`` is unknown (``32 for image envs; 16 for small image, vector and continuous
    envs``).
    """
    values = {kind: str(defaults.get(name, default)) for kind, defaults in presets.items()}
    by_value: dict[str, list[str]] = {}
    for kind, value in values.items():
        by_value.setdefault(value, []).append(kind)
    if len(by_value) == 1:
        return next(iter(by_value))
    first = None if env.kind is None else values[env.kind]
    texts = [] if first is None else [f"{first} for {env.env_id}, {_a(env.kind)}"]
    texts += [
        f"{value} for {_listed([_words(kind) for kind in kinds])} envs"
        for value, kinds in by_value.items()
        if value != first
    ]
    return "; ".join(texts)


def presets_epilog(
    config_class: type[TrainConfig] = TrainConfig, env: HelpEnv | None = None
) -> str:
    """What ``-h`` says about the defaults of each kind of env, for ``config_class``'s agent.

    Args:
        config_class: the run's config class.
        env: the env whose defaults the flags' help shows; None for the default env.
    """
    env = _help_env(config_class.env_id) if env is None else env
    agent = config_class.agent
    kinds = " ".join(
        f"{PRESET_SOURCES[kind][0]}: "
        + (
            ", ".join(f"{long_flag(k, config_class)} {v}" for k, v in defaults.items())
            or "the values listed for image envs"
        )
        + f", from {PRESET_SOURCES[kind][1]}"
        + (f" and {agent}'s own" if get_agent(agent).presets.get(kind) else "")
        + "."
        for kind, defaults in _presets(config_class).items()
    )
    shown = (
        f"The defaults shown first are those of {env.env_id}, {_a(env.kind)}"
        if env.kind is not None
        else f"{env.env_id} names no known env, so each kind's defaults are shown"
    )
    agents = ", ".join(AGENTS)
    return (
        f"Defaults depend on the kind of env; flags you give override them. {shown}; "
        f"`--env-id ID -h` shows another env's. {kinds} "
        f"Agents: {agents}; `--agent NAME -h` lists an agent's own flags."
    )


def make_parser(agent: str | None = None, env_id: str | None = None) -> argparse.ArgumentParser:
    """The ``fnrl.train`` argument parser, one sub-command per mode, with ``agent``'s flags.

    Args:
        agent: the agent whose settings to accept; None for each mode's default agent.
        env_id: the env whose defaults the help shows; None for each mode's default env, whose
            kind is known without importing the envs (any other id imports them).

    Raises:
        ValueError: an unknown agent.
    """
    envs: dict[str, HelpEnv] = {}

    def help_env(config_class: type[TrainConfig]) -> HelpEnv:
        name = config_class.env_id if env_id is None else env_id
        if name not in envs:  # a Gymnasium id's kind makes one env: once for every mode
            envs[name] = _help_env(name)
        return envs[name]

    top_class = agent_config_class(TrainConfig, agent or TrainConfig.agent)
    parser = CommandLineParser(
        prog="python -m fnrl.train",
        description="Train an fnrl agent. Without a mode, trains in local mode.",
        epilog=presets_epilog(top_class, help_env(top_class)),
    )
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    for name, mode in MODES.items():
        config_class = agent_config_class(mode.config_class, agent or mode.config_class.agent)
        subparser = modes.add_parser(
            name,
            help=mode.help,
            description=mode.help.capitalize() + f", agent {config_class.agent}.",
            epilog=presets_epilog(config_class, help_env(config_class)),
        )
        _add_config_flags(subparser, config_class, help_env(config_class))
    return parser


def _stored_run(run_dir: str) -> tuple[str, dict]:
    """The mode (from the latest checkpoint) and ``config.json`` of the run to resume."""
    if not run_dir.strip():
        raise ValueError(f"--resume (resume) must name a run directory, got {json.dumps(run_dir)}")
    stored = read_stored_config(run_dir)
    checkpoints = list_checkpoints(Path(run_dir).expanduser() / "checkpoints")
    if not checkpoints:
        raise ValueError(f"--resume {run_dir}: the run saved no checkpoint; start a new run")
    # The newest meta.json that reads: resume falls back past a corrupt one, with a warning.
    # None reads: resume will name the newest's fault.
    stored_mode = config_mode(stored)
    checkpoint, meta = next(_readable_metas(checkpoints), (checkpoints[-1], {"mode": stored_mode}))
    mode = meta.get("mode", "local")
    if mode != stored_mode:
        raise ValueError(
            f"--resume {run_dir}: {checkpoint.name}/meta.json says mode {mode!r}, but "
            f"config.json is a {stored_mode} run's (a corrupt meta.json?)"
        )
    return mode, stored


def _readable_metas(checkpoints: list[Path]) -> Iterator[tuple[Path, dict]]:
    """Each checkpoint whose ``meta.json`` reads and matches its checksum, newest first, with
    its meta."""
    for checkpoint in reversed(checkpoints):
        try:
            yield checkpoint, read_meta(checkpoint)
        except CheckpointError:
            continue


def _resumed_config(mode: str, run_dir: str, stored: dict, given: dict) -> TrainConfig:
    """The stored config with the flags given on the command line over it (with a warning);
    refused if a flag changes what the checkpoints were trained with (the envs, the network...).
    """
    # The run shell imports the envs and tensorboardX (seconds): here, so that -h stays fast.
    from fnrl.parallel.checkpointer import check_fixed_on_resume

    config = stored_config(
        run_dir, stored, MODES[mode].config_class, **{**given, "resume": run_dir}
    )
    check_fixed_on_resume(stored, config)
    for name, value in given.items():
        if name != "resume" and name in stored and stored[name] != value:
            print(
                f"fnrl.train: warning: {long_flag(name, type(config))} {value} overrides the "
                f"run's {stored[name]}",
                file=sys.stderr,
            )
    return config


def parse_args(argv: Sequence[str]) -> tuple[str, TrainConfig]:
    """Parses the command line into a mode and a validated config.

    The modules ``--import`` names are imported first, and with ``--resume`` those of the
    run's ``config.json`` (:func:`fnrl.plugins.import_plugins`), so that the agents and networks
    they register are valid choices and ``-h`` lists them. The flags accepted are the mode's and
    those of the agent ``--agent`` names (the mode's default agent without it; the run's when
    resuming). With ``--resume RUN_DIR`` the config is the run's ``config.json`` with the flags
    given over it (each one that changes a stored value is reported on stderr; ``--import``
    adds to the run's modules), and the mode is the run's.
    """
    argv = list(argv)
    pre = CommandLineParser(prog="python -m fnrl.train", add_help=False)
    pre.add_argument("--resume")
    pre.add_argument("--agent")
    pre.add_argument("--env-id")
    pre.add_argument("--import", dest="imports", default="")
    pre.add_argument("-h", "--help", action="store_true")
    known = pre.parse_known_args(argv)[0]
    default_mode, stored, agent = "local", None, known.agent
    try:
        import_plugins(known.imports)
        if known.resume is not None:
            default_mode, stored = _stored_run(known.resume)  # imports the run's modules
    except ValueError as e:
        pre.error(str(e))
    if stored is not None:
        agent = agent or stored.get("agent")
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [default_mode, *argv]
    try:
        # -h shows the defaults of the env given (or resumed); only then is its kind needed.
        help_env = (known.env_id or (stored or {}).get("env_id")) if known.help else None
        parser = make_parser(agent, help_env)
    except ValueError as e:
        pre.error(str(e))
    args = vars(parser.parse_args(argv))
    mode = args.pop("mode")
    if stored is not None and "imports" in args:  # the run keeps needing its own modules
        modules = plugin_modules(stored.get("imports", "")) + plugin_modules(args["imports"])
        args["imports"] = ",".join(dict.fromkeys(modules))
    try:
        if stored is not None:
            if mode != default_mode:
                raise ValueError(
                    f"--resume {known.resume}: the run was trained in {default_mode} mode, "
                    f"not {mode}"
                )
            config = _resumed_config(mode, known.resume, stored, args)
        else:
            config = make_config(MODES[mode].config_class, **args)
    except ValueError as e:
        parser.error(str(e))
    _check_wandb(parser, config)
    return mode, config.effective()


def _check_wandb(parser: argparse.ArgumentParser, config: TrainConfig) -> None:
    """Ends the command in one line, exit 2, when ``config`` logs to W&B and wandb does not
    import: before anything is written, rather than once the run directory is."""
    if not config.wandb_project:
        return
    try:
        import wandb  # noqa: F401  (imported once more by the run, from sys.modules)
    except ImportError:
        hint = 'pip install -e ".[wandb]"'
        parser.exit(2, f"fnrl.train: error: --wandb-project needs wandb: {hint}\n")


def _stop_code(signals: list[int]) -> int:
    """The exit code of a stopped run: 128 + the signal that stopped it (130 for a peer's)."""
    return 128 + (signals[0] if signals else signal.SIGINT)


def _run(
    mode: str,
    config: TrainConfig,
    stop: threading.Event,
    signals: list[int],
    hooks: RunHooks | None,
) -> int:
    """Trains in ``mode``; 0 when the budget is spent, :func:`_stop_code` when stopped."""
    # tensorboardX takes seconds to import: here, so that -h stays fast.
    from fnrl.logging import RECENT_EPISODES
    from fnrl.parallel.runlog import console

    use_compilation_cache(config.compilation_cache)
    module, function = MODES[mode].runner.split(":")
    result = getattr(importlib.import_module(module), function)(config, stop=stop, hooks=hooks)
    if result.run_dir is None:  # a process that writes nothing (towered, not 0) says nothing
        return _stop_code(signals) if stop.is_set() else 0
    episodes = (
        f"recent return {result.recent_return:.2f} (mean of the last {RECENT_EPISODES} games)"
        if math.isfinite(result.recent_return)
        else "no episode finished"
    )
    console(
        f"{'stopped' if result.interrupted else 'finished'}: {result.env_steps} steps, "
        f"{result.frames} frames in {result.seconds:.1f}s ({result.frames_per_second:.0f} "
        f"frames/s, bound by {result.bound}); {episodes}; checkpoint {result.last_checkpoint}"
    )
    path = _plot(result.run_dir)
    if path is not None:
        console(f"learning curves: {path}")
    if config.profile:
        total = sum(result.phase_seconds.values())
        for phase, seconds in sorted(result.phase_seconds.items(), key=lambda kv: -kv[1]):
            console(f"  {phase:12s} {seconds:8.2f}s {100 * seconds / total:5.1f}%")
    return _stop_code(signals) if result.interrupted else 0


def _plot(run_dir: Path) -> Path | None:
    """Writes the run's learning curves (``fnrl.plot``) and returns where (None: no game to
    draw); a failure only warns: the run's data is saved."""
    try:
        return write_run_plot(run_dir)
    except (ValueError, OSError) as e:
        print(f"fnrl.train: warning: no learning-curve plot: {e}", file=sys.stderr)
        return None


def main(argv: Sequence[str] | None = None, *, hooks: RunHooks | None = None) -> int:
    """Entry point: parses flags, trains, and turns errors into one readable line.

    Args:
        argv: the command line's arguments; None: ``sys.argv[1:]``.
        hooks: for a script that trains through the command line: its env factory and a
            callback after each update (``fnrl.parallel.RunHooks``); None: none.
    """
    try:
        mode, config = parse_args(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:  # before anything is written
        print("fnrl.train: interrupted", file=sys.stderr)
        return 130
    stop = threading.Event()
    signals: list[int] = []  # those that asked this process to stop
    timed_out = threading.Event()
    overdue = threading.Timer(config.stop_timeout, _interrupt_main_thread, (signals, timed_out))
    overdue.daemon = True

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping at the next update and saving a checkpoint...", file=sys.stderr)
        signals.append(signum)
        stop.set()
        overdue.start()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        return _run(mode, config, stop, signals, hooks)
    except ConfigError as e:  # found once the run started, e.g. an env's first observation
        print(f"fnrl.train: error: {e}", file=sys.stderr)
        _exit_now_if_peers_are_gone(2)
        return 2
    except (ValueError, OSError, RuntimeError) as e:
        print(f"fnrl.train: error: {e}", file=sys.stderr)
        _exit_now_if_peers_are_gone(1)
        return 1
    except KeyboardInterrupt:
        if timed_out.is_set():
            print(
                "fnrl.train: stopped without a final checkpoint: the run did not reach its next "
                f"update within --stop-timeout {config.stop_timeout:g} s of the stop request "
                "(an env hangs?); its earlier checkpoints are kept",
                file=sys.stderr,
            )
        else:
            print("fnrl.train: interrupted", file=sys.stderr)
        code = _stop_code(signals)
        _exit_now_if_peers_are_gone(code)
        return code
    finally:
        overdue.cancel()


def _interrupt_main_thread(signals: list[int], timed_out: threading.Event) -> None:
    """Sets ``timed_out`` and delivers the stop signal again to the main thread, whose handler
    then raises ``KeyboardInterrupt`` wherever it is (a blocking call returns EINTR first)."""
    timed_out.set()
    signal.pthread_kill(threading.main_thread().ident, signals[0])


def _exit_now_if_peers_are_gone(code: int) -> None:
    """Leaves a failed multi-process run at once.

    JAX's distributed runtime waits at exit for every process to shut down together; when a
    peer has died that wait ends in an abort and a page of C++ logs after the one-line error.
    """
    import jax

    if jax.distributed.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
