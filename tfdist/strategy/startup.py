"""A bounded multi-worker start-up.

Creating a MultiWorkerMirroredStrategy whose peer never starts blocks inside
TensorFlow with the GIL held: no Python thread or signal handler runs, and
SIGTERM is ignored. So the deadline is kept by a small helper process: unless
disarmed in time (once the strategy exists, i.e. every peer is up), it finds
which peers are not reachable, prints one line naming them, and SIGKILLs the
stuck process. It covers the rendezvous only, not building or tracing a model.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Optional, Sequence

from tfdist.cluster import EVALUATOR, GRPC_START_FAILURE, TaskConfig


class StartupError(RuntimeError):
  """The cluster could not start (port taken, peer missing); the message names the task."""


def grpc_start_failure(config: TaskConfig, error: Exception) -> Optional[StartupError]:
  """A one-line StartupError for TensorFlow's 'Could not start gRPC server', else None."""
  if "Could not start gRPC server" not in str(error):
    return None
  address = config.cluster.address(config.task)
  port = address.rsplit(":", 1)[1]
  return StartupError(
      f"task {config.task} {GRPC_START_FAILURE} on {address} "
      f"(TensorFlow binds 0.0.0.0:{port}): the port is in use or cannot be bound")


class StartupWatchdog:
  """Ends this process if start-up has not finished within `timeout_s`.

  Example:
    with StartupWatchdog(task_config, 60):
      strategy = tf.distribute.MultiWorkerMirroredStrategy()  # waits for every peer
  """

  def __init__(self, config: TaskConfig, timeout_s: float):
    self.config = config
    self.timeout_s = timeout_s
    self._helper: Optional[subprocess.Popen] = None

  def arm(self) -> "StartupWatchdog":
    peers = [f"{t}={self.config.cluster.address(t)}" for t in self.config.cluster.tasks()
             if t.type != EVALUATOR and t != self.config.task]
    self._helper = subprocess.Popen(
        [sys.executable, "-m", "tfdist.strategy.startup", str(os.getpid()), str(self.timeout_s),
         str(self.config.task), *peers],
        stdin=subprocess.PIPE, close_fds=True)
    return self

  def disarm(self) -> None:
    if self._helper is not None:
      self._helper.stdin.close()  # EOF tells the helper that start-up finished.
      self._helper.wait()
      self._helper = None

  def __enter__(self) -> "StartupWatchdog":
    return self.arm()

  def __exit__(self, *exc_info) -> None:
    self.disarm()


def accepts_connections(address: str, timeout_s: float = 1.0) -> bool:
  """Whether `host:port` accepts a TCP connection (a task's gRPC server is up there)."""
  host, port = address.rsplit(":", 1)
  try:
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
      return True
  except OSError:  # refused, unresolvable, timed out
    return False


def unreachable(peers: Sequence[str], timeout_s: float = 1.0) -> list[str]:
  """The `task=host:port` entries whose port accepts no TCP connection."""
  return [peer for peer in peers
          if not accepts_connections(peer.split("=", 1)[1], timeout_s)]


def _watch(parent_pid: int, timeout_s: float, task: str, peers: Sequence[str]) -> int:
  deadline = time.monotonic() + timeout_s
  while (left := deadline - time.monotonic()) > 0:
    ready, _, _ = select.select([sys.stdin], [], [], left)
    if ready and not sys.stdin.buffer.read1(1024):
      return 0  # Disarmed, or the parent is gone.
  missing = unreachable(peers)
  if missing:
    names = ", ".join(f"{p.split('=')[0]} at {p.split('=')[1]}" for p in missing)
    reason = f"{names} did not come up"
  else:
    reason = "every peer's port is open but the cluster did not finish starting"
  print(f"tfdist train: error: task {task}: the cluster did not come together within "
        f"{timeout_s:g} s: {reason} (raise --startup_timeout if the peers are only slow "
        "to start)",
        file=sys.stderr, flush=True)
  try:
    os.kill(parent_pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  return 1


if __name__ == "__main__":
  sys.exit(_watch(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]))
