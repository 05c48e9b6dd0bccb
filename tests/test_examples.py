"""The examples run as a user runs them: a custom agent and body registered from a script."""

import json
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def _example(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "custom_agent.py"), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_custom_agent_lists_its_own_flag_trains_and_resumes(tmp_path):
    help_text = _example("-h").stdout
    assert "--baseline-coef" in help_text and "--policy-clipping" not in help_text
    flags = ("-mts", "1600", "--nb-eval-env", "0", "--baseline-coef", "0.25")
    first = _example(*flags, "--log-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr[-3000:]
    (run_dir,) = tmp_path.glob("*/*")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["agent"], config["network_body"], config["baseline_coef"]) == (
        "Baseline",
        "TanhMLP",
        0.25,
    )
    # CleanRL's 64 units, as the example says (it once trained 512: 266,755 params)
    assert config["hidden_size"] == 64
    assert "Network parameters: 4,675" in first.stdout
    resumed = _example("--resume", str(run_dir), "-mts", "3200")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "finished: 3200 steps" in resumed.stdout
