"""Training across machines: two torchrun "nodes" (two launchers on this machine, one gloo process each,
meeting through the c10d rendezvous) match one process, and a node that stops answering stops the other
with a clear message once the collective timeout has passed, instead of a hang."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.conftest import DATA_PARALLEL, REPO_ROOT, TINY_TEXTGEN, overrides
from tests.test_textgen_recipe import latest_weights, wait_for_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_command(text: Path, run_dir: Path, *extra: str) -> list[str]:
    settings = overrides(*TINY_TEXTGEN, f"data.path={text}", *extra)
    return ["-m", "seq2seq", "textgen", "train", "--run-dir", str(run_dir), *settings]


def node(port: int, command: list[str], log: Path) -> subprocess.Popen:
    """One node's launcher, ``torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d``, its output in ``log``."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"]
    launcher += ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "test"]
    with log.open("w") as output:
        return subprocess.Popen(
            [*launcher, "--no-python", sys.executable, *command],
            cwd=REPO_ROOT,
            env=ENV,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_for_rendezvous(port: int, first: subprocess.Popen, timeout: float = 60) -> None:
    """Until the first node serves the rendezvous on ``port`` (so that it, not the second, holds it)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert first.poll() is None, "the first node ended before serving the rendezvous"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"no rendezvous on port {port} within {timeout} s")


def test_two_nodes_match_a_single_process(single_process_run: tuple[Path, Path], tmp_path: Path) -> None:
    tiny_text, single = single_process_run
    port, shared = free_port(), tmp_path / "two_nodes"
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    nodes = [node(port, train_command(tiny_text, shared, *DATA_PARALLEL), log) for log in logs]
    for process, log in zip(nodes, logs):
        assert process.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert any("2 process(es)" in log.read_text() for log in logs)
    expected, actual = latest_weights(single), latest_weights(shared)
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-5)


def test_a_node_that_stops_answering_stops_the_other_with_a_clear_message(tiny_text: Path, tmp_path: Path) -> None:
    """A node frozen mid-run keeps its connections open: only the collective timeout ends the wait."""
    port, run_dir = free_port(), tmp_path / "run"
    command = train_command(tiny_text, run_dir, "train.max_steps=100000", "train.collective_timeout_s=5")
    survivor = node(port, command, tmp_path / "survivor.log")
    wait_for_rendezvous(port, survivor)
    doomed = node(port, command, tmp_path / "doomed.log")
    wait_for_checkpoint(run_dir, min_step=10, process=survivor)
    workers = subprocess.run(["ps", "-o", "pid=", "--ppid", str(doomed.pid)], capture_output=True, text=True)
    for pid in workers.stdout.split():
        os.kill(int(pid), signal.SIGSTOP)  # the node's training process, as if its machine hung
    try:
        assert survivor.wait(timeout=90) != 0
    finally:
        for pid in workers.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        doomed.kill()
        doomed.wait()
    output = (tmp_path / "survivor.log").read_text()
    assert "lost the other training processes" in output and "Start the same command on every node" in output
