"""Every network trains on Pong without NaN; ``python -m fnrl.networks`` lists the zoo."""

import math
import subprocess
import sys

import jax
import numpy as np
import pytest

from fnrl.config import make_config
from fnrl.networks import NETWORK_BODIES, VISION_NETWORKS
from fnrl.parallel.local import train_local

# Compiling a learner step through a ResNet takes 15 s (ResNet18) to 1.5 min (ResNet152) on a
# 2-core CPU, so the ResNets train in the slow tests only, and only one network per block kind
# and version: ResNet34, 101 and 152 stack more of the blocks ResNet18 and 50 train here
# (test_resnets.py and test_torch_interop.py check every depth: counts, round trip, twin).
_TRAINED_RESNETS = {"ResNet18", "ResNet18V2", "ResNet50", "ResNet50V2"}


def _vision_params():
    for name in sorted(VISION_NETWORKS):
        if name.startswith("ResNet"):
            if name in _TRAINED_RESNETS:
                yield pytest.param(name, marks=pytest.mark.slow)
        else:
            yield pytest.param(name)


def _train_pong(tmp_path, **settings):
    config = make_config(
        env_id="PongNoFrameskip-v4",
        nb_env=2,
        exp_length=2,
        max_train_steps=8,  # two updates
        nb_eval_env=0,  # its compile would double this short run's
        log_dir=str(tmp_path),
        **settings,
    )
    result = train_local(config, show_progress=False)
    assert result.updates == 2
    for metrics in result.metrics:
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    for leaf in jax.tree.leaves(result.state.params):
        assert bool(np.all(np.isfinite(np.asarray(leaf))))
    return result


@pytest.mark.parametrize("vision", _vision_params())
def test_every_vision_network_trains_on_pong_without_nan(tmp_path, vision):
    _train_pong(tmp_path, vision_network=vision, network_body="Linear")


@pytest.mark.parametrize("body", sorted(set(NETWORK_BODIES) - {"Linear"}))
def test_every_body_trains_on_pong_without_nan(tmp_path, body):
    result = _train_pong(tmp_path, network_body=body, normalize=body != "Identity")
    if body != "Identity":  # the learner moved the batch-norm statistics
        counts = [
            float(v)
            for p, v in jax.tree_util.tree_leaves_with_path(result.state.params)
            if "count" in jax.tree_util.keystr(p)
        ]
        assert counts and all(c == 2 for c in counts)  # one moving-average step per update


def test_cli_trains_attention_and_relational_memory_with_nb_head(tmp_path):
    command = [
        sys.executable,
        "-m",
        "fnrl.train",
        "local",
        "--env-id",
        "PongNoFrameskip-v4",
        "-n",
        "2",
        "--exp-length",
        "2",
        "-mts",
        "8",
        "--log-dir",
        str(tmp_path),
        "-vn",
        "FourConvSpatialAttention",
        "-nb",
        "RMC",
        "--nb-head",
        "2",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    trunk = 34_392 - 3 * 3 * 3 * 32  # the pinned 4-frame count, on 1 frame
    memory = 128  # 512 hidden units in 4 slots, 2 heads of 64
    rmc = (
        (1152 * memory + memory) + 3 * (memory * memory + memory) + 2 * 2 * memory
    )  # in, v, mlp, ln
    rmc += 3 * (memory * 2 * memory + 2 * memory)  # qk projection, input and memory gates
    heads = (512 * 6 + 6) + (512 + 1)
    assert trunk + rmc + heads == 333_823
    assert "Network parameters: 333,823" in result.stdout + result.stderr
    assert "finished: 8 steps" in result.stdout + result.stderr


def test_cli_rejects_an_nb_head_the_network_cannot_split(tmp_path):
    command = [sys.executable, "-m", "fnrl.train", "local", "-vn", "FourConvSpatialAttention"]
    command += ["--env-id", "PongNoFrameskip-v4", "--nb-head", "3", "--log-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--nb-head must divide 34" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_m_fnrl_networks_lists_every_network_with_its_count():
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.networks"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in lines if line and line[0].isupper()}
    for name in VISION_NETWORKS:
        assert name in rows, name
    assert rows["FourConv"] == ["800", "34,176", "2,725,159", "448,391"]  # adept's 2,725,159
    assert rows["ResNet50"][:2] == ["2,048", "23,511,168"]
    for name in NETWORK_BODIES:
        assert name in rows, name
    assert rows["RMC"] == ["1", "251,648", "284,711"]
