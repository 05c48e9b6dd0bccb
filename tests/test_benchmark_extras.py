"""A benchmark whose extra is not installed says which one in one line, even for ``-h``."""

import subprocess
import sys
from pathlib import Path

import pytest

_BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.mark.parametrize(
    "script, missing, extra",
    [("networks.py", "torch", "torch"), ("peers.py", "stable_baselines3", "bench")],
)
def test_a_benchmark_without_its_extra_names_it_in_one_line(script, missing, extra):
    path = str(_BENCHMARKS / script)
    code = (
        f"import runpy, sys; sys.modules[{missing!r}] = None; sys.argv = [{path!r}, '-h']; "
        f"runpy.run_path({path!r}, run_name='__main__')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f'benchmarks/{script} needs {missing}, of the {extra} extra: pip install -e ".[{extra}]"'
    ]
