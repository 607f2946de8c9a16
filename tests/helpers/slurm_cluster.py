"""A private one-node SLURM cluster for tests: Debian's slurmctld, slurmd and munge, run as root.

Everything of it lives in one temp dir (its own slurm.conf, named through SLURM_CONF, its state,
spool, logs and pid files), its node is `localhost` at 127.0.0.1, and `stop()` ends what `start()`
started (munged too, unless it was already running).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from typing import Optional

from tfdist.launch import free_port

DAEMONS = ("slurmctld", "slurmd", "srun", "munged")
MUNGE_KEY = "/etc/munge/munge.key"
MUNGE_PID = "/run/munge/munged.pid"


def missing_programs() -> list[str]:
  return [name for name in DAEMONS if shutil.which(name) is None
          and not os.path.exists(f"/usr/sbin/{name}")]


def _program(name: str) -> str:
  return shutil.which(name) or f"/usr/sbin/{name}"


# Job states after which a job runs no more (squeue(1), JOB STATE CODES).
_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
          "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


class SlurmCluster:
  """Start with `start()`; run batch jobs with `sbatch(...)`; end with `stop()`."""

  def __init__(self, root: str):
    self.root = root
    self.conf = os.path.join(root, "slurm.conf")
    self._started_munge = False

  def env(self, **extra: str) -> dict:
    env = dict(os.environ, SLURM_CONF=self.conf)
    env.update(extra)
    return env

  def start(self, timeout_s: float = 60.0) -> None:
    for sub in ("state", "spool"):
      os.makedirs(os.path.join(self.root, sub), exist_ok=True)
    self._start_munge()
    node = subprocess.run([_program("slurmd"), "-C"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    # The machine's own CPU/memory line, with the node renamed to localhost at 127.0.0.1.
    hardware = " ".join(w for w in node.split() if not w.startswith(("NodeName=", "UpTime=")))
    with open(self.conf, "w", encoding="utf-8") as f:
      f.write(f"""ClusterName=tfdisttest
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
StateSaveLocation={self.root}/state
SlurmdSpoolDir={self.root}/spool
SlurmctldPidFile={self.root}/slurmctld.pid
SlurmdPidFile={self.root}/slurmd.pid
SlurmctldLogFile={self.root}/slurmctld.log
SlurmdLogFile={self.root}/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
""")
    env = self.env()
    subprocess.run([_program("slurmctld"), "-f", self.conf], env=env, check=True)
    subprocess.run([_program("slurmd"), "-f", self.conf, "-N", "localhost"], env=env, check=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      state = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], env=env, capture_output=True,
                             text=True).stdout.strip()
      if state in ("idle", "mix", "alloc"):
        return
      if state:
        subprocess.run(["scontrol", "update", "nodename=localhost", "state=resume"], env=env,
                       capture_output=True)
      time.sleep(0.5)
    raise RuntimeError(f"the test SLURM node did not become idle (state {state!r}); logs in "
                       f"{self.root}")

  def _start_munge(self) -> None:
    if _pid_alive(MUNGE_PID):
      return
    if not os.path.exists(MUNGE_KEY):
      os.makedirs(os.path.dirname(MUNGE_KEY), exist_ok=True)
      with open(MUNGE_KEY, "wb") as f:
        f.write(os.urandom(1024))
      shutil.chown(MUNGE_KEY, "munge", "munge")
      os.chmod(MUNGE_KEY, 0o400)
    os.makedirs("/run/munge", exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", _program("munged")], check=True)
    self._started_munge = True

  def sbatch(self, args: list[str], timeout_s: float = 600, poll_s: float = 0.5,
             **env: str) -> tuple[str, str]:
    """Submits a batch job and waits for its end; returns its (JobState, ExitCode)."""
    try:
      job_id = self.submit(args, **env)
    except subprocess.CalledProcessError as e:
      return "NOT_SUBMITTED", e.stderr.strip()
    fields = self.wait(job_id, timeout_s, poll_s)
    return fields["JobState"], fields.get("ExitCode", "")

  def submit(self, args: list[str], **env: str) -> str:
    """Submits a batch job; returns its id."""
    submitted = subprocess.run(["sbatch", "--parsable", *args], env=self.env(**env),
                               capture_output=True, text=True, timeout=60, check=True)
    return submitted.stdout.strip().split(";")[0]

  def job(self, job_id: str) -> dict:
    """`scontrol show job`'s fields (JobState, ExitCode, Restarts, ...)."""
    shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], env=self.env(),
                           capture_output=True, text=True, timeout=30)
    return dict(f.split("=", 1) for f in shown.stdout.split() if "=" in f)

  def wait(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.5) -> dict:
    """Waits for a job's end (a requeued job runs again first); returns its fields, with
    JobState TEST_TIMEOUT (and the job cancelled) if it did not end in time.

    It polls `scontrol` every `poll_s`: `sbatch --wait` polls ever more slowly (up to 10 s
    apart), which adds seconds to every job a test waits for.
    """
    deadline = time.monotonic() + timeout_s
    released = set()
    while time.monotonic() < deadline:
      fields = self.job(job_id)
      if fields.get("JobState") in _ENDED:
        return fields
      restarts = fields.get("Restarts")
      if (fields.get("JobState") == "PENDING" and fields.get("Reason") == "BeginTime"
          and restarts not in released):
        # SLURM holds a requeued job for about two minutes; the test lets it start sooner, once
        # its previous run is cleaned up (started at once, slurmd refuses it: "credential
        # revoked").
        released.add(restarts)
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now+20"],
                       env=self.env(), capture_output=True, timeout=30)
      time.sleep(poll_s)
    subprocess.run(["scancel", job_id], env=self.env(), timeout=30)
    return {"JobState": "TEST_TIMEOUT",
            "ExitCode": f"job {job_id} still running after {timeout_s:g} s (cancelled)"}

  def stop(self) -> None:
    for name in ("slurmd", "slurmctld"):
      _kill_by_pidfile(os.path.join(self.root, f"{name}.pid"))
    if self._started_munge:
      _kill_by_pidfile(MUNGE_PID)


def _read_pid(path: str) -> Optional[int]:
  try:
    with open(path, encoding="utf-8") as f:
      return int(f.read().strip())
  except (OSError, ValueError):
    return None


def _pid_alive(path: str) -> bool:
  pid = _read_pid(path)
  if pid is None:
    return False
  try:
    os.kill(pid, 0)
    return True
  except OSError:
    return False


def _kill_by_pidfile(path: str, grace_s: float = 10.0) -> None:
  pid = _read_pid(path)
  if pid is None:
    return
  try:
    os.kill(pid, signal.SIGTERM)
  except ProcessLookupError:
    return
  deadline = time.monotonic() + grace_s
  while time.monotonic() < deadline:
    try:
      os.kill(pid, 0)
    except ProcessLookupError:
      return
    time.sleep(0.1)
  try:
    os.kill(pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
