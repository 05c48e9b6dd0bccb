"""A user's env that is broken in some way ends every command with one line, never a traceback.

The envs live in modules written to a temporary directory, as a user's module on ``PYTHONPATH``
would be, and are named with ``--env-id module:Id``.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fnrl import evaluate, render, train

# Module name -> source. Each name is this file's own, so that no other test imports it.
MODULES = {
    "fnrl_faults_raises": 'raise RuntimeError("the module failed")\n',
    "fnrl_faults_syntax": "def broken(:\n    pass\n",
    "fnrl_faults_exits": "import sys\n\nsys.exit(3)\n",
    "fnrl_faults_envs": textwrap.dedent(
        """
        import gymnasium
        import numpy as np


        class Fine(gymnasium.Env):
            observation_space = gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32)
            action_space = gymnasium.spaces.Discrete(2)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                return np.zeros(3, np.float32), {}

            def step(self, action):
                return np.zeros(3, np.float32), 0.0, False, False, {}


        class FailsToMake(Fine):
            def __init__(self):
                raise RuntimeError("no simulator here")


        gymnasium.register("FailsToMake-v0", entry_point=FailsToMake)
        """
    ),
}
ENVS = "fnrl_faults_envs"
FAILING_MODULES = ["fnrl_faults_raises", "fnrl_faults_syntax", "fnrl_faults_exits"]
TINY = ("-mts", "64", "-n", "2", "--exp-length", "8")


@pytest.fixture(scope="module")
def modules_dir(tmp_path_factory):
    """A directory holding :data:`MODULES`, on ``sys.path`` for this module's tests."""
    path = tmp_path_factory.mktemp("user_modules")
    for name, source in MODULES.items():
        (path / f"{name}.py").write_text(source)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(path))
        yield path


def _import_failure(module):
    """What a command says of ``module:Env-v0`` when ``module`` fails on import."""
    cause = {
        "fnrl_faults_raises": "RuntimeError: the module failed",
        "fnrl_faults_syntax": "SyntaxError: invalid syntax (fnrl_faults_syntax.py, line 1)",
        "fnrl_faults_exits": "it called sys.exit(3) on import",
    }[module]
    return (
        f"--env-id '{module}:Env-v0': cannot import the module '{module}' that registers "
        f"'Env-v0': {cause}"
    )


def _train_error(capsys, env_id, tmp_path):
    """The exit code and stderr of ``fnrl.train --env-id env_id``, which must fail."""
    with pytest.raises(SystemExit) as info:
        train.main(["--env-id", env_id, *TINY, "--log-dir", str(tmp_path)])
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "module", ["fnrl_faults_raises", "fnrl_faults_syntax", "fnrl_faults_exits"]
)
def test_an_env_module_that_fails_on_import_is_one_line_and_exit_code_2(
    modules_dir, capsys, tmp_path, module
):
    code, err = _train_error(capsys, f"{module}:Env-v0", tmp_path)
    assert (code, err) == (2, f"fnrl.train: error: {_import_failure(module)} (see -h)\n")


@pytest.mark.parametrize("command", [evaluate, render], ids=["evaluate", "render"])
@pytest.mark.parametrize(
    "module", ["fnrl_faults_raises", "fnrl_faults_syntax", "fnrl_faults_exits"]
)
def test_a_run_whose_env_module_fails_on_import_reopens_to_one_line(
    modules_dir, capsys, tmp_path, command, module
):
    """evaluate and render import the module of the run's env id again, from ``config.json``."""
    (tmp_path / "config.json").write_text(json.dumps({"env_id": f"{module}:Env-v0"}))
    assert command.main([str(tmp_path)]) == 1
    name = command.__name__
    assert capsys.readouterr().err == f"{name}: error: {_import_failure(module)}\n"


def test_an_env_module_that_exits_on_import_ends_the_process_with_one_line(modules_dir):
    """``sys.exit(3)`` on import ended the command with code 3 and not a word."""
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "--env-id", "fnrl_faults_exits:Env-v0", *TINY],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(modules_dir), *sys.path])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    expected = f"fnrl.train: error: {_import_failure('fnrl_faults_exits')} (see -h)\n"
    assert (result.returncode, result.stderr, result.stdout) == (2, expected, "")


def test_an_env_whose_constructor_raises_is_one_line_naming_it(modules_dir, capsys, tmp_path):
    code, err = _train_error(capsys, f"{ENVS}:FailsToMake-v0", tmp_path)
    expected = "cannot make the env 'FailsToMake-v0': RuntimeError: no simulator here"
    assert (code, err) == (2, f"fnrl.train: error: {expected} (see -h)\n")


@pytest.mark.parametrize(
    "env_id, message",
    [
        (f"{ENVS}:", f"--env-id '{ENVS}:': expected MODULE:ID"),
        (":CartPole-v1", "--env-id ':CartPole-v1': expected MODULE:ID"),
        (
            f"{ENVS}:NoSuchEnv-v0",
            f"Unknown env id 'NoSuchEnv-v0' (its module '{ENVS}' was imported and registered "
            "no such id)",
        ),
    ],
    ids=["no-id", "no-module", "not-registered"],
)
def test_a_module_id_missing_a_part_or_its_env_says_which(
    modules_dir, capsys, tmp_path, env_id, message
):
    code, err = _train_error(capsys, env_id, tmp_path)
    assert code == 2 and err.startswith(f"fnrl.train: error: {message}"), err
    assert len(err.splitlines()) == 1, err
