"""The argparse helpers that fnrl's command lines share.

:class:`CommandLineParser` prints each error as one line; :func:`setting_type` parses a flag and
checks it as a config field is checked (:func:`fnrl.settings.value_problem`); the ``add_*_flag``
functions add the flags that ``fnrl.evaluate`` and ``fnrl.render`` share;
:func:`load_run_config` reads the config of a run directory, as every command that opens one does;
and :func:`use_compilation_cache` keeps their compiled programs for the next command.
"""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from fnrl.config import MAX_SEED, TrainConfig, read_stored_config, stored_config
from fnrl.plugins import import_plugins
from fnrl.settings import value_problem


class CommandLineParser(argparse.ArgumentParser):
    """argparse's parser, with each error one line: ``fnrl.train: error: MESSAGE (see -h)``.

    argparse prints the whole usage first, some twenty lines for ``fnrl.train``, which hide the
    line that matters. Errors exit with code 2, as argparse's.
    """

    def error(self, message: str) -> NoReturn:
        """Prints ``message`` as one line on stderr and exits with code 2."""
        command = self.prog.removeprefix("python -m ").split()[0]  # also for sub-commands
        self.exit(2, f"{command}: error: {message} (see -h)\n")


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


def parse_number(text: str) -> float:
    """A number; ``nan`` and ``inf`` parse too, so that the config's check names their field."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def parse_count(text: str) -> int:
    """An integer that may be written as a float, like adept's ``-mts 10e6``."""
    value = parse_number(text)
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


# The parser of each kind of setting (fnrl.settings.field_kind) but strings, which need none.
PARSERS: dict[type, Callable[[str], Any]] = {
    bool: parse_bool,
    int: parse_count,
    float: parse_number,
}


def setting_type(kind: type, **limits: Any) -> Callable[[str], Any]:
    """An argparse ``type``: the text parsed as ``kind`` and checked as a config field is.

    For the flags of ``fnrl.evaluate`` and ``fnrl.render``, which are no config's fields.

    Args:
        kind: ``bool``, ``int`` or ``float``.
        **limits: as :func:`fnrl.settings.setting` takes them.
    """

    def parse(text: str) -> Any:
        value = PARSERS[kind](text)
        problem = value_problem(value, kind, **limits)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def add_greedy_flag(parser: argparse.ArgumentParser) -> None:
    """``--greedy [BOOL]``: argmax actions by default (adept's deterministic evaluation)."""
    parser.add_argument(
        "--greedy",
        type=parse_bool,
        nargs="?",
        const=True,
        default=True,
        metavar="BOOL",
        help="argmax actions (default, adept's deterministic evaluation); false samples",
    )


def add_episodes_flag(parser: argparse.ArgumentParser, default: int, help: str) -> None:
    """``--episodes N``, at least 1."""
    parser.add_argument(
        "--episodes", type=setting_type(int, at_least=1), default=default, help=help
    )


def add_seed_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """``--seed N``, in the range of a run's seed; None (the run's seed + offset) if not given."""
    parser.add_argument(
        "--seed", type=setting_type(int, at_least=0, at_most=MAX_SEED), default=None, help=help
    )


def add_import_flag(parser: argparse.ArgumentParser) -> None:
    """``--import MODULES``: plug-in modules to import before the run is read."""
    parser.add_argument(
        "--import",
        dest="imports",
        default="",
        metavar="MODULES",
        help="comma-separated Python modules to import first, which register the run's plug-ins "
        "(agents, networks, envs); those of the run's config.json are imported anyway",
    )


def import_flag_modules(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Imports the ``--import`` modules; one that cannot be imported is a flag error (exit 2)."""
    try:
        import_plugins(args.imports)
    except ValueError as e:
        parser.error(str(e))


# Past this the least recently used programs are removed; JAX then also locks the cache's
# files, which several processes of a run (or several runs) share.
COMPILATION_CACHE_BYTES = 2 << 30


def use_compilation_cache(enabled: bool) -> Path | None:
    """Turns on JAX's persistent compilation cache for this process, before it compiles.

    Every compiled program is kept (JAX's default keeps only those that took a second): a
    CartPole run of 2,000 steps took 17-20 s instead of 31 s on 2 CPU cores, the second time.
    A cache directory the user set (``JAX_COMPILATION_CACHE_DIR``) is left as it is.

    Returns:
        The cache directory, or None when ``enabled`` is False, the user set one, or it cannot
        be made.
    """
    import jax

    if not enabled or jax.config.jax_compilation_cache_dir is not None:
        return None
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    directory = base / "fnrl" / "jax"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: the run compiles as without the cache
        return None
    # The cache is a convenience: a full disk is the run's own writes to report.
    warnings.filterwarnings("ignore", "Error (reading|writing) persistent compilation cache")
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
    return directory


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The config of a run, from its ``config.json``: the run's and its agent's fields.

    Mode-specific fields are ignored; see :func:`fnrl.config.stored_config`.

    Raises:
        ValueError: no readable ``config.json`` in ``run_dir``.
        ConfigError: a stored value that does not fit its field.
    """
    return stored_config(run_dir, read_stored_config(run_dir))
