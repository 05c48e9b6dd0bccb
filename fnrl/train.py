"""Command line: ``python -m fnrl.train [MODE] [flags]``.

Modes (``MODES``):
    local   one device, synchronous A2C (adept's Local); the default when no mode is given.

Every flag of the mode's config (``fnrl.config.TrainConfig`` or its subclass) is accepted, with
adept's names, short forms and defaults; booleans take adept's forms (``--normalize false``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import NamedTuple

from fnrl.config import PRESETS, TrainConfig, long_flag, make_config


class Mode(NamedTuple):
    """An execution mode of the command line."""

    config_class: type[TrainConfig]  # its flags
    runner: str  # "module:function" taking (config, *, stop) and returning a RunResult
    help: str


# Runners are imported when run, so that --help stays fast.
MODES: dict[str, Mode] = {
    "local": Mode(TrainConfig, "fnrl.parallel.local:train_local", "one device, synchronous A2C"),
}

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def parse_bool(text: str) -> bool:
    """adept's boolean flag values: true/false, yes/no, on/off, 1/0 (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean (true/false), got {text!r}")


def parse_count(text: str) -> int:
    """An integer that may be written as a float, like adept's ``-mts 10e6``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _add_config_flags(parser: argparse.ArgumentParser, config_class: type[TrainConfig]) -> None:
    for f in dataclasses.fields(config_class):
        # Only flags the user gives are parsed, so that env presets apply under them.
        kwargs = {"dest": f.name, "default": argparse.SUPPRESS, "help": f.metadata["help"]}
        if f.type in ("bool", bool):
            kwargs.update(type=parse_bool, nargs="?", const=True, metavar="BOOL")
        elif f.type in ("int", int):
            kwargs.update(type=parse_count)
        elif f.type in ("float", float):
            kwargs.update(type=float)
        kwargs["help"] += f" (default: {f.default})"
        parser.add_argument(*f.metadata["flags"], **kwargs)


def make_parser() -> argparse.ArgumentParser:
    """The ``fnrl.train`` argument parser, one sub-command per mode."""
    presets = "; ".join(
        f"{env_id}: " + ", ".join(f"{long_flag(k)} {v}" for k, v in preset.items())
        for env_id, preset in PRESETS.items()
    )
    parser = argparse.ArgumentParser(
        prog="python -m fnrl.train",
        description="Train an fnrl agent. Without a mode, trains in local mode.",
        epilog=f"Defaults are adept's. Env presets, under the flags you give: {presets}.",
    )
    modes = parser.add_subparsers(dest="mode", metavar="MODE")
    for name, mode in MODES.items():
        subparser = modes.add_parser(
            name, help=mode.help, description=mode.help.capitalize() + ".", epilog=parser.epilog
        )
        _add_config_flags(subparser, mode.config_class)
    return parser


def parse_args(argv: Sequence[str]) -> tuple[str, TrainConfig]:
    """Parses the command line into a mode and a validated config."""
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["local", *argv]
    parser = make_parser()
    args = vars(parser.parse_args(argv))
    mode = args.pop("mode")
    try:
        config = make_config(MODES[mode].config_class, **args)
    except ValueError as e:
        parser.error(str(e))
    return mode, config.effective()


def _run(mode: str, config: TrainConfig, stop: threading.Event) -> int:
    module, function = MODES[mode].runner.split(":")
    result = getattr(importlib.import_module(module), function)(config, stop=stop)
    returns = result.episode_returns[-20:]
    mean = sum(returns) / len(returns) if returns else float("nan")
    print(
        f"{'stopped' if result.interrupted else 'finished'}: {result.env_steps} steps, "
        f"{result.frames} frames in {result.seconds:.1f}s ({result.frames_per_second:.0f} "
        f"frames/s, bound by {result.bound}); mean return of the last {len(returns)} "
        f"episodes {mean:.2f}; checkpoint {result.last_checkpoint}",
        flush=True,
    )
    if config.profile:
        total = sum(result.phase_seconds.values())
        for phase, seconds in sorted(result.phase_seconds.items(), key=lambda kv: -kv[1]):
            print(f"  {phase:12s} {seconds:8.2f}s {100 * seconds / total:5.1f}%")
    return 130 if result.interrupted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parses flags, trains, and turns errors into one readable line."""
    mode, config = parse_args(sys.argv[1:] if argv is None else argv)
    stop = threading.Event()

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping at the next update and saving a checkpoint...", file=sys.stderr)
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        return _run(mode, config, stop)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"fnrl.train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fnrl.train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
