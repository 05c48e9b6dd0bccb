"""Plug-ins: the user modules a run imports so that its own agents, networks and envs resolve.

A module registers its plug-ins when it is imported (``fnrl.agents.register_agent``,
``fnrl.networks.register_network_body`` and friends). A run names such modules with
``--import MODULES`` (the config's ``imports``, stored in ``config.json``); every command that
reads a run directory (``fnrl.evaluate``, ``fnrl.render``, ``fnrl.train --resume``) imports them
again through :func:`fnrl.config.read_stored_config`, so a run trained with a plug-in reopens
with no extra flag. :func:`import_user_module` imports such a module, and the module of an
``--env-id module:Id``, so that any failure of its import is one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

# Added to the error of an unknown agent, trunk or body name.
UNKNOWN_NAME_HINT = "if it is a plug-in, pass --import MODULE, the module that registers it"


def plugin_modules(modules: str | Iterable[str]) -> list[str]:
    """The module names of a comma-separated ``--import`` value (or of names), blanks dropped."""
    names = modules.split(",") if isinstance(modules, str) else modules
    return [name.strip() for name in names if name.strip()]


def import_plugins(modules: str | Iterable[str]) -> None:
    """Imports each module, in order, so that the plug-ins it registers can be named.

    A module already imported is not run again (Python's module cache), so importing the same
    modules twice registers nothing twice.

    Args:
        modules: module names, comma-separated as ``--import`` takes them, or a list of them.

    Raises:
        ValueError: a module cannot be imported, with one line naming it and the cause:
            ``--import my_mod: cannot import it: No module named 'my_mod' (is its directory on
            PYTHONPATH or the current directory?)``.
    """
    for name in plugin_modules(modules):
        import_user_module(name, f"--import {name}: cannot import it")


def import_user_module(name: str, context: str) -> None:
    """Imports a user's module; any way its import fails is a ``ValueError`` of one line.

    The commands import users' modules for ``--import`` and for the ``module:Id`` form of
    ``--env-id``; whatever such a module does on import (a missing dependency, a syntax error,
    an exception, ``sys.exit``) ends the command with one line that names it, never with a
    traceback or a silent exit. ``KeyboardInterrupt`` passes: Ctrl-C still stops the command.

    Args:
        name: the module's name.
        context: the start of the message, naming what imports it and why, e.g.
            ``"--import my_mod: cannot import it"``.

    Raises:
        ValueError: ``{context}: {cause}`` on one line, e.g. ``--import my_mod: cannot import
            it: No module named 'my_mod' (is its directory on PYTHONPATH or the current
            directory?)``.
    """
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        # The hint fits only when the module itself (or its package) is missing, not when
        # it is found but imports a missing dependency.
        missing = e.name is not None and (name == e.name or name.startswith(f"{e.name}."))
        hint = " (is its directory on PYTHONPATH or the current directory?)" if missing else ""
        raise ValueError(f"{context}: {e}{hint}") from e
    except SystemExit as e:  # would end the command with the module's code and no word why
        raise ValueError(f"{context}: it called sys.exit({e.code!r}) on import") from e
    except Exception as e:  # the module's own code failed: name it, the cause on one line
        raise ValueError(f"{context}: {error_line(e)}") from e


def error_line(error: BaseException) -> str:
    """``"RuntimeError: the cause"``: an exception from a user's code, its message on one line."""
    return f"{type(error).__name__}: {' '.join(str(error).split()) or 'no message'}"
