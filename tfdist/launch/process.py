"""One task's process: started in its own session, output prefixed and logged, stopped for sure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from typing import Optional, Sequence, TextIO

from tfdist.cluster import TaskId


def free_port(host: str = "127.0.0.1") -> int:
  """A port the OS says is free now (another process may still take it before the task binds)."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind((host, 0))
    return s.getsockname()[1]


class TaskProcess:
  """A task's command with its own TF_CONFIG.

  Each line it prints goes to `out` as `[worker:1] line` and to its log file.
  The process leads its own process group, so stopping it stops its children.
  """

  def __init__(self, task: TaskId, command: Sequence[str], env: dict, log_path: str,
               out: TextIO, out_lock: threading.Lock):
    self.task = task
    self._log = open(log_path, "a", encoding="utf-8", buffering=1)
    self._out = out
    self._out_lock = out_lock
    self.started = time.monotonic()
    self._proc = subprocess.Popen(
        list(command), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, start_new_session=True, bufsize=1, text=True,
        errors="replace")
    self._reader = threading.Thread(target=self._pump, name=f"output-{task}", daemon=True)
    self._reader.start()

  @property
  def pid(self) -> int:
    return self._proc.pid

  def _pump(self) -> None:
    prefix = f"[{self.task}] "
    for line in self._proc.stdout:
      self._log.write(line)
      with self._out_lock:
        self._out.write(prefix + line)
        self._out.flush()
    self._log.flush()

  def poll(self) -> Optional[int]:
    return self._proc.poll()

  def say(self, message: str) -> None:
    """Writes a launcher line into this task's log too."""
    self._log.write(f"[launch] {message}\n")

  def stop(self, grace_s: float) -> int:
    """SIGTERM to the group, SIGKILL after `grace_s` (a hung TF start-up ignores SIGTERM)."""
    if self._proc.poll() is None:
      self._signal(signal.SIGTERM)
      try:
        self._proc.wait(grace_s)
      except subprocess.TimeoutExpired:
        self._signal(signal.SIGKILL)
    code = self._proc.wait()
    self._signal(signal.SIGKILL)  # Children left in the group, if any.
    self._reader.join(timeout=5)
    self._log.close()
    return code

  def _signal(self, sig: int) -> None:
    try:
      os.killpg(self._proc.pid, sig)
    except (ProcessLookupError, PermissionError):
      pass
