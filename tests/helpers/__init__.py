"""What several test modules use: running the CLI, reading outputs, finding processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Test processes share 2 cores: one thread for ops, one for scheduling.
THREAD_FLAGS = ("--intra_op_threads=1", "--inter_op_threads=1")


def cli_env(**extra: str) -> dict:
  env = dict(os.environ)
  env.pop("TF_CONFIG", None)
  env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
  env.update(extra)
  return env


def run_tfdist(*args: str, env: dict | None = None, timeout: float = 300,
               cwd: str = REPO) -> subprocess.CompletedProcess:
  """Runs `python -m tfdist ARGS` and returns the finished process (text output)."""
  return subprocess.run([sys.executable, "-m", "tfdist", *args], cwd=cwd, env=env or cli_env(),
                        capture_output=True, text=True, timeout=timeout)


def read_metrics(model_dir: str) -> dict:
  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    return json.load(f)


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
  """Exit 2, one line on stderr holding every fragment, no traceback."""
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert "Traceback" not in result.stderr + result.stdout


def processes_with(marker: str) -> list[int]:
  """Pids whose environment carries `marker` (what a launcher left running)."""
  found = []
  for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
      with open(f"/proc/{pid}/environ", "rb") as f:
        if marker.encode() in f.read():
          found.append(int(pid))
    except OSError:
      pass
  return found


def start_launch(spec, log_dir, command, launch_args=(), env=None) -> subprocess.Popen:
  """`tfdist launch` of `command` on `spec`, its output (all tasks') on the pipe."""
  return subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch", f"--cluster_spec={spec}", f"--log_dir={log_dir}",
       *launch_args, "--", *command],
      cwd=REPO, env=env or cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_backup(folder, number: int, proc: subprocess.Popen,
                    timeout_s: float = 120) -> None:
  """Waits until the CheckpointManager in `folder` has saved backup `number` (ckpt-<number>)."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    assert proc.poll() is None, "the run ended before it was killed"
    try:
      first_line = (folder / "checkpoint").read_text().splitlines()[0]
      if int(first_line.rsplit("ckpt-", 1)[1].rstrip('"')) >= number:
        return
    except (FileNotFoundError, IndexError, ValueError):
      pass  # not written yet, or caught mid-write
    time.sleep(0.05)
  raise AssertionError(f"no backup {number} in {folder} within {timeout_s} s")
