"""Gymnasium's ``module:Id`` env ids, and MultiDiscrete actions, through every CLI."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fnrl.envs import make_env
from fnrl.specs import DiscreteSpec

HERE = Path(__file__).parent
ENV_ID = "toy_envs:ToyKeys-v0"


def _fnrl(*args, cwd):
    """Runs ``python -m fnrl.<args>`` in a new process that can import this folder's modules."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def test_a_module_id_imports_its_module_and_gives_one_head_per_component():
    env = make_env(ENV_ID, 2, seed=0)
    try:
        assert env.spec.actions == {"action_0": DiscreteSpec(2), "action_1": DiscreteSpec(3)}
    finally:
        env.close()
    with pytest.raises(ValueError, match="cannot import the module 'no_such_module'"):
        make_env("no_such_module:Env-v0", 1, seed=0)


def test_a_module_id_multi_discrete_env_trains_then_evaluates_from_a_new_process(tmp_path):
    train = _fnrl(
        "fnrl.train", "--env-id", ENV_ID, "-mts", "640", "--nb-eval-env", "0",
        "--log-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    (run_dir,) = (tmp_path / ENV_ID).iterdir()
    assert json.loads((run_dir / "config.json").read_text())["env_id"] == ENV_ID
    evaluate = _fnrl("fnrl.evaluate", str(run_dir), "--episodes", "4", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "return mean" in evaluate.stdout and "4 greedy episodes" in evaluate.stdout
