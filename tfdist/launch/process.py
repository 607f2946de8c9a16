"""One task's process: started in its own session, output prefixed and logged, stopped for sure.

A task never outlives its launcher: each leads its own process group (so stopping
it stops its children), and on Linux the kernel sends it SIGKILL when the
launcher dies, however it dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Iterable, Optional, Sequence, TextIO

from tfdist.cluster import GRPC_START_FAILURE, TaskId

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
  """A port the OS says is free now (another process may still take it before the task binds)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    return s.getsockname()[1]


def _parent_death_signal() -> Optional[Callable[[], None]]:
  """A preexec function that asks the kernel to SIGKILL the child when its parent dies.

  Resolved here, before any fork: between fork and exec the child may only make the
  system call (no imports, no locks).
  """
  try:
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
  except (OSError, AttributeError):
    return None  # Not Linux: SIGHUP/SIGTERM handling in the launcher still stops the tasks.
  launcher = os.getpid()

  def preexec() -> None:
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != launcher:  # The launcher died before the request took effect.
      os._exit(1)  # pylint: disable=protected-access

  return preexec


class TaskProcess:
  """A task's command with its own TF_CONFIG.

  Each line it prints goes to `out` as `[worker:1] line` and to its log file.
  """

  def __init__(self, task: TaskId, command: Sequence[str], env: dict, log_path: str,
               out: TextIO, out_lock: threading.Lock):
    self.task = task
    self._log = open(log_path, "a", encoding="utf-8", buffering=1)
    self._out = out
    self._out_lock = out_lock
    self.started = time.monotonic()
    self.port_in_use = False  # it said its gRPC server could not bind its port
    self._proc = subprocess.Popen(
        list(command), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, bufsize=1, text=True,
        errors="replace", preexec_fn=_parent_death_signal())
    self._reader = threading.Thread(target=self._pump, name=f"output-{task}", daemon=True)
    self._reader.start()

  @property
  def pid(self) -> int:
    return self._proc.pid

  def _pump(self) -> None:
    prefix = f"[{self.task}] "
    for line in self._proc.stdout:
      self.port_in_use = self.port_in_use or GRPC_START_FAILURE in line
      self._log.write(line)
      with self._out_lock:
        self._out.write(prefix + line)
        self._out.flush()
    self._log.flush()

  def poll(self) -> Optional[int]:
    code = self._proc.poll()
    if code is not None:
      self._reader.join(timeout=5)  # All its output is read (port_in_use is final).
    return code

  def say(self, message: str) -> None:
    """Writes a launcher line into this task's log too."""
    self._log.write(f"[launch] {message}\n")

  def signal(self, sig: int) -> None:
    """Sends `sig` to the task's whole process group."""
    try:
      os.killpg(self._proc.pid, sig)
    except (ProcessLookupError, PermissionError):
      pass

  def close(self) -> int:
    """After the task exited: reaps it, kills what it left in its group, closes its log."""
    code = self._proc.wait()
    self.signal(signal.SIGKILL)
    self._reader.join(timeout=5)
    self._log.close()
    return code


def stop_all(processes: Iterable[TaskProcess], grace_s: float, wait_first_s: float = 0.0) -> None:
  """SIGTERM to every task at once, SIGKILL to those still running `grace_s` later.

  A hung TensorFlow start-up ignores SIGTERM; only SIGKILL ends it. With
  `wait_first_s`, tasks that are ending by themselves get that long first.
  """
  processes = list(processes)
  for sig, wait_s in ((None, wait_first_s), (signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
    for process in processes:
      if sig is not None and process.poll() is None:
        process.signal(sig)
    deadline = time.monotonic() + wait_s
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
      time.sleep(0.05)
  for process in processes:
    process.close()
