"""The worker processes of `memsim validate`, which never outlive the command that started them.

A worker runs in a session of its own (its process group holds it and anything it starts). The
command kills that group when it stops early: on Ctrl-C (KeyboardInterrupt), on SIGTERM (raised
as KeyboardInterrupt while a run is on, stop_on_signals) and on a timeout. Where the command is
killed outright (SIGKILL), the worker dies with it: on Linux it asks the kernel to kill it when
its parent exits (memsim.executors.worker, PR_SET_PDEATHSIG). No torch here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass


@dataclass
class WorkerResult:
    returncode: int
    stdout: str
    stderr: str


def run_worker(args: list[str], timeout_s: float) -> WorkerResult | None:
    """`python -m memsim.executors.worker ARGS` to its end; None where it ran past `timeout_s`.
    However this call ends, the worker's process group is gone when it returns or raises."""
    with subprocess.Popen([sys.executable, "-m", "memsim.executors.worker", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return None
        except BaseException:  # KeyboardInterrupt (Ctrl-C, or SIGTERM under stop_on_signals), SystemExit
            _kill_group(proc)
            raise
        _kill_group(proc)  # anything the worker started and left behind
        return WorkerResult(proc.returncode, stdout, stderr)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session: the group's id is the worker's pid
    with contextlib.suppress(Exception):
        proc.wait(timeout=30)  # reaps it (killed: it writes nothing more to the pipes)


@contextlib.contextmanager
def stop_on_signals():
    """SIGTERM raised as KeyboardInterrupt('SIGTERM') while the block runs, so that a terminated
    command kills its worker and exits as a Ctrl-C does (signals are the main thread's only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def torch_device() -> str:
    """'cuda' where torch sees a CUDA GPU, 'cpu' where it sees none, '' where torch is not
    installed: asked of a fresh interpreter, as memsim itself never imports torch."""
    code = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    last = r.stdout.strip().splitlines()[-1:]  # the answer, after anything an import printed
    return last[0] if r.returncode == 0 and last else ""
