"""A user's network body loaded with ``--import``: it trains, and the run reopens in every command.

The run is trained from the repository's root, as ``examples/plugin_body.py`` documents; the
commands that reopen it run from another directory with the repository on ``PYTHONPATH``, and
find the plug-in through the ``imports`` of the run's ``config.json`` alone.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest

from fnrl import evaluate, render, train
from fnrl.networks import NETWORK_BODIES
from fnrl.plugins import UNKNOWN_NAME_HINT, import_plugins

REPO = Path(__file__).parents[1]
PLUGIN = "examples.plugin_body"
TINY = ("-n", "2", "--exp-length", "5", "--epoch-len", "20", "--eval-every", "0")
MISSING = (
    "--import no_such_plugin: cannot import it: No module named 'no_such_plugin' "
    "(is its directory on PYTHONPATH or the current directory?)"
)


def _start(*args: str, cwd: Path) -> subprocess.Popen:
    """``python -m ARGS`` in a new process, with the repository on ``PYTHONPATH``."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> str:
    """The stdout of ``process``, which must exit with code 0."""
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def test_a_body_imported_with_import_trains_and_its_run_reopens_in_every_command(tmp_path):
    logs = tmp_path / "logs"
    trained = _start(
        "fnrl.train", "--import", PLUGIN, "-nb", "SB3Mlp", *TINY, "-mts", "40",
        "--log-dir", str(logs), cwd=REPO,
    )  # fmt: skip
    _finish(trained)
    (run_dir,) = (logs / "CartPole-v1").iterdir()
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["imports"], config["network_body"]) == (PLUGIN, "SB3Mlp")

    # No --import from here on, and a directory the plug-in is not in: config.json says it all.
    # The three processes read step_40 together (resume only adds later checkpoints).
    gif = tmp_path / "play.gif"
    run = str(run_dir)
    evaluate_flags = ("--checkpoint", "40", "--episodes", "2", "--nb-env", "2")
    render_flags = ("--checkpoint", "40", "--episodes", "1", "--max-steps", "3", "--out", str(gif))
    reopened = [
        _start("fnrl.evaluate", run, *evaluate_flags, cwd=tmp_path),
        _start("fnrl.render", run, *render_flags, cwd=tmp_path),
        _start("fnrl.train", "--resume", run, "-mts", "60", cwd=tmp_path),
    ]
    try:
        evaluated, rendered, resumed = (_finish(p) for p in reopened)
    finally:  # after a failure, the others are stopped rather than left running
        for process in reopened:
            process.kill()
            process.communicate()

    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert [(r["checkpoint"], r["episodes"]) for r in results["checkpoints"]] == [("step_40", 2)]
    assert "2 greedy episodes" in evaluated
    assert "episode 0:" in rendered and len(iio.imread(gif)) >= 1
    assert "finished: 60 steps" in resumed
    assert (run_dir / "checkpoints" / "step_60").is_dir()
    assert json.loads((run_dir / "config.json").read_text())["imports"] == PLUGIN


@pytest.fixture
def repo_on_path(monkeypatch):
    """The repository importable in this process, as ``python -m`` from its root makes it."""
    monkeypatch.syspath_prepend(str(REPO))


def test_import_makes_the_plugin_body_a_choice_that_help_lists(repo_on_path, capsys):
    _, config = train.parse_args(["--import", PLUGIN, "-nb", "SB3Mlp"])
    assert (config.network_body, config.imports) == ("SB3Mlp", PLUGIN)
    with pytest.raises(SystemExit) as info:
        train.main(["--import", PLUGIN, "-h"])
    assert info.value.code == 0
    assert "SB3Mlp" in capsys.readouterr().out


def test_importing_a_plugin_twice_registers_it_once(repo_on_path):
    import_plugins(f"{PLUGIN}, {PLUGIN}")
    body = NETWORK_BODIES["SB3Mlp"]
    import_plugins([PLUGIN])
    assert NETWORK_BODIES["SB3Mlp"] is body


@pytest.mark.parametrize(
    "command, argv",
    [
        (train, ["--import", "no_such_plugin", "-nb", "Linear"]),
        (evaluate, ["RUN", "--import", "no_such_plugin"]),
        (render, ["RUN", "--import", "no_such_plugin"]),
    ],
    ids=["train", "evaluate", "render"],
)
def test_a_module_that_cannot_be_imported_is_one_line_and_exit_code_2(capsys, command, argv):
    with pytest.raises(SystemExit) as info:
        command.main(argv)
    name = command.__name__
    assert (info.value.code, capsys.readouterr().err) == (2, f"{name}: error: {MISSING} (see -h)\n")


def test_a_module_that_exits_on_import_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    """``sys.exit(3)`` in a plug-in's import ended the command with code 3 and not a word."""
    (tmp_path / "exiting_plugin.py").write_text("import sys\n\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as info:
        train.main(["--import", "exiting_plugin", "-nb", "Linear"])
    expected = "--import exiting_plugin: cannot import it: it called sys.exit(3) on import"
    assert (info.value.code, capsys.readouterr().err) == (
        2,
        f"fnrl.train: error: {expected} (see -h)\n",
    )


def test_a_stored_module_that_cannot_be_imported_names_config_json(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"imports": "no_such_plugin"}))
    assert evaluate.main([str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"fnrl.evaluate: error: config.json of {tmp_path}: {MISSING}\n"
    )


def test_an_unknown_body_suggests_import(capsys):
    with pytest.raises(SystemExit) as info:
        train.main(["-nb", "NoSuchBody"])
    assert info.value.code == 2
    assert UNKNOWN_NAME_HINT in capsys.readouterr().err
