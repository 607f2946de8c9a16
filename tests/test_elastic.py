"""Elastic restarts: a MultiWorkerMirrored run resumed on another number of workers keeps its
global batch and reads every example of the interrupted epoch once (the read-counting model
says so); `tfdist launch --min_workers` restarts a job without a worker that keeps failing."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.cluster_scripts import read_counts
from tests.helpers import (REPO, THREAD_FLAGS, assert_usage_error, cli_env, read_metrics,
                           run_tfdist, start_launch, wait_for_backup)
from tfdist.cluster import CHIEF, WORKER, ClusterSpec, TaskId
from tfdist.launch import policy

SPECS = os.path.join(REPO, "configs", "clusters")
# 4,096 ids at a global batch of 16: 256 steps an epoch, a backup every 10 steps.
COUNTING = ("--dataset=tests.cluster_scripts.read_counts:ids",
            "--model=tests.cluster_scripts.read_counts:counter", "--global_batch_size=16",
            "--epochs=2", "--backup_every_steps=10", "--save_share=0", "--steps_per_execution=2",
            "--params_override=train.export=false", *THREAD_FLAGS)


def test_a_spec_without_a_worker_moves_the_later_workers_down():
  spec = ClusterSpec.from_dict({"worker": ["a:1", "b:2", "c:3"]}, evaluators=1)
  assert spec.without(TaskId(WORKER, 1)).as_dict() == {"worker": ["a:1", "c:3"]}
  assert spec.without(TaskId(WORKER, 1)).evaluators == 1
  assert spec.without(TaskId(WORKER, 0)).as_dict() == {"worker": ["b:2", "c:3"]}


def test_only_a_failed_worker_is_left_out_and_only_while_enough_remain():
  two = ClusterSpec.from_dict({"worker": ["a:1", "b:2"]})
  chief_and_two = ClusterSpec.from_dict({"chief": ["c:9"], "worker": ["a:1", "b:2"]})
  with_ps = ClusterSpec.from_dict({"chief": ["c:9"], "worker": ["a:1", "b:2"], "ps": ["p:3"]})
  worker1 = TaskId(WORKER, 1)
  assert policy.worker_to_leave_out(two, worker1, min_workers=1) == worker1
  assert policy.worker_to_leave_out(two, worker1, min_workers=2) is None
  assert policy.worker_to_leave_out(two, worker1, min_workers=0) is None  # off
  assert policy.worker_to_leave_out(chief_and_two, worker1, min_workers=2) == worker1
  assert policy.worker_to_leave_out(chief_and_two, TaskId(CHIEF, 0), min_workers=1) is None
  assert policy.worker_to_leave_out(with_ps, worker1, min_workers=1) is None
  assert policy.worker_to_leave_out(two, None, min_workers=1) is None


@pytest.mark.cluster
def test_min_workers_is_refused_where_it_cannot_apply(tmp_path):
  command = ("--", "tfdist", "train")
  result = run_tfdist("launch", f"--cluster_spec={SPECS}/local-ps.yaml", "--min_workers=1",
                      f"--log_dir={tmp_path}", *command)
  assert_usage_error(result, "--min_workers: for MultiWorkerMirrored jobs")
  result = run_tfdist("launch", f"--cluster_spec={SPECS}/local-2workers.yaml", "--min_workers=3",
                      f"--log_dir={tmp_path}", *command)
  assert_usage_error(result, "--min_workers: 3 is more than the cluster's 2 worker(s)")


def _worker1_pid(log_dir, after: int = 0) -> int:
  """The pid of worker:1's latest start (its log names each), once it is not `after`."""
  deadline = time.monotonic() + 120
  while time.monotonic() < deadline:
    pids = re.findall(r"started worker:1 \(pid (\d+)", (log_dir / "worker-1.log").read_text())
    if pids and int(pids[-1]) != after:
      return int(pids[-1])
    time.sleep(0.1)
  raise AssertionError("worker:1 was not started again")


@pytest.mark.cluster
def test_a_worker_that_keeps_failing_is_left_out_and_the_epoch_still_reads_every_id_once(
    tmp_path):
  """2 workers; worker:1 SIGKILLed mid-epoch, restarted (--restarts=1), SIGKILLed again: the
  job restarts on 1 worker from the backup, and the interrupted epoch's remaining examples
  are read there, each once."""
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  backups = model_dir / "backup" / "chief"
  proc = start_launch(os.path.join(SPECS, "local-2workers.yaml"), log_dir,
                      ["tfdist", "train", f"--model_dir={model_dir}", "--loop=fit", *COUNTING],
                      launch_args=("--restarts=1", "--min_workers=1"))
  try:
    wait_for_backup(backups, 5, proc)
    first = _worker1_pid(log_dir)
    os.kill(first, signal.SIGKILL)
    wait_for_backup(backups, 9, proc, timeout_s=240)  # the restarted job is past its resume
    os.kill(_worker1_pid(log_dir, after=first), signal.SIGKILL)
    text = proc.communicate(timeout=400)[0]
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, text[-4000:]
  assert "restarting every task (restart 1 of 1)" in text
  assert ("[launch] worker:1 failed with no restarts left; restarting the job without it on 1 "
          "worker(s) (--min_workers=1)") in text, text[-4000:]
  assert re.search(r"Input: this run has 1 worker\(s\), the run it goes on with had 2", text)
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"]["epoch"] == 1 and metrics["resumed_from"]["step"] >= 80
  assert metrics["global_batch_size"] == 16
  assert read_counts.distinct_counts_by_epoch(model_dir, 2) == {1: {1}, 2: {2}}


@pytest.mark.cluster
def test_a_run_resumes_on_more_workers_with_the_same_global_batch(tmp_path):
  """The custom loop on one machine (2 replicas, 1 input pipeline), killed mid-epoch, goes on
  as a 2-worker job: the per-replica batch stays 8, the epoch's rest is dealt to both."""
  model_dir = tmp_path / "run"
  command = [sys.executable, "-m", "tfdist", "train", f"--model_dir={model_dir}", "--loop=custom",
             *COUNTING]
  proc = subprocess.Popen([*command, "--strategy=mirrored", "--cpu_replicas=2"], cwd=REPO,
                          env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    wait_for_backup(model_dir / "backup", 7, proc)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  launch = start_launch(os.path.join(SPECS, "local-2workers.yaml"), tmp_path / "logs",
                        ["tfdist", "train", f"--model_dir={model_dir}", "--loop=custom",
                         *COUNTING])
  text = launch.communicate(timeout=400)[0]
  assert launch.returncode == 0, text[-4000:]
  assert re.search(r"Input: this run has 2 worker\(s\), the run it goes on with had 1", text)
  assert "per-replica batch 8" in text
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"]["epoch"] == 1 and metrics["resumed_from"]["step"] >= 70
  assert read_counts.distinct_counts_by_epoch(model_dir, 2) == {1: {1}, 2: {2}}
