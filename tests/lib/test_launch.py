"""lmbook.launch: torchrun launches that return the ranks' values, report a failing rank, and never hang."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from lmbook.launch import LaunchError, free_port, resolve_target, run_workers, torchrun_command

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SLEEPER = "tests.lib.test_launch:sleep_forever"


def fail_on_rank_one():
    """Worker: rank 0 returns, rank 1 raises."""
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise ValueError("rank 1 refuses to take part")
    return "ok"


def sleep_forever():
    """Worker: never returns on its own."""
    time.sleep(600)


def _live_processes(marker: str) -> list[int]:
    """Process ids (not zombies) whose command line contains ``marker``, the test process itself left out."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(proc.name))
    return pids


def test_all_reduce_on_two_processes_returns_every_ranks_sum():
    results = run_workers("lmbook.launch:all_reduce_ranks", nprocs=2, timeout=60, n=3)
    expected = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * (1 + 2)
    assert len(results) == 2
    for result in results:
        torch.testing.assert_close(result, expected, rtol=0, atol=0)


def test_a_raising_rank_gives_its_traceback():
    with pytest.raises(LaunchError, match="rank 1 of 2") as info:
        run_workers("tests.lib.test_launch:fail_on_rank_one", nprocs=2, timeout=60)
    assert "ValueError: rank 1 refuses to take part" in str(info.value)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="finds leftover processes through /proc")
def test_the_timeout_kills_every_process():
    timeout = 6.0
    start = time.perf_counter()
    with pytest.raises(LaunchError, match="timeout of 6 s"):
        run_workers(SLEEPER, nprocs=2, timeout=timeout)
    assert time.perf_counter() - start < timeout + 8.0
    deadline = time.perf_counter() + 3.0
    while _live_processes(SLEEPER) and time.perf_counter() < deadline:
        time.sleep(0.1)
    assert _live_processes(SLEEPER) == []


def test_a_port_taken_before_torchrun_binds_it_is_replaced(monkeypatch):
    import socket

    import lmbook.launch

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        ports = [busy.getsockname()[1], free_port()]  # the first launch finds its port taken
        monkeypatch.setattr(lmbook.launch, "free_port", lambda: ports.pop(0))
        results = run_workers("lmbook.launch:rank_info", nprocs=1, timeout=60)
    assert ports == [] and results == [{"rank": 0, "world_size": 1, "backend": "gloo"}]


def test_the_printed_command_runs_the_function():
    command = torchrun_command("lmbook.launch:all_reduce_ranks", nprocs=1, n=2)
    assert command[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node" in command
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0 returned tensor([1., 2.], dtype=torch.float64)" in done.stdout


def test_the_command_writes_keyword_arguments_as_json_or_a_literal():
    command = torchrun_command("lmbook.launch:all_reduce_ranks", nprocs=3, n=5)
    assert command[command.index("--nproc-per-node") + 1] == "3"
    assert command[-2:] == ["--kwargs", '{"n": 5}']
    assert torchrun_command("lmbook.launch:all_reduce_ranks", sizes=(1, 2))[-1] == "{'sizes': (1, 2)}"
    with pytest.raises(TypeError, match="keyword argument x=Tensor cannot be written on a command line"):
        torchrun_command("lmbook.launch:all_reduce_ranks", x=torch.zeros(2))


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("lmbook.launch", ValueError, "must look like 'package.module:function'"),
        ("lmbook.no_such_module:f", LaunchError, "cannot import module 'lmbook.no_such_module'"),
        ("lmbook.launch:no_such_function", LaunchError, "has no attribute 'no_such_function'"),
        ("lmbook.launch:TRACEBACK_LINES", TypeError, "is a int, not a function"),
        ("__main__:train", ValueError, "put the function in a module"),
        (len, TypeError, "target must be a string"),
    ],
)
def test_bad_targets_are_named_before_any_launch(target, error, message):
    with pytest.raises(error, match=message):
        run_workers(target, nprocs=2, timeout=5)
    with pytest.raises(error, match=message):
        resolve_target(target)


def test_bad_process_counts_and_timeouts_are_refused():
    with pytest.raises(ValueError, match="nprocs must be a whole number >= 1, got 0"):
        run_workers("lmbook.launch:rank_info", nprocs=0)
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds, got 0"):
        run_workers("lmbook.launch:rank_info", nprocs=2, timeout=0)


def test_free_port_can_be_bound():
    import socket

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def _count_launches(monkeypatch, fail_first_startup: bool) -> list[int]:
    """Replace run_workers' command: record each launch; the first one fails to set up its process group if asked."""
    import sys

    import lmbook.launch

    real, calls = lmbook.launch._command, []

    def command(target, nprocs, port, worker_args):
        calls.append(port)
        if fail_first_startup and len(calls) == 1:  # what a rank writes when gloo cannot connect the processes
            out_dir = worker_args[worker_args.index("--out-dir") + 1]
            text = lmbook.launch._STARTUP_FAILED + "RuntimeError: Gloo connectFullMesh failed"
            return [
                sys.executable,
                "-c",
                f"import pathlib; pathlib.Path({out_dir!r}, 'error0.txt').write_text({text!r}); raise SystemExit(1)",
            ]
        return real(target, nprocs, port, worker_args)

    monkeypatch.setattr(lmbook.launch, "_command", command)
    return calls


def test_processes_that_cannot_connect_are_launched_again(monkeypatch):
    calls = _count_launches(monkeypatch, fail_first_startup=True)
    assert run_workers("lmbook.launch:rank_info", nprocs=1, timeout=60) == [
        {"rank": 0, "world_size": 1, "backend": "gloo"}
    ]
    assert len(calls) == 2


def test_a_failure_in_the_function_is_not_launched_again(monkeypatch):
    calls = _count_launches(monkeypatch, fail_first_startup=False)
    with pytest.raises(LaunchError, match="rank 1"):
        run_workers("tests.lib.test_launch:fail_on_rank_one", nprocs=2, timeout=60)
    assert len(calls) == 1
