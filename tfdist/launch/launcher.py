"""Starts every task of a cluster spec on this machine, for development and tests.

Not a cluster manager: on real machines each task runs `tfdist train` with its
own TF_CONFIG, started by whatever runs jobs there.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Optional, Sequence, TextIO

from tfdist.cluster import AUTO_PORT, EVALUATOR, ClusterSpec, TaskId, tf_config
from tfdist.launch import policy
from tfdist.launch.process import TaskProcess, free_port

EXIT_INTERRUPTED = 130


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """Attributes:
    restarts: whole-job restarts after a failure (PSS: also single-worker restarts).
    log_dir: one `TYPE-INDEX.log` per task.
    stop_grace_s: SIGTERM-to-SIGKILL delay when stopping tasks.
    evaluator_grace_s: how long the evaluator may run on after training ends.
  """

  restarts: int = 0
  log_dir: str = "/tmp/tfdist/launch"
  stop_grace_s: float = 5.0
  evaluator_grace_s: float = 120.0


def resolve_ports(spec: ClusterSpec) -> ClusterSpec:
  """The spec with every `auto` port replaced by a free one."""
  ports = {t: free_port() for t in spec.tasks()
           if t.type != EVALUATOR and spec.address(t).endswith(":" + AUTO_PORT)}
  return spec.with_ports(ports)


def task_command(command: Sequence[str]) -> list[str]:
  """`tfdist ...` and `python ...` run with the launcher's own Python (and so its venv),
  whether or not that venv is on PATH."""
  command = list(command)
  if command and command[0] == "tfdist":
    return [sys.executable, "-m", "tfdist", *command[1:]]
  if command and command[0] in ("python", "python3"):
    return [sys.executable, *command[1:]]
  return command


class Launcher:
  """Runs one job: all tasks, their output, failures, restarts and signals.

  Example:
    code = Launcher(load_spec_file("configs/clusters/local-2workers.yaml"),
                    ["tfdist", "train"], LaunchOptions(restarts=1)).run()
  """

  def __init__(self, spec: ClusterSpec, command: Sequence[str], options: LaunchOptions,
               out: TextIO = sys.stdout):
    self.spec = spec
    self.command = task_command(command)
    self.options = options
    self.out = out
    self._out_lock = threading.Lock()
    self._stop_signal: Optional[int] = None
    self.restarts_used = 0

  def say(self, message: str) -> None:
    with self._out_lock:
      self.out.write(f"[launch] {message}\n")
      self.out.flush()

  def run(self) -> int:
    """Runs the job to its end; returns its exit status."""
    os.makedirs(self.options.log_dir, exist_ok=True)
    previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
      while True:
        code, failed = self._attempt()
        if code == 0 or self._stop_signal or self.restarts_used >= self.options.restarts:
          return code
        self.restarts_used += 1
        self.say(f"job failed ({failed}); restarting every task "
                 f"(restart {self.restarts_used} of {self.options.restarts})")
    finally:
      for sig, handler in previous.items():
        signal.signal(sig, handler)

  def _on_signal(self, signum, frame) -> None:
    del frame
    self._stop_signal = signum

  def _start(self, spec: ClusterSpec, task: TaskId) -> TaskProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TFDIST_TASK=str(task),
               TF_CONFIG=tf_config.emit(spec, task))
    log_path = os.path.join(self.options.log_dir, f"{task.type}-{task.index}.log")
    process = TaskProcess(task, self.command, env, log_path, self.out, self._out_lock)
    where = spec.address(task) if task.type != EVALUATOR else "no address"
    process.say(f"started {task} (pid {process.pid}, {where})")
    return process

  def _attempt(self) -> tuple[int, str]:
    """One run of every task; returns (exit status, what failed)."""
    spec = resolve_ports(self.spec)
    self.say(f"starting {len(list(spec.tasks()))} task(s): " + ", ".join(
        f"{t}={spec.address(t) if t.type != EVALUATOR else 'evaluator'}" for t in spec.tasks())
        + f"; logs in {self.options.log_dir}")
    running = {t: self._start(spec, t) for t in spec.tasks()}
    succeeded: set[TaskId] = set()
    task_restarts = 0
    try:
      while True:
        if self._stop_signal:
          name = signal.Signals(self._stop_signal).name
          self.say(f"{name} received; stopping every task")
          return EXIT_INTERRUPTED if self._stop_signal == signal.SIGINT else 143, name
        for task, process in list(running.items()):
          code = process.poll()
          if code is None:
            continue
          del running[task]
          process.stop(self.options.stop_grace_s)
          action = policy.on_exit(spec, task, code, succeeded,
                                  self.options.restarts - self.restarts_used - task_restarts)
          if code == 0:
            succeeded.add(task)
          else:
            self.say(f"{task} exited with status {code}")
          if action == policy.Action.JOB_DONE:
            self._finish(running)
            self.say("job finished: status 0")
            return 0, ""
          if action == policy.Action.FAIL_JOB:
            if code == 0:
              self.say(f"{task} ended while the chief still needs it")
            return code or 1, f"{task} exited with status {code}"
          if action == policy.Action.RESTART_TASK:
            task_restarts += 1
            self.say(f"worker lost: {task}; training goes on with the other workers; "
                     f"restarting {task}")
            running[task] = self._start(spec, task)
          elif code != 0 and task.type != EVALUATOR:
            self.say(f"worker lost: {task}; training goes on with the other workers")
        time.sleep(0.2)
    finally:
      for process in running.values():
        process.stop(self.options.stop_grace_s)

  def _finish(self, running: dict[TaskId, TaskProcess]) -> None:
    """After training: servers are stopped now; the evaluator gets time to finish."""
    evaluator = next((p for t, p in running.items() if t.type == EVALUATOR), None)
    for task in [t for t in running if t.type != EVALUATOR]:
      running.pop(task).stop(self.options.stop_grace_s)
    if evaluator is not None:
      deadline = time.monotonic() + self.options.evaluator_grace_s
      while evaluator.poll() is None and time.monotonic() < deadline and not self._stop_signal:
        time.sleep(0.2)
      if evaluator.poll() is None:
        self.say(f"evaluator still running {self.options.evaluator_grace_s:.0f} s after "
                 "training ended; stopping it")
