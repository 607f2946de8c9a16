"""Model dirs on any TensorFlow file system, and the check that every task shares one."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist

# Trains through the CLI in this process, then lists what it wrote: `ram://` lives in memory.
RAM_RUN = """
import json, sys
from tfdist.cli import main as cli
try:
  cli.main(["tfdist", "train", "--model_dir=ram://runs/a"] + sys.argv[1:])
except SystemExit as e:
  code = e.code
import tensorflow as tf
root = "ram://runs/a"
files = {d: sorted(tf.io.gfile.listdir(f"{root}/{d}"))
         for d in ("checkpoints", "export", "tensorboard")}
files["."] = sorted(tf.io.gfile.listdir(root))
read = lambda name: json.loads(tf.io.gfile.GFile(f"{root}/{name}").read())
print("RESULT " + json.dumps({"code": code, "files": files, "metrics": read("metrics.json"),
                              "run": read("run.json")}))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_model_dir_on_another_tensorflow_file_system(data_dir, loop):
  result = subprocess.run(
      [sys.executable, "-c", RAM_RUN, f"--loop={loop}", "--epochs=2", "--steps_per_epoch=10",
       f"--data_dir={data_dir}", *THREAD_FLAGS],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  line = next((l for l in result.stdout.splitlines() if l.startswith("RESULT ")), None)
  assert line, (result.stdout + result.stderr)[-3000:]
  report = json.loads(line[len("RESULT "):])
  assert report["code"] == 0
  assert report["files"]["."] == ["checkpoints", "export", "metrics.json", "params.yaml",
                                  "run.json", "tensorboard"]  # no backup: the run finished
  assert "ckpt-0002.index" in report["files"]["checkpoints"]
  assert "saved_model.pb" in report["files"]["export"] and report["files"]["tensorboard"]
  assert report["metrics"]["model_dir"] == "ram://runs/a"
  assert report["metrics"]["epochs_completed"] == 2 and report["metrics"]["eval_examples"] == 1000
  assert report["run"]["status"] == "finished" and report["run"]["final_checkpoint"] == "ckpt-0002"
  assert "metrics in ram://runs/a/metrics.json" in result.stdout


@pytest.mark.cluster
def test_workers_with_different_model_dirs_fail_naming_the_task(tmp_path, data_dir):
  """Each task gets its own --model_dir: the job stops at start-up with one line, exit 2."""
  command = (f"exec {sys.executable} -m tfdist train --model_dir={tmp_path}/$TFDIST_TASK "
             f"--data_dir={data_dir} {' '.join(THREAD_FLAGS)}")
  spec = os.path.join(REPO, "configs", "clusters", "local-2workers.yaml")
  result = run_tfdist("launch", "--restarts=2", f"--cluster_spec={spec}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "bash", "-c", command, timeout=300)
  assert result.returncode == 2, result.stdout[-4000:]
  line = (f"tfdist train: error: --model_dir: task worker:1 does not see the chief's run record "
          f"({tmp_path}/worker:1/run.json); every task of a multi-worker job needs the same "
          "--model_dir on storage they all share")
  assert f"[worker:1] {line}" in result.stdout
  assert "[worker:0] tfdist train: error: --model_dir: task worker:1 does not see" in result.stdout
  assert "reported a user error (status 2); not restarting" in result.stdout
  assert not (tmp_path / "worker:0" / "checkpoints").exists()
