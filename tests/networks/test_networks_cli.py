"""Every network trains on Pong without NaN; ``python -m fnrl.networks`` lists the zoo."""

import math
import subprocess
import sys

import jax
import numpy as np
import pytest

from fnrl import network_list as networks_cli
from fnrl.networks import DISCRETE_NETWORKS, NETWORK_BODIES, VISION_NETWORKS, count_params
from fnrl.parallel.local import train_local
from fnrl.train import parse_args

# Each run compiles a learner step, which dominates its time, so each network trains once: the
# vision networks other than the ResNets each with one body, which covers every body too
# (adept's default pair first; the attention trunk with the relational memory at two heads).
_PAIRS = [
    ("FourConv", "LSTM"),
    ("FourConvLarger", "Mnih2013Linear"),
    ("FourConvSpatialAttention", "RMC"),
    ("IMPALA", "Mnih2013LSTM"),
    ("MinAtar", "Identity"),  # on Pong's 84x84 frames, 107,584 features
    ("Mnih2013", "Identity"),
    ("Nature", "Linear"),
]
# Compiling a learner step through a ResNet takes 15 s (ResNet18) to 1.5 min (ResNet152) on a
# 2-core CPU (ResNet50: 3.7 min in a full suite), so the ResNets train in the slow tests only,
# and only two of them: ResNet18's basic blocks (version 1) and ResNet50V2's bottleneck blocks
# (version 2, pre-activation). The other depths and versions stack or reorder the same layers
# (test_resnets.py and test_torch_interop.py check every one: counts, round trip, twin).
_TRAINED_RESNETS = ["ResNet18", "ResNet50V2"]


def test_the_pairs_train_every_network_but_the_resnets():
    assert {vision for vision, _ in _PAIRS} == {
        name for name in VISION_NETWORKS if not name.startswith("ResNet")
    }
    assert {body for _, body in _PAIRS} == set(NETWORK_BODIES)


def _train_pong(tmp_path, *flags):
    """Two updates on Pong, configured as the command line configures them."""
    _, config = parse_args(
        ["local", "--env-id", "PongNoFrameskip-v4", "-n", "2", "--exp-length", "2", "-mts", "8"]
        + ["--nb-eval-env", "0", "--log-dir", str(tmp_path), *flags]
    )
    result = train_local(config, show_progress=False)
    assert result.updates == 2
    for metrics in result.metrics:
        assert all(math.isfinite(value) for value in metrics.values()), metrics
    for leaf in jax.tree.leaves(result.state.params):
        assert bool(np.all(np.isfinite(np.asarray(leaf))))
    return result


@pytest.mark.parametrize(
    ("vision", "body"),
    [
        *_PAIRS,
        *(pytest.param(name, "Linear", marks=pytest.mark.slow) for name in _TRAINED_RESNETS),
    ],
)
def test_every_network_trains_on_pong_without_nan(tmp_path, vision, body):
    normalize = body != "Identity"  # one run without normalization layers
    flags = ["-vn", vision, "-nb", body, "--normalize", str(normalize)]
    nb_head = ["--nb-head", "2"] if vision == "FourConvSpatialAttention" else []
    result = _train_pong(tmp_path, *flags, *nb_head)
    if normalize:  # the learner moved the batch-norm statistics
        counts = [
            float(v)
            for p, v in jax.tree_util.tree_leaves_with_path(result.state.params)
            if "count" in jax.tree_util.keystr(p)
        ]
        assert counts and all(c == 2 for c in counts)  # one moving-average step per update
    if nb_head:
        trunk = 34_392 - 3 * 3 * 3 * 32  # the pinned 4-frame count, on 1 frame
        memory = 128  # 512 hidden units in 4 slots, 2 heads of 64
        rmc = (
            (1152 * memory + memory) + 3 * (memory * memory + memory) + 2 * 2 * memory
        )  # in, v, mlp, ln
        rmc += 3 * (memory * 2 * memory + 2 * memory)  # qk projection, input and memory gates
        heads = (512 * 6 + 6) + (512 + 1)
        assert trunk + rmc + heads == 333_823
        assert count_params(result.state.params["params"]) == 333_823


def test_cli_rejects_an_nb_head_the_network_cannot_split(tmp_path):
    command = [sys.executable, "-m", "fnrl.train", "local", "-vn", "FourConvSpatialAttention"]
    command += ["--env-id", "PongNoFrameskip-v4", "--nb-head", "3", "--log-dir", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--nb-head must divide 34" in result.stderr
    assert "Traceback" not in result.stderr


def test_python_m_fnrl_networks_lists_every_registered_network():
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.networks"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sections = result.stdout.split("\n\n")
    listed = [{line.split()[0] for line in s.splitlines()[1:]} for s in sections[:3]]
    assert listed == [set(VISION_NETWORKS), set(NETWORK_BODIES), set(DISCRETE_NETWORKS)]
    assert "--params" in sections[3]


def test_params_flag_counts_the_networks_named(capsys):
    """Each network's counts are pinned in test_resnets.py; here the tables' columns."""
    assert networks_cli.main(["--params", "--networks", "FourConv,RMC,Linear"]) == 0
    tables = [
        {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
        for table in capsys.readouterr().out.split("\n\n")
    ]
    assert tables == [
        {"FourConv": ["800", "34,176", "2,725,159", "448,391"]},  # adept's 2,725,159
        {"Linear": ["4", "410,624", "448,391"], "RMC": ["1", "251,648", "284,711"]},
        {"Linear": ["12,544"]},
    ]
