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

from tfdist.cluster import AUTO_PORT, EVALUATOR, WORKER, ClusterSpec, TaskId, tf_config
from tfdist.launch import policy
from tfdist.launch.emulated_link import EmulatedNetwork, Link, remove_stale
from tfdist.launch.process import TaskProcess, free_port, stop_all

# Closing the terminal (SIGHUP) stops the job as Ctrl-C and SIGTERM do; SIGKILL to the launcher
# cannot be caught: there the kernel ends the tasks (see process.py). Exit status: 128 + signal.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# New ports after a port was taken between picking it and binding it, before giving up.
_MAX_PORT_RETRIES = 3
# Free restarts after preemptions (each needs a SIGTERM from outside), before they count.
_MAX_PREEMPTIONS = 20
# How long the peers of a preempted task may take to save and end by themselves.
_PREEMPTED_SAVE_S = 120.0


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """Attributes:
    restarts: whole-job restarts after a failure (PSS: also single-worker restarts).
    log_dir: one `TYPE-INDEX.log` per task.
    stop_grace_s: SIGTERM-to-SIGKILL delay when stopping tasks.
    evaluator_grace_s: how long the evaluator may run on after training ends.
    link: run each task in a network namespace of its own, on a link of this rate
      (emulated_link.py); None: every task on this machine's loopback.
    min_workers: a MultiWorkerMirrored job whose restarts are used up restarts without the
      worker that failed while this many remain (0: it fails).
  """

  restarts: int = 0
  log_dir: str = "/tmp/tfdist/launch"
  stop_grace_s: float = 5.0
  evaluator_grace_s: float = 120.0
  link: Optional[Link] = None
  min_workers: int = 0


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

  One budget of `restarts` covers the whole job: whole-job restarts and
  single-worker restarts alike. A task that exits 2 (a user error) is never
  restarted. Two restarts cost nothing: of a job whose task could not bind an
  `auto` port (on new ports: it was taken after it was picked), and of a job
  that was preempted (status 75) after saving its state.

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
    self.network: Optional[EmulatedNetwork] = None
    self.restarts_used = 0
    self.port_retries = 0
    self.preemptions = 0
    # Every task of this job, restarts included, shares one run id (the sidecar follows it).
    self.run_id = (os.environ.get(tf_config.RUN_ID_VAR, "").strip()
                   or f"launch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")

  def say(self, message: str) -> None:
    with self._out_lock:
      self.out.write(f"[launch] {message}\n")
      self.out.flush()

  def run(self) -> int:
    """Runs the job to its end; returns its exit status."""
    os.makedirs(self.options.log_dir, exist_ok=True)
    previous = {sig: signal.signal(sig, self._on_signal) for sig in _STOP_SIGNALS}
    try:
      if self.options.link is not None:
        self._make_network(self.options.link)
      while True:
        outcome = self._attempt()
        if outcome.code == 0 or self._stop_signal:
          return outcome.code
        if outcome.preempted and self.preemptions < _MAX_PREEMPTIONS:
          self.preemptions += 1
          self.say(f"{outcome.failed} was preempted and the job saved its state; starting the job "
                   "again, which resumes at that step (not counted as a restart)")
          continue
        if outcome.port_in_use and self.port_retries < _MAX_PORT_RETRIES:
          self.port_retries += 1
          self.say(f"{outcome.failed}: its port was taken after it was picked; starting the job "
                   f"again on new ports (not counted as a restart)")
          continue
        if not outcome.restartable:
          return outcome.code
        if self.restarts_used >= self.options.restarts:
          left_out = policy.worker_to_leave_out(self.spec, outcome.task,
                                                self.options.min_workers)
          if left_out is None:
            return outcome.code
          self.spec = self.spec.without(left_out)
          self.say(f"{left_out} failed with no restarts left; restarting the job without it on "
                   f"{self.spec.num_compute_workers} worker(s) (--min_workers="
                   f"{self.options.min_workers}); training resumes from its last backup")
          continue
        self.restarts_used += 1
        self.say(f"job failed ({outcome.failed}); restarting every task "
                 f"(restart {self.restarts_used} of {self.options.restarts})")
    finally:
      if self.network is not None:
        self.network.remove()
      for sig, handler in previous.items():
        signal.signal(sig, handler)

  def _make_network(self, link: Link) -> None:
    """The job's emulated network, for every task with an address (not the evaluator)."""
    stale = remove_stale()
    if stale:
      self.say(f"removed {len(stale)} network namespace(s) of launchers that no longer run")
    tasks = [t for t in self.spec.tasks() if t.type != EVALUATOR]
    self.network = EmulatedNetwork(link, tasks)
    self.network.create()  # (what it made is removed by `run`, however it ends)
    self.say(f"emulated link: {link.text}"
             + (f" with {link.delay} delay" if link.delay else "")
             + f", each task in its own network namespace ({self.network.hub} joins them)")

  def _on_signal(self, signum, frame) -> None:
    del frame
    self._stop_signal = signum

  def _start(self, spec: ClusterSpec, task: TaskId) -> TaskProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TFDIST_TASK=str(task),
               TF_CONFIG=tf_config.emit(spec, task), **{tf_config.RUN_ID_VAR: self.run_id})
    command = self.command
    if self.network is not None and task in self.network.hosts:
      env.update(self.network.environment())
      command = self.network.command(task, command)
    log_path = os.path.join(self.options.log_dir, f"{task.type}-{task.index}.log")
    process = TaskProcess(task, command, env, log_path, self.out, self._out_lock)
    where = spec.address(task) if task.type != EVALUATOR else "no address"
    process.say(f"started {task} (pid {process.pid}, {where})")
    return process

  def _attempt(self) -> "_Outcome":
    """One run of every task, to the job's end or its first failure."""
    spec = resolve_ports(self.spec)
    if self.network is not None:
      spec = spec.with_hosts(self.network.hosts)
    self.say(f"starting {len(list(spec.tasks()))} task(s): " + ", ".join(
        f"{t}={spec.address(t) if t.type != EVALUATOR else 'evaluator'}" for t in spec.tasks())
        + f"; logs in {self.options.log_dir}")
    running = {t: self._start(spec, t) for t in spec.tasks()}
    succeeded: set[TaskId] = set()
    lost: set[TaskId] = set()
    try:
      while True:
        if self._stop_signal:
          name = signal.Signals(self._stop_signal).name
          self.say(f"{name} received; stopping every task")
          return _Outcome(128 + self._stop_signal, name, restartable=False)
        for task, process in list(running.items()):
          code = process.poll()
          if code is None:
            continue
          del running[task]
          process.close()
          action = policy.on_exit(spec, task, code, succeeded, lost,
                                  self.options.restarts - self.restarts_used)
          if code == 0:
            succeeded.add(task)
          else:
            self.say(f"{task} exited with status {code}")
          if action == policy.Action.JOB_DONE:
            self._finish(running)
            self.say("job finished: status 0")
            return _Outcome(0, "")
          if process.port_in_use and self.spec.has_auto_ports:
            return _Outcome(code or 1, f"{task}", port_in_use=True)
          if action == policy.Action.PREEMPTED:
            # Every peer saves at the same step and ends too: give them time to finish saving.
            stop_all([running.pop(t) for t in list(running) if t.type != EVALUATOR],
                     self.options.stop_grace_s, wait_first_s=_PREEMPTED_SAVE_S)
            return _Outcome(code, f"{task}", preempted=True)
          if action in (policy.Action.FAIL_JOB, policy.Action.STOP_JOB):
            if action == policy.Action.STOP_JOB:
              self.say(f"{task} reported a user error (status {code}); not restarting")
            elif task.type == WORKER and spec.num_ps:
              self.say("every worker is lost and no restarts are left; the job fails")
            return _Outcome(code or 1, f"{task} exited with status {code}",
                            restartable=action == policy.Action.FAIL_JOB, task=task)
          if action == policy.Action.RESTART_TASK:
            self.restarts_used += 1
            self.say(f"worker lost: {task}; training goes on with the other workers; "
                     f"restarting {task} (restart {self.restarts_used} of "
                     f"{self.options.restarts})")
            running[task] = self._start(spec, task)
          elif code != 0 and task.type != EVALUATOR:
            lost.add(task)
            self.say(f"worker lost: {task}; training goes on with the other workers")
        time.sleep(0.2)
    finally:
      stop_all(running.values(), self.options.stop_grace_s)

  def _finish(self, running: dict[TaskId, TaskProcess]) -> None:
    """After training: servers are stopped now; the evaluator gets time to finish."""
    evaluator = next((p for t, p in running.items() if t.type == EVALUATOR), None)
    stop_all([running.pop(t) for t in list(running) if t.type != EVALUATOR],
             self.options.stop_grace_s)
    if evaluator is not None:
      deadline = time.monotonic() + self.options.evaluator_grace_s
      while evaluator.poll() is None and time.monotonic() < deadline and not self._stop_signal:
        time.sleep(0.2)
      if evaluator.poll() is None:
        self.say(f"evaluator still running {self.options.evaluator_grace_s:.0f} s after "
                 "training ended; stopping it")


@dataclasses.dataclass(frozen=True)
class _Outcome:
  """How one attempt at the job ended."""

  code: int
  failed: str                # what failed, for the launcher's message
  restartable: bool = True   # False: a user error or a stop signal; a restart cannot help
  port_in_use: bool = False  # a task could not bind its (auto) port
  preempted: bool = False    # a task was preempted (status 75) after the job saved its state
  task: Optional[TaskId] = None  # the task whose failure ended the attempt
