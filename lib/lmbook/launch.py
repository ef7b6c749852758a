"""Launching a function in several processes with ``torchrun``, safely enough to run inside a notebook.

Introduced in chapter 9 (compute, memory and scale) for its distributed demos: data parallelism, the ring
all-reduce, sharded data parallelism and model parallelism all run as real processes that talk through
``torch.distributed``, the way they run on a GPU cluster.

:func:`run_workers` runs ``target = "package.module:function"`` in ``nprocs`` processes started by PyTorch's
launcher (``python -m torch.distributed.run``, the ``torchrun`` command). Each process (a *rank*) joins the process
group first (the ``gloo`` backend on the CPU, ``nccl`` when every process on the machine has a GPU of its own,
see :func:`backend_and_device`), then calls ``function(**kwargs)``; the ranks' return values come back to the
caller in rank order, through files written with ``torch.save``. A demo must never hang a build, so each launch

- uses a free TCP port of its own (the operating system picks one when a socket binds to port 0; should another
  program take it before torchrun binds it, the launch starts again on another);
- has a timeout: when it passes, every process of the launch is killed and :class:`LaunchError` says so;
- captures each rank's traceback: a failing rank raises :class:`LaunchError` with the end of that traceback;
- gives each process one CPU thread (``OMP_NUM_THREADS=1``; set ``LMBOOK_WORKER_THREADS`` for more), so that two
  processes on a 2-core machine do not fight over the cores.

:func:`torchrun_command` is the command line of a launch, which is also how the same function runs on a GPU
cluster. The worker side of a launch is this module's own entry point: ``python -m lmbook.launch TARGET ...``.
Killing a process group (``os.killpg``) needs a POSIX system (Linux, macOS, Colab).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TRACEBACK_LINES = 25  # how many lines of a failing rank's traceback a LaunchError shows
_PRINT_LIMIT = 1000  # characters of rank 0's return value a command-line run prints
_KILL_GRACE = 5.0  # seconds torchrun gets to stop its workers after SIGTERM before everything is killed
_PORT_TRIES = 3  # launches on a fresh port when the port was taken or the processes failed to connect
_STARTUP_FAILED = "lmbook.launch: the process group could not be set up\n"  # first line of such a rank's error file


class LaunchError(RuntimeError):
    """A launch of :func:`run_workers` failed: a rank raised, a process died, or the timeout passed."""


def free_port() -> int:
    """A TCP port that is free now on this machine: the one the operating system gives a socket bound to port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resolve_target(target: str):
    """The function named by ``target = "package.module:function"``, imported; clear errors for a bad target.

    Raises:
        TypeError: ``target`` is not a string, or names something that is not callable.
        ValueError: ``target`` is not of the form ``"package.module:function"``, or names ``__main__`` (a
            function defined in a notebook or script cannot be imported by the worker processes).
        LaunchError: the module cannot be imported, or has no such function.
    """
    if not isinstance(target, str):
        raise TypeError(f"target must be a string 'package.module:function', got {type(target).__name__}")
    module_name, sep, function_name = target.partition(":")
    if not sep or not module_name or not function_name or ":" in function_name:
        raise ValueError(f"target must look like 'package.module:function', got {target!r}")
    if module_name == "__main__":
        raise ValueError(
            f"target {target!r} is in __main__ (a notebook or a script): the worker processes cannot import it; "
            "put the function in a module (a .py file) and name it as 'module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise LaunchError(f"target {target!r}: cannot import module {module_name!r} ({err})") from err
    function = module
    for part in function_name.split("."):
        if not hasattr(function, part):
            raise LaunchError(f"target {target!r}: module {module_name!r} has no attribute {function_name!r}")
        function = getattr(function, part)
    if not callable(function):
        raise TypeError(f"target {target!r} is a {type(function).__name__}, not a function")
    return function


def _module_root(module_name: str) -> str | None:
    """The directory a worker must have on its path to import ``module_name`` the way this process does."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    root = Path(path).resolve().parent
    if Path(path).name == "__init__.py":
        root = root.parent
    for _ in range(module_name.count(".")):
        root = root.parent
    return str(root)


def _literal(kwargs: dict) -> str:
    """``kwargs`` as JSON (which a shell quotes cleanly) or else as a Python literal (tuples, for instance).

    Raises a TypeError naming the argument that can be written as neither.
    """
    for key, value in kwargs.items():
        try:
            if ast.literal_eval(repr(value)) != value:
                raise ValueError
        except (ValueError, SyntaxError) as err:
            raise TypeError(
                f"keyword argument {key}={type(value).__name__} cannot be written on a command line (only numbers, "
                "strings, booleans, None, and lists, tuples and dicts of them); run_workers passes any value "
                "torch.save can write"
            ) from err
    try:
        text = json.dumps(kwargs)
        if json.loads(text) == kwargs:
            return text
    except (TypeError, ValueError):  # keys that are not strings, numbers out of JSON's range
        pass
    return repr(kwargs)


def _command(target: str, nprocs: int, port: int, worker_args: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nprocs),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "lmbook.launch",
        target,
        *worker_args,
    ]


def _check_launch(target: str, nprocs: int) -> None:
    resolve_target(target)
    if isinstance(nprocs, bool) or not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"nprocs must be a whole number >= 1, got {nprocs!r}")


def torchrun_command(target: str, nprocs: int = 2, **kwargs) -> list[str]:
    """The command line that runs ``target`` in ``nprocs`` processes, each calling ``function(**kwargs)``.

    It is ``torchrun`` run by this Python (``python -m torch.distributed.run``, so the same environment, also on
    Colab) on a free port, starting ``python -m lmbook.launch TARGET --kwargs '{...}'`` once per process (print it
    with ``shlex.join``). On a machine with ``nprocs`` GPUs the same command uses NCCL and one GPU per process.
    The keyword arguments are written as JSON (or, for tuples, as a Python literal), so they must be numbers,
    strings, booleans, None or containers of them;
    :func:`run_workers` runs the same command with its arguments in a file instead, and so takes any value.
    """
    _check_launch(target, nprocs)
    return _command(target, nprocs, free_port(), ["--kwargs", _literal(kwargs)])


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_all(proc: subprocess.Popen, run_dir: Path) -> None:
    """Stop a launch: torchrun (which stops its workers), then any worker left, each in its own session."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_KILL_GRACE)
    except subprocess.TimeoutExpired:
        pass
    for pid_file in run_dir.glob("pid*"):
        try:
            _kill_group(int(pid_file.read_text()), signal.SIGKILL)
        except ValueError:  # a pid file caught half written
            pass
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _tail(text: str, lines: int = TRACEBACK_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_workers(target: str, nprocs: int = 2, timeout: float = 120.0, **kwargs) -> list:
    """Run ``target`` in ``nprocs`` processes started by torchrun and return the ranks' return values in rank order.

    Each process joins the process group (gloo on the CPU, nccl when every process has a GPU), calls
    ``function(**kwargs)`` and sends back what it returns (anything ``torch.save`` can write; tensors come back on
    the CPU). The function must live in an importable module, not in a notebook.

    Args:
        target: ``"package.module:function"``.
        nprocs: the number of processes (the world size, at least 1).
        timeout: seconds the whole launch may take, start-up included (about 5 s for 2 processes on a CPU).
        **kwargs: the function's keyword arguments, the same for every rank.

    Raises:
        LaunchError: a rank raised (the message names the rank and ends with its traceback), a process died
            without a traceback (the message ends with the launcher's output), or the timeout passed (every
            process of the launch has been killed when it is raised).
        ValueError, TypeError: a badly formed target or ``nprocs``, a timeout that is not positive.
    """
    import torch

    _check_launch(target, nprocs)
    if not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    run_dir = Path(tempfile.mkdtemp(prefix="lmbook-launch-"))
    try:
        torch.save(kwargs, run_dir / "kwargs.pt")
        env = dict(os.environ)
        threads = env.get("LMBOOK_WORKER_THREADS", "1")
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
        root = _module_root(target.partition(":")[0])
        if root is not None:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        deadline = time.monotonic() + timeout
        for attempt in range(1, _PORT_TRIES + 1):
            worker_args = ["--kwargs-file", str(run_dir / "kwargs.pt"), "--out-dir", str(run_dir)]
            command = _command(target, nprocs, free_port(), worker_args)
            with open(run_dir / "torchrun.log", "wb") as log:
                proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    _kill_all(proc, run_dir)
                    raise LaunchError(
                        f"{target} on {nprocs} processes did not finish within the timeout of {timeout:g} s; "
                        "every process of the launch was killed"
                    ) from None
                except BaseException:  # an interrupted kernel must not leave the processes running
                    _kill_all(proc, run_dir)
                    raise
            output = (run_dir / "torchrun.log").read_text(errors="replace")
            errors = [f.read_text(errors="replace") for f in run_dir.glob("error*")]
            # Another program took the free port between our look and torchrun's bind (no worker ran), or the
            # processes could not connect to each other (gloo's "connectFullMesh failed" on a loaded machine):
            # no rank has run the function yet, so the launch starts again on another port.
            port_taken = "EADDRINUSE" in output and not errors
            startup_failed = bool(errors) and all(e.startswith(_STARTUP_FAILED) for e in errors)
            if proc.returncode == 0 or not (port_taken or startup_failed) or attempt == _PORT_TRIES:
                break
            for leftover in [*run_dir.glob("error*"), *run_dir.glob("pid*"), *run_dir.glob("result*")]:
                leftover.unlink()
        if proc.returncode != 0:
            for rank in range(nprocs):
                error_file = run_dir / f"error{rank}.txt"
                if error_file.exists():
                    raise LaunchError(
                        f"{target} failed on rank {rank} of {nprocs}; the end of its traceback:\n"
                        + _tail(error_file.read_text(errors="replace"))
                    )
            raise LaunchError(
                f"{target} on {nprocs} processes: torchrun exited with code {proc.returncode} and no rank left a "
                "traceback; the end of its output:\n" + _tail(output)
            )
        results = []
        for rank in range(nprocs):
            result_file = run_dir / f"result{rank}.pt"
            if not result_file.exists():
                raise LaunchError(
                    f"{target}: rank {rank} wrote no result; the end of torchrun's output:\n" + _tail(output)
                )
            results.append(torch.load(result_file, map_location="cpu", weights_only=False))
        return results
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def backend_and_device():
    """This process's ``torch.distributed`` backend and device, from the variables torchrun sets.

    ``("nccl", cuda:LOCAL_RANK)`` when the machine has a GPU for every local process, else ``("gloo", cpu)``: the
    one rule that lets the same worker run on a laptop's CPU and on a GPU cluster.
    """
    import torch

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= local_world_size:
        return "nccl", torch.device("cuda", local_rank)
    return "gloo", torch.device("cpu")


def worker_device():
    """The device a worker computes on: its own GPU under NCCL, else the CPU (see :func:`backend_and_device`)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return backend_and_device()[1]
    import torch

    return torch.device("cpu")


def _main(argv: list[str] | None = None) -> None:
    """The worker entry point: ``python -m lmbook.launch TARGET [--kwargs JSON | --kwargs-file F] [--out-dir D]``."""
    parser = argparse.ArgumentParser(prog="python -m lmbook.launch", description=_main.__doc__)
    parser.add_argument("target", help="package.module:function")
    parser.add_argument("--kwargs", default="{}", help="the keyword arguments as JSON or a Python literal")
    parser.add_argument("--kwargs-file", help="the keyword arguments, saved with torch.save")
    parser.add_argument("--out-dir", help="where each rank writes its result (resultR.pt) or traceback (errorR.txt)")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    out_dir = Path(args.out_dir) if args.out_dir else None
    if out_dir is not None:
        (out_dir / f"pid{rank}").write_text(str(os.getpid()))
    try:
        import torch
        import torch.distributed as dist

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        function = resolve_target(args.target)
        if args.kwargs_file:
            kwargs = torch.load(args.kwargs_file, weights_only=False)
        else:
            try:
                kwargs = json.loads(args.kwargs)
            except ValueError:
                kwargs = ast.literal_eval(args.kwargs)
        backend, dev = backend_and_device()
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        try:
            dist.init_process_group(backend)
            if dist.get_world_size() > 1:
                dist.barrier()  # every connection is made before any rank runs the function
        except BaseException:
            if out_dir is not None:
                (out_dir / f"error{rank}.txt").write_text(_STARTUP_FAILED + traceback.format_exc())
            raise
        result = function(**kwargs)
        dist.destroy_process_group()
    except BaseException:
        if out_dir is not None and not (out_dir / f"error{rank}.txt").exists():
            (out_dir / f"error{rank}.txt").write_text(traceback.format_exc())
        raise
    if out_dir is not None:
        torch.save(result, out_dir / f"result{rank}.tmp")
        os.replace(out_dir / f"result{rank}.tmp", out_dir / f"result{rank}.pt")
    elif rank == 0:
        text = repr(result)
        cut = f" ... ({len(text):,} characters in all)" if len(text) > _PRINT_LIMIT else ""
        print(f"rank 0 returned {text[:_PRINT_LIMIT]}{cut}")


# tiny workers for the tests and the chapter: each rank's view of the simplest collective


def rank_info() -> dict:
    """Worker: this rank's number, the world size and the backend."""
    import torch.distributed as dist

    return {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "backend": dist.get_backend()}


def all_reduce_ranks(n: int = 4):
    """Worker: ``dist.all_reduce`` of ``(rank + 1) * [1, 2, ..., n]``; every rank gets the same sum back."""
    import torch
    import torch.distributed as dist

    x = (dist.get_rank() + 1) * torch.arange(1, n + 1, dtype=torch.float64, device=worker_device())
    dist.all_reduce(x)
    return x.cpu()


if __name__ == "__main__":
    _main()
