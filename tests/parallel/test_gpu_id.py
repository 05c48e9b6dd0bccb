"""``--gpu-id`` picks the local JAX devices a run uses, in every mode, CPU devices included.

The device count of a JAX process is fixed when JAX starts, so the checks run in a pytest
subprocess with two host devices (``--xla_force_host_platform_device_count=2``).
"""

import subprocess
import sys

import jax
import pytest
from process_helpers import TWO_DEVICES, pytest_with_two_devices

from fnrl.config import ImpalaConfig, ToweredConfig, TrainConfig, make_config
from fnrl.parallel.impala import train_impala
from fnrl.parallel.local import train_local
from fnrl.parallel.towered import train_towered

needs_two_devices = pytest.mark.skipif(
    jax.device_count() != 2, reason="run by test_gpu_id_in_a_two_device_process"
)
SMALL = dict(
    env_id="CartPole-v1",
    nb_env=2,
    exp_length=5,
    network_body="Linear",
    nb_eval_env=0,
    max_train_steps=20,
)


def _param_devices(result) -> set:
    return {d for leaf in jax.tree.leaves(result.state.params) for d in leaf.devices()}


def test_gpu_id_in_a_two_device_process():
    result = pytest_with_two_devices(__file__, "-k", "local or towered or impala")
    assert result.returncode == 0 and "5 passed" in result.stdout, result.stdout + result.stderr


def test_a_missing_gpu_id_is_one_line_naming_the_devices(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fnrl.train", "local", "--gpu-id", "2", "--log-dir", str(tmp_path)],
        env=TWO_DEVICES,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    line = "fnrl.train: error: --gpu-id 2: no device 2; this process has 2: 0 = cpu:0, 1 = cpu:1"
    assert result.stderr.strip().splitlines()[-1] == line
    assert not list(tmp_path.iterdir())  # refused before the run directory exists


def test_gpu_id_defaults_to_adepts():
    assert TrainConfig().gpu_id == 0 and TrainConfig().device_positions() == [0]
    assert ToweredConfig().device_positions() is None  # towered and IMPALA: every device
    assert ToweredConfig(gpu_id="1,0").device_positions() == [1, 0]
    assert ImpalaConfig(gpu_id="1").device_positions() == [1]
    with pytest.raises(ValueError, match="--gpu-id .* must list distinct positions"):
        ToweredConfig(gpu_id="1,1")


@needs_two_devices
@pytest.mark.parametrize("gpu_id", [0, 1])
def test_local_trains_on_the_device_chosen(tmp_path, gpu_id):
    config = make_config(TrainConfig, **SMALL, gpu_id=gpu_id, log_dir=str(tmp_path))
    result = train_local(config, show_progress=False)
    assert result.updates == 2
    assert _param_devices(result) == {jax.local_devices()[gpu_id]}


@needs_two_devices
def test_local_refuses_a_device_that_does_not_exist(tmp_path):
    config = make_config(TrainConfig, **SMALL, gpu_id=2, log_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"no device 2; this process has 2: 0 = cpu:0, 1 = cpu:1"):
        train_local(config, show_progress=False)
    assert not list(tmp_path.iterdir())


@needs_two_devices
def test_towered_uses_the_devices_listed(tmp_path):
    for gpu_id, count in (("1", 1), ("0,1", 2)):
        config = make_config(ToweredConfig, **SMALL, gpu_id=gpu_id, log_dir=str(tmp_path / gpu_id))
        result = train_towered(config, show_progress=False)
        # --nb-env counts envs per device: 2 x 5 steps per update and device.
        assert (result.updates, result.env_steps) == (2 if count == 1 else 1, 20)
        assert f"Devices: {count} over 1 process" in (result.run_dir / "train_log.txt").read_text()
    with pytest.raises(ValueError, match="--gpu-id 2: no device 2; process 0 has 2: 0 = cpu:0"):
        train_towered(make_config(ToweredConfig, **SMALL, gpu_id="2", log_dir=str(tmp_path)))


@needs_two_devices
def test_impala_learns_on_the_devices_listed(tmp_path):
    settings = dict(SMALL, nb_actor=2, batch_size=2, max_train_steps=40)
    config = make_config(ImpalaConfig, **settings, gpu_id="1", log_dir=str(tmp_path))
    result = train_impala(config, show_progress=False)
    assert result.updates == 2
    assert _param_devices(result) == {jax.local_devices()[1]}
    assert "LEARNER: 1 device(s) ['cpu:1']" in (result.run_dir / "train_log.txt").read_text()
