"""The command line, run as users run it: through a subprocess."""

import dataclasses
import fcntl
import os
import re
import signal
import subprocess
import sys

import pytest

from fnrl.config import VECTOR_PRESET, TrainConfig, long_flag, with_agent_settings
from fnrl.train import parse_args


def _run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "fnrl.train", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bare_command_is_local_cartpole_with_its_preset():
    mode, config = parse_args([])
    assert mode == "local"
    assert config == with_agent_settings(TrainConfig(**VECTOR_PRESET))
    assert config.env_id == "CartPole-v1" and config.nb_env == 16


def test_atari_ids_get_adept_defaults():
    _, config = parse_args(["--env-id", "PongNoFrameskip-v4"])
    assert config == with_agent_settings(TrainConfig(env_id="PongNoFrameskip-v4"))
    assert (config.nb_env, config.learning_rate, config.exp_length) == (32, 7e-4, 20)
    assert (config.vision_network, config.network_body, config.normalize) == (
        "FourConv",
        "LSTM",
        True,
    )
    assert config.max_train_steps == 10_000_000 and config.max_grad_norm == 0.0


def test_given_flags_override_the_preset():
    _, config = parse_args(["-n", "4", "-nb", "LSTM"])
    assert (config.nb_env, config.network_body, config.exp_length) == (4, "LSTM", 5)


def test_adept_short_flags_and_boolean_forms():
    flags = "local -n 8 -s 3 -lr 1e-3 -mts 10e6 -gae false -na --normalize off -vn Nature"
    _, config = parse_args([*flags.split(), "-nb", "Linear", "--exp-length", "5"])
    assert config.nb_env == 8 and config.seed == 3 and config.learning_rate == 1e-3
    assert config.max_train_steps == 10_000_000
    assert not config.generalized_advantage_estimation and config.normalize_advantage
    assert not config.normalize
    assert (config.vision_network, config.network_body, config.exp_length) == (
        "Nature",
        "Linear",
        5,
    )


def test_debug_and_profile_rewrite_the_config():
    _, config = parse_args(["--debug", "--profile"])
    assert (config.nb_env, config.log_dir, config.max_train_steps) == (3, "/tmp/fnrl_debug", 10_000)


def test_help_documents_every_flag_without_importing_the_envs():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "fnrl.train", "local", "-h"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = " ".join(result.stdout.split())  # unwrapped
    for flag in ("--env-id", "--nb-env", "--max-train-steps", "--vision-network", "--normalize"):
        assert flag in out
    assert "(default: 16 for CartPole-v1, a vector env; 32 for image envs)" in out
    assert "one of: FourConv, FourConvLarger, " in out and "one of: Identity, Linear, LSTM" in out
    assert "one of: ActorCritic, ActorCriticVtrace, PPO (default: ActorCritic)" in out
    # The default env's kind is known without the simulators, which take seconds to import.
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()]
    assert "fnrl.agents" in imported and "fnrl.envs" not in imported and "envpool" not in imported


def test_default_env_kind_for_help_is_the_envs_own():
    from fnrl.envs import env_kind
    from fnrl.train import _DEFAULT_ENV_KINDS

    assert {TrainConfig.env_id: env_kind(TrainConfig.env_id)} == _DEFAULT_ENV_KINDS


@pytest.mark.parametrize(
    "args",
    [
        ["local"],
        ["local", "--env-id", "PongNoFrameskip-v4"],
        ["impala", "--agent", "PPO", "--env-id", "Pendulum-v1"],
        ["towered", "--env-id", "NotAnEnv-v9"],
    ],
)
def test_help_shows_first_the_default_a_run_of_that_env_gets(args, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping inside a flag's help
    with pytest.raises(SystemExit):
        parse_args([*args, "-h"])
    out = capsys.readouterr().out
    options = out.split("options:\n")[1].split("\n\n")[0]
    helps = {}
    for block in re.split(r"\n  (?=-)", options):
        invocation, _, text = block.strip().partition("  ")
        for flag in invocation.split(", "):
            helps[flag.split()[0]] = " ".join(text.split())
    if args[-1] == "NotAnEnv-v9":  # no kind: each kind's value
        expected = "(default: 32 for image envs; 16 for small image, vector and continuous envs)"
        assert expected in helps["-n"]
        assert "NotAnEnv-v9 names no known env" in " ".join(out.split())
        return
    _, config = parse_args(args)
    for f in dataclasses.fields(config):
        if set(f.metadata["flags"]) & set(args):
            continue  # given: --env-id, --agent
        text = helps[long_flag(f.name, type(config))]
        default = re.search(r"\(default: (.*)\)$", text).group(1)
        assert re.split(" for |; ", default)[0] == str(getattr(config, f.name)), (f.name, text)
        if ";" in default:  # values differ by kind: the one shown first is this env's
            assert f" for {config.env_id}, a" in default, (f.name, text)


def _assert_one_clear_error(result, *phrases):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args, phrases",
    [
        (["--env-id", "NotAnEnv-v9"], ["Unknown env id", "NotAnEnv-v9"]),
        (["--vision-network", "FiveConv"], ["--vision-network (vision_network) must be one of"]),
        (["--network-body", "GRU"], ["--network-body (network_body) must be one of", "LSTM"]),
        (["-n", "0"], ["--nb-env (nb_env) must be at least 1"]),
        (["-mts", "-5"], ["--max-train-steps (max_train_steps) must be at least 1"]),
        (["--normalize", "maybe"], ["expected a boolean"]),
        (
            ["--normalization", "group"],
            ["--normalization (normalization) must be one of batch, running, layer"],
        ),
        (["--no-such-flag"], ["unrecognized arguments"]),
    ],
)
def test_bad_input_ends_with_one_clear_message(tmp_path, args, phrases):
    result = _run("--log-dir", str(tmp_path), "-mts", "64", *args)  # later flags win
    _assert_one_clear_error(result, *phrases)


def test_unwritable_log_dir_ends_with_one_clear_message(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = _run("--log-dir", str(blocker / "logs"), "-mts", "64", "-n", "2")
    _assert_one_clear_error(result, "fnrl.train: error", str(blocker))


def test_tiny_cli_run_succeeds(tmp_path):
    result = _run("--log-dir", str(tmp_path), "-mts", "64", "-n", "4", "--exp-length", "8")
    assert result.returncode == 0, result.stderr
    assert "finished: 64 steps" in result.stdout
    assert "precision" not in result.stderr  # Gymnasium's warnings on envpool's float64 bounds
    runs = list((tmp_path / "CartPole-v1").iterdir())
    assert len(runs) == 1 and (runs[0] / "checkpoints" / "step_64").is_dir()


def test_each_agent_accepts_its_own_flags_and_not_anothers():
    ppo_help = _run("local", "--agent", "PPO", "-h").stdout
    assert "--policy-clipping" in ppo_help and "--epochs" in ppo_help
    assert "--generalized-advantage-estimation" not in ppo_help
    assert "--policy-clipping" not in _run("local", "-h").stdout
    _, config = parse_args(["--agent", "PPO", "--epochs", "2", "--tau", "0.9"])
    assert (config.epochs, config.tau, config.minibatches, config.optimizer) == (2, 0.9, 4, "adam")
    _, config = parse_args(["impala", "--rho-bar", "0.5"])
    assert config.clip_rho_threshold == 0.5
    refused = _run("local", "--agent", "PPO", "-gae", "false", "-mts", "1")
    assert refused.returncode == 2 and "unrecognized arguments: -gae" in refused.stderr


def test_unknown_agent_ends_with_one_clear_line():
    result = _run("--agent", "DQN", "-mts", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        "unknown agent 'DQN'; choose one of: ActorCritic, ActorCriticVtrace, PPO" in result.stderr
    )


def test_a_run_that_ends_before_any_episode_says_so(tmp_path):
    """Pendulum's episodes last 200 steps: 64 per env end none (no 'nan' mean return)."""
    result = _run(
        "--env-id", "Pendulum-v1", "--agent", "PPO", "-mts", "128", "-n", "2",
        "--exp-length", "64", "--log-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "finished: 128 steps" in result.stdout and "no episode finished" in result.stdout
    assert "nan" not in result.stdout


# Loaded at start-up (sitecustomize): once fnrl's start-up handler is in place, the next
# garbage collection sends SIGINT from inside a collector callback, as JAX's own callback is.
_SIGINT_IN_A_GC_CALLBACK = """
import gc, os, signal
def _hook(phase, info):
    handler = signal.getsignal(signal.SIGINT)
    if phase == "start" and getattr(handler, "__module__", "") == "fnrl._startup":
        gc.callbacks.remove(_hook)
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10))  # the handler runs here, inside the callback
gc.callbacks.append(_hook)
"""


@pytest.mark.parametrize("command", ["fnrl.train", "fnrl.evaluate"])
def test_ctrl_c_inside_a_callback_while_importing_still_ends_the_command(command, tmp_path):
    """An exception raised in a garbage-collector callback is printed and dropped; JAX runs one
    during imports. A Ctrl-C handled there once printed its line and the command ran on."""
    (tmp_path / "sitecustomize.py").write_text(_SIGINT_IN_A_GC_CALLBACK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    result = subprocess.run(
        [sys.executable, "-m", command, "-h"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (result.returncode, result.stderr, result.stdout) == (
        130,
        "fnrl: interrupted while starting\n",
        "",
    )


@pytest.mark.parametrize("command", ["fnrl.train", "fnrl.evaluate"])
def test_ctrl_c_while_the_command_imports_ends_in_one_line(command):
    """``-X importtime`` reports each module as its import ends: the signal comes right after
    JAX's, while fnrl's own modules still import. The report goes through a one-page pipe, so
    the command cannot run ahead of this test (it blocks on a full pipe) and finish first."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", command, "-h"],
        stdout=subprocess.DEVNULL,
        stderr=write_end,
    )
    os.close(write_end)
    with open(read_end) as stderr:
        for line in stderr:
            if line.split("|")[-1].strip() == "jax":
                process.send_signal(signal.SIGINT)
                break
        err = stderr.read()
    process.wait(timeout=60)
    lines = [line for line in err.splitlines() if not line.startswith("import time:")]
    assert (process.returncode, lines) == (130, ["fnrl: interrupted while starting"])


@pytest.mark.parametrize("flag, kept", [((), True), (("--compilation-cache", "false"), False)])
def test_compiled_programs_are_kept_in_the_users_cache_unless_turned_off(tmp_path, flag, kept):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "-mts", "40", "-n", "2", "--exp-length", "5",
         "--log-dir", str(tmp_path / "runs"), *flag],
        env={**env, "XDG_CACHE_HOME": str(tmp_path / "cache")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert bool(list(tmp_path.glob("cache/fnrl/jax/*-cache"))) == kept
