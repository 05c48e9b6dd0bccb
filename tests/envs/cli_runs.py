"""Train, then evaluate from a new process, an env id whose module lives in this folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

from fnrl.logging import env_folder

HERE = Path(__file__).parent


def run_fnrl(*args, cwd):
    """Runs ``python -m fnrl.<args>`` in a new process that can import this folder's modules."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def train_then_evaluate(env_id, tmp_path):
    """Trains ``env_id`` for 640 steps, then evaluates the run with 4 greedy episodes.

    Returns:
      The evaluation's stdout; asserts that both processes succeed and that the run recorded
      ``env_id``.
    """
    train = run_fnrl(
        "fnrl.train", "--env-id", env_id, "-mts", "640", "--nb-eval-env", "0",
        "--log-dir", str(tmp_path), cwd=tmp_path,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    (run_dir,) = (tmp_path / env_folder(env_id)).iterdir()
    assert json.loads((run_dir / "config.json").read_text())["env_id"] == env_id
    evaluate = run_fnrl("fnrl.evaluate", str(run_dir), "--episodes", "4", cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "return mean" in evaluate.stdout and "4 greedy episodes" in evaluate.stdout
    return evaluate.stdout
