"""Starting ``python -m fnrl.train`` processes for the multi-process tests, on 127.0.0.1."""

import os
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent  # its env modules (hanging_envs) import from here
REPO = HERE.parents[1]
TWO_DEVICES = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pytest_with_two_devices(*args: str) -> subprocess.CompletedProcess:
    """``pytest -q *args`` in a process with two CPU devices, output captured, within 10 min."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        env=TWO_DEVICES,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def start_train(
    mode: str, log_dir: Path, *flags: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """A training process of ``mode`` with 4 envs on one CPU device, its output piped; the env
    modules of this directory import (``--env-id hanging_envs:Hangs-v0``); ``env`` adds to its
    environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "fnrl.train", mode, "--log-dir", str(log_dir), "-n", "4", *flags],
        env={
            **os.environ,
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_towered_process(port: int, index: int, log_dir: Path, *flags: str) -> subprocess.Popen:
    """Process ``index`` of a two-process towered run whose coordinator is 127.0.0.1:``port``."""
    return start_train(
        "towered",
        log_dir,
        "--coordinator-address",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--process-id",
        str(index),
        *flags,
    )
