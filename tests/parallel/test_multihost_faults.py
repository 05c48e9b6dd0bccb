"""Signals and failures of the processes of a run: stop codes, an env that hangs, a bad
coordinator, a frozen peer.

Multi-process runs are two ``python -m fnrl.train towered`` processes on 127.0.0.1.
"""

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from hanging_envs import HANG_AFTER
from process_helpers import free_port, start_towered_process, start_train

from fnrl.checkpoint import list_checkpoints

_NO_BUDGET = ("-mts", "10000000")  # runs until stopped


def _wait_for_training(log_dir: Path, processes: list[subprocess.Popen]) -> None:
    """Waits for the first checkpoint under ``log_dir``: every process is training."""
    deadline = time.monotonic() + 120
    while not list(log_dir.glob("*/*/checkpoints/step_*")):
        assert time.monotonic() < deadline, "the run did not start training"
        assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
        time.sleep(0.2)


def _latest_meta(log_dir: Path) -> dict:
    (run_dir,) = log_dir.glob("*/*")
    return json.loads((list_checkpoints(run_dir / "checkpoints")[-1] / "meta.json").read_text())


def _end(processes: list[subprocess.Popen]) -> None:
    """Kills what is left of ``processes`` (a stopped one too) and reaps them."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.communicate()


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, signum, code",
    [
        ("local", signal.SIGTERM, 143),
        ("local", signal.SIGINT, 130),
        ("impala", signal.SIGTERM, 143),
    ],
)
def test_a_signal_stops_a_single_process_run_with_a_checkpoint_and_128_plus_its_number(
    tmp_path, mode, signum, code
):
    processes = [start_train(mode, tmp_path, *_NO_BUDGET)]
    try:
        _wait_for_training(tmp_path, processes)
        processes[0].send_signal(signum)
        out, err = processes[0].communicate(timeout=60)
        assert processes[0].returncode == code, err[-3000:]
        assert "stopped:" in out
        assert 0 < _latest_meta(tmp_path)["env_steps"] < 10_000_000
    finally:
        _end(processes)


@pytest.mark.slow  # 15 s
def test_a_run_whose_env_hangs_ends_within_the_stop_timeout_keeping_its_checkpoints(tmp_path):
    marker = tmp_path / "hanging"
    process = start_train(
        "local", tmp_path, "--env-id", "hanging_envs:Hangs-v0", "--exp-length", "5",
        "--stop-timeout", "2", "--epoch-len", "100", "--nb-eval-env", "0", *_NO_BUDGET,
        env={"FNRL_TEST_HANG_MARKER": str(marker)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert time.monotonic() < deadline and process.poll() is None, process.communicate()
            time.sleep(0.2)
        stopped = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert time.monotonic() - stopped < 10
        assert process.returncode == 130, err[-3000:]
        assert err.strip().splitlines()[-1] == (
            "fnrl.train: stopped without a final checkpoint: the run did not reach its next "
            "update within --stop-timeout 2 s of the stop request (an env hangs?); its earlier "
            "checkpoints are kept"
        )
        assert 0 < _latest_meta(tmp_path)["env_steps"] <= HANG_AFTER
    finally:
        _end([process])


@pytest.mark.slow
def test_sigterm_to_one_process_stops_the_whole_run_with_a_checkpoint(tmp_path):
    # JAX's preemption service would swallow SIGTERM; the signalled process exits 143 and its
    # peer, stopped at the same update, 130.
    port = free_port()
    flags = (*_NO_BUDGET, "--heartbeat-timeout", "10")
    processes = [start_towered_process(port, i, tmp_path / f"p{i}", *flags) for i in range(2)]
    try:
        _wait_for_training(tmp_path / "p0", processes)
        processes[1].send_signal(signal.SIGTERM)
        outputs = [p.communicate(timeout=60) for p in processes]
        codes = [p.returncode for p in processes]
        assert codes == [130, 143], [err[-2000:] for _, err in outputs]
        assert "stopped:" in outputs[0][0]
        assert 0 < _latest_meta(tmp_path / "p0")["env_steps"] < 10_000_000
    finally:
        _end(processes)


def test_an_unreachable_coordinator_fails_within_the_heartbeat_timeout(tmp_path):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    process = start_towered_process(port, 1, tmp_path, "--heartbeat-timeout", "2")
    try:
        _, err = process.communicate(timeout=60)
        assert time.monotonic() - started < 20  # JAX alone: 5 minutes, then an abort
        assert process.returncode == 1, err[-3000:]
        assert err.strip().splitlines() == [
            f"fnrl.train: error: could not reach the coordinator at 127.0.0.1:{port} "
            "within 2 s (process 1 of 2)"
        ]
    finally:
        _end([process])


@pytest.mark.slow
@pytest.mark.parametrize("frozen", [0, 1])
def test_a_frozen_peer_ends_the_other_process_with_one_line_within_the_timeout(tmp_path, frozen):
    # JAX's runtime would abort it after the heartbeat timeout with a C++ check-failure trace.
    port = free_port()
    flags = (*_NO_BUDGET, "--heartbeat-timeout", "5")
    processes = [start_towered_process(port, i, tmp_path / f"p{i}", *flags) for i in range(2)]
    try:
        _wait_for_training(tmp_path / "p0", processes)
        processes[frozen].send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        survivor = processes[1 - frozen]
        _, err = survivor.communicate(timeout=60)
        assert time.monotonic() - stopped_at < 15
        assert survivor.returncode == 1, err[-3000:]
        assert err.strip().splitlines()[-1] == (
            "fnrl.train: error: the other processes did not answer at an update within 5 s "
            f"(--heartbeat-timeout): one has stopped or is unreachable "
            f"(process {1 - frozen} of 2)"
        )
        assert "Check failure" not in err and "Traceback" not in err
    finally:
        _end(processes)


def test_processes_started_with_different_settings_end_with_one_line_naming_it(tmp_path):
    """Before: with ``-n 8`` against ``-n 4`` the run trained 500 updates, then aborted in C++."""
    port = free_port()
    flags = ("-mts", "2000", "--heartbeat-timeout", "20")
    processes = [
        start_towered_process(port, 0, tmp_path / "p0", *flags),
        start_towered_process(port, 1, tmp_path / "p1", *flags, "-n", "8"),
    ]
    try:
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert (process.returncode, err.splitlines()) == (
                1,
                [
                    "fnrl.train: error: process 1 was started with --nb-env 8, process 0 with 4: "
                    "every process of a towered run needs the same settings"
                ],
            )
        assert not list(tmp_path.glob("p0/*/*/checkpoints/*"))
    finally:
        _end(processes)


def test_a_process_id_given_twice_ends_both_with_one_line_naming_the_flag(tmp_path):
    """Both start a coordinator on the port; one may be aborted by JAX's runtime in C++."""
    port = free_port()
    flags = ("--heartbeat-timeout", "5", "--process-id", "0")
    processes = [start_towered_process(port, i, tmp_path / f"p{i}", *flags) for i in range(2)]
    try:
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode != 0
            (line,) = err.splitlines()
            assert line.startswith("fnrl.train: error: ") and "--process-id" in line, line
    finally:
        _end(processes)
