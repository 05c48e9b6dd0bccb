"""A user's env that is broken in some way ends every command with one line, never a traceback.

The envs live in modules written to a temporary directory, as a user's module on ``PYTHONPATH``
would be, and are named with ``--env-id module:Id``.
"""

import importlib
import json
import os
import subprocess
import sys
import textwrap
import warnings

import gymnasium
import numpy as np
import pytest

from fnrl import evaluate, render, train
from fnrl.envs import EnvOutputError, check_observation, make_env

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


        class WrongShape(Fine):
            def reset(self, *, seed=None, options=None):
                return np.zeros(5, np.float32), {}


        class StringObservation(Fine):
            def reset(self, *, seed=None, options=None):
                return "hello", {}


        class MissingKey(Fine):
            observation_space = gymnasium.spaces.Dict(
                {
                    "position": gymnasium.spaces.Box(-1.0, 1.0, (3,), np.float32),
                    "goal": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
                }
            )

            def reset(self, *, seed=None, options=None):
                return {"position": np.zeros(3, np.float32)}, {}


        class WrongOnStep(Fine):
            def step(self, action):
                return np.zeros((3, 1), np.float32), 0.0, False, False, {}


        class FloatImage(Fine):
            observation_space = gymnasium.spaces.Box(0, 255, (8, 8, 1), np.uint8)

            def reset(self, *, seed=None, options=None):
                return np.zeros((8, 8, 1)), {}


        class NoInfo(Fine):
            def reset(self, *, seed=None, options=None):
                return np.zeros(3, np.float32)


        class Float64(Fine):
            def reset(self, *, seed=None, options=None):
                return np.full(3, 0.5), {}

            def step(self, action):
                return np.full(3, 0.5), 0.0, False, False, {}


        for env in (
            FailsToMake, WrongShape, StringObservation, MissingKey, WrongOnStep, FloatImage,
            NoInfo, Float64,
        ):
            gymnasium.register(f"{env.__name__}-v0", entry_point=env)
        """
    ),
    # gym < 0.22's API, registered with the old gym package.
    "fnrl_faults_gym_envs": textwrap.dedent(
        """
        import gym
        import numpy as np


        class StringObservation(gym.Env):
            observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
            action_space = gym.spaces.Discrete(2)

            def seed(self, seed=None):
                pass

            def reset(self):
                return "hello"

            def step(self, action):
                return "hello", 0.0, False, {}


        gym.register("GymStringObservation-v0", entry_point=StringObservation)
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


def _first_steps(env_id):
    """Makes 2 envs of ``env_id``, resets them and steps them once."""
    env = make_env(env_id, 2, seed=0)
    try:
        env.reset()
        env.step({name: np.zeros(2, np.int32) for name in env.spec.actions})
    finally:
        env.close()


DECLARED = "where its observation space declares"


@pytest.mark.parametrize(
    "env_id, message",
    [
        (
            "WrongShape-v0",  # registered, named without its module
            f"reset() returned observation 'obs' as float32 values of shape (5,), {DECLARED} "
            "float32 values of shape (3,)",
        ),
        (
            f"{ENVS}:StringObservation-v0",
            f"reset() returned observation 'obs' as str 'hello', {DECLARED} float32 values of "
            "shape (3,)",
        ),
        (
            f"{ENVS}:MissingKey-v0",
            "reset() returned an observation without the key 'goal', which its Dict observation "
            "space declares (it has 'position')",
        ),
        (
            f"{ENVS}:WrongOnStep-v0",
            f"step() returned observation 'obs' as float32 values of shape (3, 1), {DECLARED} "
            "float32 values of shape (3,)",
        ),
        (
            f"{ENVS}:FloatImage-v0",
            f"reset() returned observation 'screen' as float64 values of shape (8, 8, 1), "
            f"{DECLARED} uint8 values of shape (8, 8, 1)",
        ),
        (
            f"{ENVS}:NoInfo-v0",
            "reset() returned float32 values of shape (3,), not Gymnasium's (obs, info)",
        ),
    ],
    ids=["wrong-shape", "string", "missing-key", "wrong-on-step", "float-image", "no-info"],
)
def test_an_observation_its_space_rules_out_is_named_on_the_first_steps(
    modules_dir, env_id, message
):
    importlib.import_module(ENVS)  # registers the ids, for the one given without its module
    with pytest.raises(EnvOutputError) as error:
        _first_steps(env_id)
    assert str(error.value) == f"env {env_id.split(':')[-1]!r}: {message}"


def test_an_old_gym_env_returning_a_string_is_named_on_its_first_reset(modules_dir):
    pytest.importorskip("gym")
    with pytest.raises(EnvOutputError) as error:
        _first_steps("fnrl_faults_gym_envs:GymStringObservation-v0")
    assert str(error.value) == (
        "env 'GymStringObservation-v0': reset() returned observation 'obs' as str 'hello', "
        f"{DECLARED} float32 values of shape (3,)"
    )


def test_float64_where_float32_is_declared_is_cast_without_a_warning(modules_dir):
    """Not a mismatch: the values fit; Gymnasium's env checker warned on every run."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = make_env(f"{ENVS}:Float64-v0", 2, seed=0)
        try:
            first = env.reset()
            later = env.step({"action": np.zeros(2, np.int32)})
        finally:
            env.close()
    for step in (first, later):
        assert step.obs["obs"].dtype == np.float32
        np.testing.assert_array_equal(step.obs["obs"], np.full((2, 3), 0.5, np.float32))


def test_training_on_an_env_with_string_observations_is_one_line_and_exit_code_2(
    modules_dir, tmp_path
):
    result = subprocess.run(
        [
            sys.executable, "-m", "fnrl.train", "--env-id", f"{ENVS}:StringObservation-v0",
            *TINY, "--log-dir", str(tmp_path),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(modules_dir), *sys.path])},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    expected = (
        "fnrl.train: error: env 'StringObservation-v0': reset() returned observation 'obs' as "
        f"str 'hello', {DECLARED} float32 values of shape (3,)\n"
    )
    assert (result.returncode, result.stderr) == (2, expected)


@pytest.mark.parametrize("mode", ["local", "towered", "impala"])
def test_every_mode_ends_on_string_observations_with_one_line_and_exit_code_2(
    modules_dir, capsys, tmp_path, mode
):
    """IMPALA's actors once passed it on with their traceback."""
    env_id = f"{ENVS}:StringObservation-v0"
    assert train.main([mode, "--env-id", env_id, *TINY, "--log-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "fnrl.train: error: env 'StringObservation-v0': reset() returned observation 'obs' as "
        f"str 'hello', {DECLARED} float32 values of shape (3,)\n"
    )


_BOX = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
_PAIR = gymnasium.spaces.Tuple([gymnasium.spaces.Discrete(3, start=1), _BOX])


@pytest.mark.parametrize(
    "space, observation",
    [
        (_BOX, [0.5, 0.5]),  # a list of Python floats
        (gymnasium.spaces.Discrete(3, start=1), 3),
        (gymnasium.spaces.MultiBinary(2), np.array([True, False])),
        (_PAIR, [np.int64(1), np.zeros(2, np.float64)]),  # a list for a Tuple
        (gymnasium.spaces.Dict({"a": _BOX}), {"a": np.zeros(2), "extra": "ignored"}),
    ],
    ids=["list", "discrete", "bool-multibinary", "tuple-as-list", "dict-extra-key"],
)
def test_observations_fnrl_can_convert_pass_the_check(space, observation):
    check_observation(space, observation, env_id="Env-v0", source="reset()")


@pytest.mark.parametrize(
    "space, observation, message",
    [
        (
            gymnasium.spaces.Discrete(3, start=1),
            0,
            "observation 'obs' as the int64 0, where its observation space declares an integer "
            "in [1, 4)",
        ),
        (
            gymnasium.spaces.MultiBinary(2),
            np.array([0.0, 1.0]),
            "observation 'obs' as float64 values of shape (2,), where its observation space "
            "declares 0s and 1s of shape (2,)",
        ),
        (
            _PAIR,
            (1,),
            "the observation int64 values of shape (1,), where its Tuple observation space "
            "declares 2 entries",
        ),
        (
            gymnasium.spaces.Dict({"a": _BOX}),
            np.zeros(2),
            "the observation float64 values of shape (2,), where its Dict observation space "
            "declares the keys 'a'",
        ),
        (
            _BOX,
            [[0.0], [0.0, 1.0]],
            "observation 'obs' as list [[0.0], [0.0, 1.0]], where its observation space declares "
            "float32 values of shape (2,)",
        ),
    ],
    ids=["discrete-out-of-range", "float-multibinary", "short-tuple", "array-for-dict", "ragged"],
)
def test_observations_that_do_not_fit_are_named_with_what_was_declared(space, observation, message):
    with pytest.raises(EnvOutputError) as error:
        check_observation(space, observation, env_id="Env-v0", source="reset()")
    assert str(error.value) == f"env 'Env-v0': reset() returned {message}"
