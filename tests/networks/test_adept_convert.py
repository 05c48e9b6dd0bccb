"""``python -m fnrl.adept_convert``: an adept run directory becomes an fnrl run that
``fnrl.evaluate`` plays, with adept's weights bit for bit."""

import json
import resource
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from saved_runs import untrained_run

from fnrl import adept_convert
from fnrl.adept_convert import fnrl_settings
from fnrl.checkpoint import load_params, read_meta
from fnrl.config import NetworkSettings, make_config
from fnrl.networks.torch_interop import from_adept_state_dict, to_adept_state_dict
from fnrl.parallel.build import make_agent, make_network, make_training_env

torch = pytest.importorskip("torch")
layout_tests = pytest.importorskip("test_adept_layout")

# An adept 2018 ``args.json`` (its flag names; -mts and --epoch-len as floats, as adept parsed
# them), for CartPole so that the test needs no Atari ROM.
ADEPT_ARGS = {
    "agent": "ActorCritic",
    "debug": False,
    "discount": 0.99,
    "entropy_weight": 0.01,
    "env_id": "CartPole-v1",
    "epoch_len": 40.0,
    "exp_length": 5,
    "learning_rate": 0.0007,
    "log_dir": "/tmp/adept_logs/",
    "max_train_steps": 10000.0,
    "nb_env": 4,
    "network_body": "Linear",
    "network_discrete": "Identity",
    "network_vision": "FourConv",
    "normalize": True,
    "seed": 3,
    "tag": "",
}
STEPS = (40, 80)


def run(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def adept_run(tmp_path_factory):
    """adept's layout: ``args.json`` and ``<step>/{model,optimizer}_<step>.pth``."""
    directory = tmp_path_factory.mktemp("adept") / "CartPole-v1" / "Local_ActorCritic_Linear_0"
    directory.mkdir(parents=True)
    (directory / "args.json").write_text(json.dumps(ADEPT_ARGS, sort_keys=True, indent=4))
    config = make_config(**fnrl_settings(ADEPT_ARGS))
    env = make_training_env(config, 1, 0)
    spec = env.spec
    env.close()
    network = make_network(config.section(NetworkSettings), spec)
    variables = layout_tests.make_variables(network)
    shapes = {k: tuple(v.shape) for k, v in to_adept_state_dict(variables, network).items()}
    models = {}
    for step in STEPS:
        (directory / str(step)).mkdir()
        models[step] = layout_tests.random_state_dict(shapes, seed=step)
        torch.save(models[step], directory / str(step) / f"model_{step}.pth")
        torch.save(
            {"state": {}, "param_groups": []}, directory / str(step) / f"optimizer_{step}.pth"
        )
    return directory, models, config, spec


def test_adept_run_converts_and_evaluates_with_adepts_weights(adept_run, tmp_path):
    adept_dir, models, config, spec = adept_run
    out = tmp_path / "fnrl_run"
    result = run("fnrl.adept_convert", str(adept_dir), str(out))
    assert result.returncode == 0, result.stderr
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["step_40", "step_80"]

    stored = json.loads((out / "config.json").read_text())
    assert stored["vision_network"] == "FourConv" and stored["network_body"] == "Linear"
    assert stored["normalization"] == "batch" and stored["zscore_norm_env"] is False
    assert stored["max_train_steps"] == 10000 and stored["seed"] == 3 and stored["nb_env"] == 4

    network = make_network(config.section(NetworkSettings), spec)
    target = jax.eval_shape(make_agent(config, spec).init, jax.random.PRNGKey(0))
    for step in STEPS:
        path = out / "checkpoints" / f"step_{step}"
        meta = read_meta(path)
        assert meta["env_steps"] == step and meta["updates"] == step // (4 * 5)
        expected = from_adept_state_dict(models[step], network)
        jax.tree.map(np.testing.assert_array_equal, load_params(path, target), expected)

    result = run("fnrl.evaluate", str(out), "--all-checkpoints", "--episodes", "2", "--nb-env", "2")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "eval" / "results.json").read_text())
    assert [r["checkpoint"] for r in results["checkpoints"]] == ["step_40", "step_80"]


def test_a_model_that_does_not_fit_names_the_key_and_writes_nothing(adept_run, tmp_path):
    adept_dir, models, _, _ = adept_run
    broken = tmp_path / "adept"
    (broken / "40").mkdir(parents=True)
    (broken / "args.json").write_text((adept_dir / "args.json").read_text())
    state_dict = dict(models[40])
    del state_dict["head.heads.critic.weight"]
    torch.save(state_dict, broken / "40" / "model_40.pth")
    out = tmp_path / "out"
    result = run("fnrl.adept_convert", str(broken), str(out))
    assert result.returncode == 1
    assert "model_40.pth" in result.stderr and "head.heads.critic.weight" in result.stderr
    assert not out.exists()


def test_adept_settings_map_to_fnrl_names():
    settings = fnrl_settings(
        {**ADEPT_ARGS, "network_vision": "ResNet50", "network_body": "LSTM", "agent": "Unknown"}
    )
    assert settings["vision_network"] == "ResNet50V2"
    assert settings["network_body"] == "LSTM"
    assert "agent" not in settings and "log_dir" not in settings and "tag" not in settings
    later = fnrl_settings({"net3d": "Nature", "net1d": "Identity", "netbody": "Mnih2013LSTM"})
    assert (later["vision_network"], later["network_body"]) == ("Nature", "Mnih2013LSTM")
    with pytest.raises(ValueError, match="adept had no vision network 'IMPALA'"):
        fnrl_settings({"network_vision": "IMPALA"})


ADEPT_LIKE = ("--normalization", "batch", "--zscore-norm-env", "false", "--nb-eval-env", "0")


def test_an_fnrl_run_goes_to_adepts_layout_and_back_bit_for_bit(tmp_path):
    flags = ["-n", "4", "--exp-length", "5", "-mts", "80", "--epoch-len", "40", *ADEPT_LIKE]
    flags += ["--entropy-coef", "0.02", "--log-dir", str(tmp_path / "logs")]
    assert run("fnrl.train", *flags).returncode == 0
    (run_dir,) = (tmp_path / "logs" / "CartPole-v1").iterdir()
    adept_dir = tmp_path / "adept"
    result = run("fnrl.adept_convert", "--to-adept", str(run_dir), str(adept_dir))
    assert result.returncode == 0, result.stderr
    args = json.loads((adept_dir / "args.json").read_text())
    assert (args["network_vision"], args["network_body"], args["entropy_weight"]) == (
        "FourConv",
        "Linear",
        0.02,
    )
    assert (args["env_id"], args["nb_env"], args["exp_length"]) == ("CartPole-v1", 4, 5)
    steps = sorted(int(p.name) for p in adept_dir.iterdir() if p.is_dir())
    checkpoints = sorted((run_dir / "checkpoints").iterdir(), key=lambda p: int(p.name[5:]))
    assert steps == [int(p.name[5:]) for p in checkpoints] and len(steps) >= 2

    config = make_config(**fnrl_settings(args))
    assert config.entropy_coef == 0.02
    env = make_training_env(config, 1, 0)
    spec = env.spec
    env.close()
    network = make_network(config.section(NetworkSettings), spec)
    target = jax.eval_shape(make_agent(config, spec).init, jax.random.PRNGKey(0))
    back = tmp_path / "back"
    assert run("fnrl.adept_convert", str(adept_dir), str(back)).returncode == 0
    for step, checkpoint in zip(steps, checkpoints, strict=True):
        original = load_params(checkpoint, target)
        state_dict = torch.load(adept_dir / str(step) / f"model_{step}.pth", weights_only=True)
        # adept's keys, loaded strictly, hold the run's weights exactly
        jax.tree.map(
            np.testing.assert_array_equal, from_adept_state_dict(state_dict, network), original
        )
        returned = load_params(back / "checkpoints" / checkpoint.name, target)
        jax.tree.map(np.testing.assert_array_equal, returned, original)


def test_a_run_adepts_networks_could_not_be_is_refused_by_name(tmp_path):
    logs = tmp_path / "logs"
    assert (
        run("fnrl.train", "-mts", "80", "--nb-eval-env", "0", "--log-dir", str(logs)).returncode
        == 0
    )
    (run_dir,) = (logs / "CartPole-v1").iterdir()
    result = run("fnrl.adept_convert", "--to-adept", str(run_dir), str(tmp_path / "a"))
    assert result.returncode == 1
    assert "normalization='layer'" in result.stderr and "zscore_norm_env=True" in result.stderr
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    "case", ["args.json holds a list", "a flag of the wrong type", "random bytes", "empty"]
)
def test_an_adept_run_that_cannot_be_read_ends_in_one_line_and_writes_nothing(
    adept_run, tmp_path, capsys, case
):
    adept_dir, *_ = adept_run
    broken = tmp_path / "adept"
    shutil.copytree(adept_dir, broken)
    args, model = broken / "args.json", broken / "40" / "model_40.pth"
    reason = {
        "args.json holds a list": f"{args} is not adept's flags: it holds a list, not an object",
        "a flag of the wrong type": f"{args}: agent must be a string, got ['A2C']",
        "random bytes": f"cannot read {model}: not a file of tensors torch.save wrote",
        "empty": f"cannot read {model}: the file is empty",
    }[case]
    if case == "args.json holds a list":
        args.write_text(json.dumps(list(ADEPT_ARGS)))
    elif case == "a flag of the wrong type":
        args.write_text(json.dumps({**ADEPT_ARGS, "agent": ["A2C"]}))
    else:
        model.write_bytes(np.random.default_rng(0).bytes(1000) if case == "random bytes" else b"")
    out = tmp_path / "out"
    assert adept_convert.main([str(broken), str(out)]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"fnrl.adept_convert: error: {reason}")
    assert not out.exists()


@pytest.mark.parametrize(
    "flag, value", [("--observation-names", "{Box}"), ("--action-names", '["Discrete"]')]
)
def test_a_names_flag_that_is_no_json_object_of_names_is_one_line_and_exit_code_2(
    tmp_path, capsys, flag, value
):
    with pytest.raises(SystemExit) as exit:
        adept_convert.main([str(tmp_path), str(tmp_path / "out"), flag, value])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"fnrl.adept_convert: error: argument {flag}: expected a JSON object of names, "
        f'{{"fnrl key": "adept name"}}, got {value!r} (see -h)'
    ]


@pytest.mark.parametrize("to_adept", [False, True], ids=["from-adept", "to-adept"])
def test_without_pytorch_a_conversion_names_the_extra_to_install(
    tmp_path, capsys, monkeypatch, to_adept
):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if it were not installed
    args = [*["--to-adept"] * to_adept, str(tmp_path / "run"), str(tmp_path / "out")]
    assert adept_convert.main(args) == 1
    assert capsys.readouterr().err.splitlines() == [
        "fnrl.adept_convert: error: adept's files are PyTorch's, which is not installed: "
        "pip install 'fnrl[torch]'"
    ]


@pytest.mark.parametrize("to_adept", [False, True], ids=["from-adept", "to-adept"])
def test_a_conversion_onto_a_full_disk_names_the_file_and_leaves_nothing(
    adept_run, tmp_path, capsys, to_adept
):
    """Every file may hold 16 KiB: the settings fit, the weights do not."""
    if to_adept:
        source = untrained_run(tmp_path, normalization="batch", zscore_norm_env=False)
        first = "0/model_0.pth"
    else:
        source, first = adept_run[0], "checkpoints/step_40"
    out = tmp_path / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past it fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, hard))
    try:
        code = adept_convert.main([*["--to-adept"] * to_adept, str(source), str(out)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert code == 1
    what = "checkpoint " * (not to_adept)
    assert capsys.readouterr().err.splitlines() == [
        f"fnrl.adept_convert: error: cannot write {what}{out / first}: [Errno 27] File too large"
    ]
    assert not out.exists()  # a second try finds no half conversion in its way
