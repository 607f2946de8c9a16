"""The local launcher with plain Python tasks (no TensorFlow): output, logs, exits, signals."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tfdist.cluster import ClusterSpec, TaskId, load_spec_file
from tfdist.launch import policy
from tests.helpers import REPO, cli_env, processes_with

SPEC_2W = os.path.join(REPO, "configs", "clusters", "local-2workers.yaml")
SPEC_PS = os.path.join(REPO, "configs", "clusters", "local-ps-eval.yaml")


def launch(*args, env=None, timeout=120, cwd=REPO):
  return subprocess.run([sys.executable, "-m", "tfdist", "launch", *args], cwd=cwd,
                        env=env or cli_env(PYTHONPATH=REPO), capture_output=True, text=True,
                        timeout=timeout)


@pytest.mark.cluster
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


@pytest.mark.cluster
def test_auto_ports_are_distinct_and_free(tmp_path):
  """worker:0 binds every port of its TF_CONFIG, as TensorFlow will (0.0.0.0), and reports them."""
  script = ("import json, os, socket\n"
            "if os.environ['TFDIST_TASK'] == 'worker:0':\n"
            "    ports = [int(a.rsplit(':', 1)[1])\n"
            "             for a in json.loads(os.environ['TF_CONFIG'])['cluster']['worker']]\n"
            "    for port in ports:\n"
            "        socket.socket().bind(('0.0.0.0', port))\n"
            "    print('bound', json.dumps(ports))\n")
  result = launch(f"--cluster_spec={SPEC_2W}", f"--log_dir={tmp_path}", "--", "python", "-c", script)
  assert result.returncode == 0, result.stdout + result.stderr
  line = next(l for l in result.stdout.splitlines() if l.startswith("[worker:0] bound "))
  ports = json.loads(line.split("bound ", 1)[1])
  assert len(ports) == 2 and len(set(ports)) == 2 and all(1024 <= p <= 65535 for p in ports)


@pytest.mark.cluster
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


@pytest.mark.cluster
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


@pytest.mark.cluster
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


@pytest.mark.cluster
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


@pytest.mark.parametrize("spec, task, code, succeeded, lost, restarts, action", [
    (MWMS, "worker:1", -9, set(), set(), 1, policy.Action.FAIL_JOB),
    (MWMS, "worker:1", 2, set(), set(), 1, policy.Action.STOP_JOB),
    (MWMS, "worker:0", 0, set(), set(), 0, policy.Action.WAIT),
    (MWMS, "worker:1", 0, {"worker:0"}, set(), 0, policy.Action.JOB_DONE),
    (SPEC, "chief:0", 0, set(), set(), 0, policy.Action.JOB_DONE),
    (SPEC, "chief:0", 1, set(), set(), 1, policy.Action.FAIL_JOB),
    (SPEC, "chief:0", 2, set(), set(), 1, policy.Action.STOP_JOB),
    (SPEC, "worker:1", -9, set(), set(), 1, policy.Action.RESTART_TASK),
    (SPEC, "worker:1", 2, set(), set(), 1, policy.Action.STOP_JOB),
    (SPEC, "worker:1", -9, set(), set(), 0, policy.Action.WAIT),
    (SPEC, "worker:1", -9, set(), {"worker:0"}, 0, policy.Action.FAIL_JOB),
    (SPEC, "worker:1", -9, set(), {"worker:0"}, 1, policy.Action.RESTART_TASK),
    (SPEC, "ps:0", -9, set(), set(), 1, policy.Action.FAIL_JOB),
    (SPEC, "ps:0", 0, set(), set(), 0, policy.Action.WAIT),  # it saw the run finished
    (SPEC, "evaluator:0", 1, set(), set(), 0, policy.Action.WAIT),
])
def test_exit_policy(spec, task, code, succeeded, lost, restarts, action):
  done = {TaskId.parse(t) for t in succeeded}
  lost = {TaskId.parse(t) for t in lost}
  assert policy.on_exit(spec, TaskId.parse(task), code, done, lost, restarts) == action


# --- Tasks never outlive the launcher; they stop together; one restart budget. ---

SPEC_3 = os.path.join(REPO, "configs", "clusters", "local-chief-2workers.yaml")
SPEC_PS_ONLY = os.path.join(REPO, "configs", "clusters", "local-ps.yaml")
SLEEPER = "import time\nprint('ready', flush=True)\ntime.sleep(600)"


def start_launcher(spec, tmp_path, script, marker, *args):
  """Starts `tfdist launch` with every task running `script`; returns once all say 'ready'."""
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch", f"--cluster_spec={spec}",
       f"--log_dir={tmp_path / 'logs'}", *args, "--", "python", "-c", script],
      cwd=REPO, env=cli_env(**{marker: "1"}), stdout=subprocess.PIPE, text=True)
  tasks = len(list(load_spec_file(spec).tasks()))
  ready = 0
  for line in proc.stdout:
    ready += "] ready" in line
    if ready == tasks:
      break
  assert len(processes_with(marker)) >= tasks + 1, "the launcher and its tasks"
  return proc


def wait_until_gone(marker, seconds=15.0):
  deadline = time.monotonic() + seconds
  while processes_with(marker) and time.monotonic() < deadline:
    time.sleep(0.1)
  return processes_with(marker)


@pytest.mark.cluster
def test_closing_the_terminal_stops_every_task(tmp_path):
  marker = f"TFDIST_TEST_{uuid.uuid4().hex}"
  proc = start_launcher(SPEC_3, tmp_path, SLEEPER, marker)
  proc.send_signal(signal.SIGHUP)
  assert proc.wait(timeout=30) == 129
  assert "SIGHUP received; stopping every task" in proc.stdout.read()
  assert wait_until_gone(marker) == []


@pytest.mark.cluster
def test_a_killed_launcher_takes_its_tasks_with_it(tmp_path):
  marker = f"TFDIST_TEST_{uuid.uuid4().hex}"
  proc = start_launcher(SPEC_3, tmp_path, SLEEPER, marker)
  proc.kill()  # SIGKILL: no handler runs; the kernel must end the tasks.
  proc.wait(timeout=10)
  assert wait_until_gone(marker) == []


@pytest.mark.cluster
def test_tasks_are_stopped_together(tmp_path):
  """Three tasks that ignore SIGTERM: all get it at once, then SIGKILL (not one grace each)."""
  marker = f"TFDIST_TEST_{uuid.uuid4().hex}"
  script = ("import os, signal, time\n"
            f"path = os.path.join({str(tmp_path)!r}, os.environ['TFDIST_TASK'] + '.term')\n"
            "def note(*_):\n"
            "    open(path, 'w').write(repr(time.time()))\n"
            "signal.signal(signal.SIGTERM, note)\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)")
  proc = start_launcher(SPEC_3, tmp_path, script, marker, "--stop_grace=3")
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=60) == 143
  times = sorted(float((tmp_path / f"{t}.term").read_text())
                 for t in ("chief:0", "worker:0", "worker:1"))
  assert times[-1] - times[0] < 1.5, times  # one after another would be >= 3 s apart
  assert wait_until_gone(marker) == []


@pytest.mark.cluster
def test_one_restart_budget_for_the_whole_job(tmp_path):
  """--restarts=1 is spent on worker:1; the chief's failure after that is final."""
  script = ("import os, sys, time\n"
            "task = os.environ['TFDIST_TASK']\n"
            "if task == 'worker:1' and not os.path.exists('w1-failed'):\n"
            "    open('w1-failed', 'w').close(); sys.exit(1)\n"
            "if task == 'chief:0':\n"
            "    while not os.path.exists('w1-failed'): time.sleep(0.1)\n"
            "    time.sleep(2); sys.exit(3)\n"
            "time.sleep(600)")
  # Tasks run in tmp_path, where they leave their marker files.
  result = launch(f"--cluster_spec={SPEC_PS_ONLY}", "--restarts=1",
                  f"--log_dir={tmp_path / 'logs'}", "--", "python", "-c", script, cwd=tmp_path)
  assert result.returncode == 3, result.stdout
  assert "restarting worker:1 (restart 1 of 1)" in result.stdout
  assert "restarting every task" not in result.stdout
  assert result.stdout.count("[launch] starting 4 task(s)") == 1


@pytest.mark.cluster
def test_a_user_error_is_never_restarted(tmp_path):
  script = ("import os, sys, time\n"
            "if os.environ['TFDIST_TASK'] == 'worker:1':\n"
            "    print('tfdist train: error: `train.epochs` (0) must be a positive integer')\n"
            "    sys.exit(2)\n"
            "time.sleep(600)")
  result = launch(f"--cluster_spec={SPEC_2W}", "--restarts=3", f"--log_dir={tmp_path}", "--",
                  "python", "-c", script)
  assert result.returncode == 2, result.stdout
  assert "[launch] worker:1 reported a user error (status 2); not restarting" in result.stdout
  assert result.stdout.count("[launch] starting 2 task(s)") == 1


@pytest.mark.cluster
def test_losing_every_parameter_server_worker_fails_the_job(tmp_path):
  """No restarts left and no worker to train on: fail, instead of the chief waiting for ever."""
  script = ("import os, sys, time\n"
            "if os.environ['TFDIST_TASK'].startswith('worker:'):\n"
            "    time.sleep(1); sys.exit(1)\n"
            "time.sleep(600)")
  result = launch(f"--cluster_spec={SPEC_PS_ONLY}", f"--log_dir={tmp_path}", "--stop_grace=1",
                  "--", "python", "-c", script, timeout=60)
  assert result.returncode == 1, result.stdout
  assert "every worker is lost and no restarts are left; the job fails" in result.stdout


@pytest.mark.cluster
def test_a_port_taken_after_it_was_picked_means_new_ports_not_a_restart(tmp_path):
  """worker:1 fails the first time as a task whose gRPC server cannot bind reports it."""
  script = ("import json, os, sys\n"
            "ports = json.loads(os.environ['TF_CONFIG'])['cluster']['worker']\n"
            "if os.environ['TFDIST_TASK'] == 'worker:1' and not os.path.exists('taken'):\n"
            "    open('taken', 'w').close()\n"
            "    print(f'tfdist train: error: task worker:1 could not start its gRPC server on '\n"
            "          f'{ports[1]} (TensorFlow binds 0.0.0.0): the port is in use', flush=True)\n"
            "    sys.exit(1)\n"
            "print('ports', json.dumps(ports))")
  result = launch(f"--cluster_spec={SPEC_2W}", "--restarts=0", f"--log_dir={tmp_path / 'logs'}",
                  "--", "python", "-c", script, cwd=tmp_path)
  assert result.returncode == 0, result.stdout
  assert ("[launch] worker:1: its port was taken after it was picked; starting the job again on "
          "new ports (not counted as a restart)") in result.stdout
  starts = [l for l in result.stdout.splitlines() if l.startswith("[launch] starting 2 task(s)")]
  assert len(starts) == 2 and starts[0] != starts[1]  # the second attempt has new ports
