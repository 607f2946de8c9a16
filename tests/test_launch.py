"""The local launcher with plain Python tasks (no TensorFlow): output, logs, exits, signals."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tfdist.cluster import ClusterSpec, TaskId
from tfdist.launch import policy
from tests.conftest import REPO, cli_env

SPEC_2W = os.path.join(REPO, "configs", "clusters", "local-2workers.yaml")
SPEC_PS = os.path.join(REPO, "configs", "clusters", "local-ps-eval.yaml")


def launch(*args, env=None, timeout=120):
  return subprocess.run([sys.executable, "-m", "tfdist", "launch", *args], cwd=REPO,
                        env=env or cli_env(), capture_output=True, text=True, timeout=timeout)


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


def test_output_is_prefixed_and_logged_per_task(tmp_path):
  script = "import os, json; print('task', os.environ['TFDIST_TASK'], json.loads(os.environ['TF_CONFIG'])['task'])"
  result = launch(f"--cluster_spec={SPEC_2W}", f"--log_dir={tmp_path}", "--", "python", "-c", script)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "[worker:0] task worker:0 {'index': 0, 'type': 'worker'}" in result.stdout
  assert "[worker:1] task worker:1 {'index': 1, 'type': 'worker'}" in result.stdout
  assert "[launch] job finished: status 0" in result.stdout
  assert sorted(os.listdir(tmp_path)) == ["worker-0.log", "worker-1.log"]
  log = (tmp_path / "worker-1.log").read_text()
  assert "[launch] started worker:1 (pid" in log and "task worker:1" in log


def test_auto_ports_are_distinct_and_free(tmp_path):
  script = "import os, json; print('ports', json.loads(os.environ['TF_CONFIG'])['cluster']['worker'])"
  result = launch(f"--cluster_spec={SPEC_2W}", f"--log_dir={tmp_path}", "--", "python", "-c", script)
  line = next(l for l in result.stdout.splitlines() if l.startswith("[worker:0] ports"))
  ports = [a.rsplit(":", 1)[1] for a in eval(line.split("ports ", 1)[1])]  # pylint: disable=eval-used
  assert len(set(ports)) == 2 and all(p.isdigit() for p in ports)


def test_first_failure_stops_the_others_and_sets_the_status(tmp_path):
  marker = f"TFDIST_TEST_{uuid.uuid4().hex}"
  script = ("import os, time, sys\n"
            "if os.environ['TFDIST_TASK'] == 'worker:1': sys.exit(3)\n"
            "time.sleep(600)")
  started = time.monotonic()
  result = launch(f"--cluster_spec={SPEC_2W}", f"--log_dir={tmp_path}", "--", "python", "-c",
                  script, env=cli_env(**{marker: "1"}))
  assert result.returncode == 3
  assert time.monotonic() - started < 60
  assert "[launch] worker:1 exited with status 3" in result.stdout
  assert processes_with(marker) == []


def test_restarts_rerun_the_whole_job(tmp_path):
  flag = tmp_path / "failed-once"
  script = (f"import os, sys\n"
            f"if os.environ['TFDIST_TASK'] == 'worker:0' and not os.path.exists({str(flag)!r}):\n"
            f"    open({str(flag)!r}, 'w').close(); sys.exit(1)\n"
            f"print('attempt ok')")
  result = launch(f"--cluster_spec={SPEC_2W}", "--restarts=1", f"--log_dir={tmp_path / 'logs'}",
                  "--", "python", "-c", script)
  assert result.returncode == 0, result.stdout
  assert "restarting every task (restart 1 of 1)" in result.stdout
  assert result.stdout.count("[worker:0] attempt ok") == 1
  assert result.stdout.count("[launch] starting 2 task(s)") == 2


def test_sigterm_stops_tasks_that_ignore_it(tmp_path):
  """A hung TF start-up ignores SIGTERM; the launcher escalates to SIGKILL."""
  marker = f"TFDIST_TEST_{uuid.uuid4().hex}"
  script = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(600)")
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch", f"--cluster_spec={SPEC_2W}", "--stop_grace=1",
       f"--log_dir={tmp_path}", "--", "python", "-c", script],
      cwd=REPO, env=cli_env(**{marker: "1"}), stdout=subprocess.PIPE, text=True)
  ready = 0
  for line in proc.stdout:
    ready += "ready" in line
    if ready == 2:
      break
  assert len(processes_with(marker)) >= 3  # the launcher and both tasks
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=30) == 143
  assert "SIGTERM received; stopping every task" in proc.stdout.read()
  assert processes_with(marker) == []


@pytest.mark.parametrize("args, fragment", [
    ([], "--cluster_spec: required"),
    ([f"--cluster_spec={SPEC_2W}"], "no command to run"),
    (["--cluster_spec=/nope.yaml", "--", "true"], "--cluster_spec: no such file"),
    ([f"--cluster_spec={SPEC_2W}", "--restarts=-1", "--", "true"], "--restarts"),
])
def test_launch_user_errors(args, fragment):
  result = launch(*args)
  assert result.returncode == 2
  assert len(result.stderr.strip().splitlines()) == 1 and fragment in result.stderr


SPEC = ClusterSpec.from_dict({"chief": ["h:1"], "worker": ["h:2", "h:3"], "ps": ["h:4"]}, 1)
MWMS = ClusterSpec.from_dict({"worker": ["h:1", "h:2"]})


@pytest.mark.parametrize("spec, task, code, succeeded, restarts, action", [
    (MWMS, "worker:1", -9, set(), 1, policy.Action.FAIL_JOB),
    (MWMS, "worker:0", 0, set(), 0, policy.Action.WAIT),
    (MWMS, "worker:1", 0, {"worker:0"}, 0, policy.Action.JOB_DONE),
    (SPEC, "chief:0", 0, set(), 0, policy.Action.JOB_DONE),
    (SPEC, "chief:0", 1, set(), 1, policy.Action.FAIL_JOB),
    (SPEC, "worker:1", -9, set(), 1, policy.Action.RESTART_TASK),
    (SPEC, "worker:1", -9, set(), 0, policy.Action.WAIT),
    (SPEC, "ps:0", -9, set(), 1, policy.Action.FAIL_JOB),
    (SPEC, "ps:0", 0, set(), 0, policy.Action.FAIL_JOB),
    (SPEC, "evaluator:0", 1, set(), 0, policy.Action.WAIT),
])
def test_exit_policy(spec, task, code, succeeded, restarts, action):
  done = {TaskId.parse(t) for t in succeeded}
  assert policy.on_exit(spec, TaskId.parse(task), code, done, restarts) == action
