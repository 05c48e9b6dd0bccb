"""One validation of every config field, for every command line and every stored config.json.

Each bad flag and each bad stored value ends the command with exit code 2 and one line naming
the field, before anything is written.
"""

import dataclasses
import json
import shutil
import subprocess
import sys

import pytest
from saved_runs import untrained_run

from fnrl import evaluate, render, train
from fnrl.agents import AGENTS
from fnrl.config import (
    ConfigError,
    ImpalaConfig,
    ToweredConfig,
    TrainConfig,
    agent_config_class,
    field_kind,
    long_flag,
    stored_config,
)
from fnrl.networks import NETWORK_BODIES
from fnrl.plugins import UNKNOWN_NAME_HINT

# A value of the wrong type for each kind of field.
WRONG_TYPE = {bool: "yes", int: "abc", float: [1.0, 2.0], str: 5}
KIND_TEXT = {
    bool: "a boolean (true or false)",
    int: "an integer",
    float: "a finite number",
    str: "a string",
}


def _config_classes():
    for base in (TrainConfig, ToweredConfig, ImpalaConfig):
        for agent in AGENTS:
            yield agent_config_class(base, agent)


@pytest.mark.parametrize("config_class", list(_config_classes()), ids=lambda c: c.__name__)
def test_every_field_of_every_mode_and_agent_checks_its_type(config_class):
    for f in dataclasses.fields(config_class):
        kind = field_kind(f)
        assert kind is not None, f"{f.name}: a setting must be a bool, int, float or str"
        with pytest.raises(ConfigError) as info:
            config_class(**{f.name: WRONG_TYPE[kind]})
        assert info.value.field == f.name
        named = f"{long_flag(f.name, config_class)} ({f.name}) must be {KIND_TEXT[kind]}"
        assert str(info.value).startswith(named), str(info.value)
        if kind is float:
            with pytest.raises(ConfigError, match=f"\\({f.name}\\) must be a finite number"):
                config_class(**{f.name: float("nan")})


def _train_error(capsys, *argv):
    """The exit code and stderr of ``python -m fnrl.train ARGV`` run in this process."""
    with pytest.raises(SystemExit) as info:
        train.main(list(argv))
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, line",
    [
        (["-lr", "nan"], "--learning-rate (learning_rate) must be a finite number, got nan"),
        (["-lr", "inf"], "--learning-rate (learning_rate) must be a finite number, got inf"),
        (["-lr", "1e38"], "--learning-rate (learning_rate) must be in (0, 1], got 1e+38"),
        (["-lr", "0"], "--learning-rate (learning_rate) must be in (0, 1], got 0.0"),
        (["-lr", "fast"], "argument -lr/--learning-rate: expected a number, got 'fast'"),
        (["-n", "0"], "--nb-env (nb_env) must be at least 1, got 0"),
        (["-n", "2.5"], "argument -n/--nb-env: expected a whole number, got '2.5'"),
        (["--seed", "-1"], "--seed (seed) must be in [0, 2147483647], got -1"),
        (["-sf", "0"], "--summary-frequency (summary_frequency) must be positive, got 0.0"),
        (["--max-grad-norm", "-1"], "--max-grad-norm (max_grad_norm) must be at least 0, got -1.0"),
        (
            ["--tag", "../../escape"],
            '--tag (tag) must be one path component (no /, \\ or ..), got "../../escape"',
        ),
        (["--tag", "a/b"], '--tag (tag) must be one path component (no /, \\ or ..), got "a/b"'),
        (["--resume", ""], '--resume (resume) must name a run directory, got ""'),
        (
            ["--optimizer", "sgd"],
            '--optimizer (optimizer) must be one of rmsprop, rmsprop_tf, adam, got "sgd"',
        ),
        (
            ["-nb", "GRU"],
            '--network-body (network_body) must be one of {bodies}, got "GRU"; {hint}',
        ),
        (
            ["--normalize", "maybe"],
            "argument --normalize: expected a boolean (true/false), got 'maybe'",
        ),
        (["--discount", "1.5"], "--discount (discount) must be in [0, 1], got 1.5"),
        (["--entropy-coef", "-0.1"], "--entropy-coef (entropy_coef) must be at least 0, got -0.1"),
        (["impala", "--nb-actor", "0"], "--nb-actor (nb_actor) must be at least 1, got 0"),
        (
            ["towered", "--heartbeat-timeout", "0"],
            "--heartbeat-timeout (heartbeat_timeout) must be at least 1, got 0",
        ),
        (["towered", "--process-id", "3"], "--process-id (process_id) must be in [0, 0], got 3"),
        (
            ["towered", "--coordinator-address", "localhost"],
            "--coordinator-address (coordinator_address) must be HOST:PORT, a port 1 to 65535, "
            'got "localhost"',
        ),
        (
            ["towered", "--devices", "0,0"],
            '--devices (devices) must list distinct positions >= 0, got "0,0"',
        ),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_each_bad_flag_is_one_line_naming_it_and_exit_code_2(tmp_path, capsys, argv, line):
    log_dir = tmp_path / "logs"
    code, err = _train_error(capsys, *argv, "--log-dir", str(log_dir))
    assert code == 2
    # plug-ins may have added bodies
    line = line.format(bodies=", ".join(NETWORK_BODIES), hint=UNKNOWN_NAME_HINT)
    assert err == f"fnrl.train: error: {line} (see -h)\n"
    assert not log_dir.exists()  # refused before anything is written


def test_a_bad_flag_from_the_real_command_line_is_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "-lr", "nan"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "fnrl.train: error: --learning-rate (learning_rate) must be a finite number, got nan "
        "(see -h)\n"
    )


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run directory with one checkpoint, to copy and spoil."""
    return untrained_run(tmp_path_factory.mktemp("run"), network_body="Linear", normalize=False)


def _spoiled(saved_run, tmp_path, change):
    """A copy of ``saved_run`` whose config.json is ``change(stored settings)``."""
    run_dir = tmp_path / "run"
    shutil.copytree(saved_run, run_dir)
    config_file = run_dir / "config.json"
    config_file.write_text(json.dumps(change(json.loads(config_file.read_text()))))
    return run_dir


STORED_CASES = [
    ({"nb_env": "abc"}, 'nb_env must be an integer, got "abc"'),
    ({"learning_rate": [0.1, 0.2]}, "learning_rate must be a finite number, got [0.1, 0.2]"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number, got nan"),
    ({"normalize": "yes"}, 'normalize must be a boolean (true or false), got "yes"'),
    ({"env_id": None}, "env_id must be a string, got None"),
    ({"agent": ["PPO"]}, "agent must be a string, got ['PPO']"),
    ({"agent": "DQN"}, 'agent must be one of {agents}, got "DQN"; {hint}'),
    ({"tau": 2}, "tau must be in [0, 1], got 2"),
    ({"tag": "../x"}, 'tag must be one path component (no /, \\ or ..), got "../x"'),
]


def _stored_error(command, run_dir, capsys):
    """The exit code and stderr of ``command`` (train, evaluate, render) on ``run_dir``."""
    if command == "train":
        return _train_error(capsys, "--resume", str(run_dir))
    if command == "evaluate":
        code = evaluate.main([str(run_dir), "--episodes", "1"])
    else:
        code = render.main([str(run_dir), "--out", str(run_dir / "video.gif")])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "render"])
@pytest.mark.parametrize("bad, problem", STORED_CASES, ids=[str(c[0]) for c in STORED_CASES])
def test_each_bad_config_json_value_is_one_line_naming_it(
    saved_run, tmp_path, capsys, command, bad, problem
):
    run_dir = _spoiled(saved_run, tmp_path, lambda stored: {**stored, **bad})
    code, err = _stored_error(command, run_dir, capsys)
    assert code == 2
    hint = " (see -h)" if command == "train" else ""
    # plug-ins may have added agents
    problem = problem.format(agents=", ".join(AGENTS), hint=UNKNOWN_NAME_HINT)
    assert err == f"fnrl.{command}: error: config.json of {run_dir}: {problem}{hint}\n"


@pytest.mark.parametrize("command", ["train", "evaluate", "render"])
def test_a_config_json_that_holds_no_object_is_one_line(saved_run, tmp_path, capsys, command):
    run_dir = _spoiled(saved_run, tmp_path, lambda stored: list(stored.values())[:1])
    code, err = _stored_error(command, run_dir, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert f"config.json of {run_dir} must hold a JSON object of settings, got [" in err


def test_a_bad_flag_over_a_stored_run_is_named_as_a_flag(saved_run, tmp_path, capsys):
    run_dir = _spoiled(saved_run, tmp_path, lambda stored: stored)
    code, err = _train_error(capsys, "--resume", str(run_dir), "-lr", "inf")
    assert code == 2
    assert err == (
        "fnrl.train: error: --learning-rate (learning_rate) must be a finite number, got inf "
        "(see -h)\n"
    )


@pytest.mark.parametrize(
    "module, flags, line",
    [
        (evaluate, ["--episodes", "0"], "argument --episodes: must be at least 1, got 0"),
        (evaluate, ["--nb-env", "-2"], "argument --nb-env: must be at least 1, got -2"),
        (evaluate, ["--seed", "-5"], "argument --seed: must be in [0, 2147483647], got -5"),
        (render, ["--fps", "nan"], "argument --fps: must be a finite number, got nan"),
        (render, ["--fps", "0"], "argument --fps: must be positive, got 0.0"),
        (render, ["--max-steps", "0"], "argument --max-steps: must be at least 1, got 0"),
        (render, ["--episodes", "x"], "argument --episodes: expected a number, got 'x'"),
        (render, [], "the following arguments are required: run_dir"),
    ],
)
def test_evaluate_and_render_flags_are_checked_as_config_fields(capsys, module, flags, line):
    argv = [*flags, "runs/x"] if flags else []
    with pytest.raises(SystemExit) as info:
        module.main(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err == f"{module.__name__}: error: {line} (see -h)\n"


def test_towered_refuses_dropping_gradients_and_says_why(capsys):
    assert ToweredConfig(num_grads_to_drop=0).num_grads_to_drop == 0
    with pytest.raises(SystemExit) as exit_info:
        train.main(["towered", "--num-grads-to-drop", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--num-grads-to-drop (num_grads_to_drop) must be 0, got 1" in err
    assert "synchronous all-reduce" in err


def test_a_device_list_another_mode_stored_is_ignored_by_this_modes_config(tmp_path):
    # A towered run stores --gpu-id as a list of devices; evaluating it takes the default device.
    stored = {"env_id": "CartPole-v1", "gpu_id": "0,1"}
    assert stored_config(tmp_path, stored).gpu_id == 0
    assert stored_config(tmp_path, stored, ToweredConfig).gpu_id == "0,1"
    assert stored_config(tmp_path, {**stored, "gpu_id": 1}).gpu_id == 1
