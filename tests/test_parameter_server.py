"""Real ParameterServerStrategy clusters on 127.0.0.1: training, sharding, failures, sidecar eval."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist, start_launch
from tests.helpers import processes_with

pytestmark = pytest.mark.cluster

SPECS = os.path.join(REPO, "configs", "clusters")


def kill_when(proc, trigger, log_dir, victim, delay=0.5):
  """Reads the launcher's output; at the first line starting with `trigger`, SIGKILLs `victim`."""
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(trigger):
      time.sleep(delay)
      log = (log_dir / f"{victim.replace(':', '-')}.log").read_text()
      os.kill(int(re.search(rf"started {victim} \(pid (\d+)", log).group(1)), signal.SIGKILL)
      break
  output.extend(proc.stdout)
  return proc.wait(timeout=400), "".join(output)


def test_trains_to_the_bar_with_a_sidecar_evaluator_and_ends_cleanly(tmp_path, data_dir):
  marker = f"TFDIST_TEST_{os.getpid()}_{time.time_ns()}"
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  proc = start_launch(os.path.join(SPECS, "local-ps-eval.yaml"), log_dir,
                      ["tfdist", "train", f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                       *THREAD_FLAGS], env=cli_env(**{marker: "1"}))
  output = proc.communicate(timeout=400)[0]
  assert proc.returncode == 0, output[-4000:]
  metrics = read_metrics(model_dir)
  assert metrics["strategy"] == "ParameterServerStrategy"
  assert metrics["num_workers"] == 2 and metrics["eval_accuracy"] >= 0.93
  assert re.search(r"\[worker:1\] .*Server for ParameterServerStrategy training", output)
  assert re.search(r"\[ps:0\] .*Serving as ps:0 for parameter-server training", output)
  assert "[launch] job finished: status 0" in output
  run = json.loads((model_dir / "run.json").read_text())
  assert run["status"] == "finished" and run["final_checkpoint"] == "ckpt-0010"
  evaluations = json.loads((model_dir / "eval" / "metrics.json").read_text())["evaluations"]
  assert evaluations[-1]["checkpoint"] == "ckpt-0010", evaluations
  assert abs(evaluations[-1]["eval_accuracy"] - metrics["eval_accuracy"]) <= 0.002
  assert [e["epoch"] for e in evaluations] == sorted(e["epoch"] for e in evaluations)
  assert all(e["eval_examples"] == 1000 for e in evaluations)
  assert re.search(r"\[evaluator:0\] .*Training finished; sidecar evaluator evaluated", output)
  assert os.listdir(model_dir / "eval" / "tensorboard")
  assert processes_with(marker) == [], "a server or the evaluator was left running"

  # An evaluator that starts after the chief finished evaluates the final checkpoint and stops;
  # checkpoints that this run did not write (an earlier run's) are never evaluated.
  planted = list((model_dir / "checkpoints").glob("ckpt-0001.*"))  # the first epoch always has one
  assert planted, os.listdir(model_dir / "checkpoints")
  for path in planted:
    (path.parent / path.name.replace("ckpt-0001", "ckpt-0099")).write_bytes(path.read_bytes())
  (model_dir / "eval" / "metrics.json").unlink()
  evaluator_config = {"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"],
                                  "ps": ["127.0.0.1:3"]},
                      "task": {"type": "evaluator", "index": 0}}
  late = run_tfdist("train", f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS,
                    env=cli_env(TF_CONFIG=json.dumps(evaluator_config),
                                TFDIST_RUN_ID=run["run_id"]), timeout=120)
  assert late.returncode == 0, late.stderr[-3000:]
  evaluations = json.loads((model_dir / "eval" / "metrics.json").read_text())["evaluations"]
  assert [e["checkpoint"] for e in evaluations] == ["ckpt-0010"]
  assert abs(evaluations[0]["eval_accuracy"] - metrics["eval_accuracy"]) <= 0.002


@pytest.mark.parametrize("min_bytes, shards", [(262144, 2), (0, 1)])
def test_large_variables_are_split_over_the_ps_tasks(tmp_path, data_dir, min_bytes, shards):
  spec = tmp_path / "ps2.yaml"
  spec.write_text("cluster:\n  chief: [127.0.0.1:auto]\n  worker: [127.0.0.1:auto]\n"
                  "  ps: [127.0.0.1:auto, 127.0.0.1:auto]\n")
  out = tmp_path / "devices.json"
  proc = start_launch(spec, tmp_path / "logs", ["python", "-m", "tests.cluster_scripts.ps_sharding",
                                                str(out), str(min_bytes),
                                                str(tmp_path / "run"), data_dir])
  output = proc.communicate(timeout=200)[0]
  assert proc.returncode == 0, output[-4000:]
  devices = json.loads(out.read_text())
  assert len(devices["embedding"]) == shards
  if shards == 2:
    assert {d.split("/device")[0] for d in devices["embedding"]} == {
        "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"}
    assert sum(s[0] for s in devices["embedding_shapes"]) == 20_000
  assert len(devices["bias"]) == 1  # small variables stay whole


def train_and_kill(tmp_path, data_dir, trigger, victim):
  """A 6-epoch PSS job with --restarts=1; SIGKILLs `victim` at `trigger`. Returns (output, metrics)."""
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  proc = start_launch(os.path.join(SPECS, "local-ps.yaml"), log_dir,
                      ["tfdist", "train", f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                       "--epochs=6", *THREAD_FLAGS], launch_args=["--restarts=1"])
  code, output = kill_when(proc, trigger, log_dir, victim)
  assert code == 0, output[-4000:]
  return output, read_metrics(model_dir)


def test_losing_a_worker_does_not_stop_training(tmp_path, data_dir):
  output, metrics = train_and_kill(tmp_path, data_dir, "[chief:0] Epoch 3/6", "worker:1")
  assert "[launch] worker:1 exited with status -9" in output
  assert "[launch] worker lost: worker:1; training goes on with the other workers; restarting worker:1" in output
  assert "restarting every task" not in output
  assert metrics["epochs_completed"] == 6 and metrics["resumed_from"] is None


def test_losing_the_ps_restarts_the_job_from_its_backup(tmp_path, data_dir):
  output, metrics = train_and_kill(tmp_path, data_dir, "[chief:0] Epoch 4/6", "ps:0")
  assert "[launch] job failed (ps:0 exited with status -9); restarting every task" in output
  assert metrics["resumed_from"] is not None and metrics["resumed_from"]["epoch"] >= 3
  assert metrics["epochs_completed"] == 6 and metrics["eval_accuracy"] >= 0.93
  assert re.search(r"\[chief:0\] .*Resumed from backup at epoch \d+ after step 0", output)


@pytest.mark.parametrize("cluster, fragment", [
    ("cluster: {chief: [127.0.0.1:1], ps: [127.0.0.1:2]}",
     "cluster.worker: a cluster with `ps` tasks needs at least one worker"),
    ("cluster: {chief: [127.0.0.1:1], worker: [127.0.0.1:2], ps: [127.0.0.1:3], "
     "evaluator: [127.0.0.1:4]}", "cluster.evaluator: the evaluator is not a training task"),
    ("cluster: {worker: [127.0.0.1:2], ps: [127.0.0.1:3]}",
     "cluster.chief: parameter-server training needs a `chief` task"),
])
def test_bad_parameter_server_specs_are_one_line_errors(tmp_path, cluster, fragment):
  spec = tmp_path / "spec.yaml"
  spec.write_text(cluster + "\n")
  task = "worker:0"
  result = run_tfdist("train", f"--cluster_spec={spec}", f"--task={task}",
                      f"--model_dir={tmp_path / 'run'}")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and fragment in lines[0], result.stderr
  assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("seed", ["5", "none"])
def test_each_worker_draws_its_own_example_order(tmp_path, seed):
  """The input function is traced once for all workers; the order must still be each one's own."""
  from tests.cluster_scripts import ids_dataset
  data_dir, out = str(tmp_path / "data"), tmp_path / "ids.json"
  ids_dataset.prepare(data_dir, 8)
  proc = start_launch(os.path.join(SPECS, "local-ps.yaml"), tmp_path / "logs",
                      ["python", "-m", "tests.cluster_scripts.pss_ids", data_dir, str(out), "160",
                       seed])
  output = proc.communicate(timeout=300)[0]
  assert proc.returncode == 0, output[-4000:]
  per_worker = json.loads(out.read_text())
  assert set(per_worker) == {"0", "1"}, "both workers must have trained"
  first = min(len(per_worker["0"]), len(per_worker["1"]), 200)
  assert first >= 64, per_worker
  assert per_worker["0"][:first] != per_worker["1"][:first]
  # Each worker's stream is a shuffled pass over all ids: no worker repeats an id within one pass.
  for ids in per_worker.values():
    assert len(set(ids[:200])) == len(ids[:200])


# What the chief printed when the servers had ended before its process did (issue 24).
TEARDOWN_ERRORS = re.compile(r"Failed to remove function|Connection refused|Connection reset")


@pytest.mark.parametrize("model", ["tf_keras_model", "keras3_model"])
def test_a_finished_job_prints_no_grpc_errors_after_its_summary(tmp_path, model):
  """Servers outlive the chief's process, which releases its remote functions as it ends.

  Two runs per Keras with a 1M-row embedding split over the ps task: one as it is, one
  whose chief takes 3 s longer to end (its servers, which poll run.json every 2 s, used
  to be gone by then every time: tens of gRPC errors after the summary line).
  """
  for slow_exit in ("0", "3"):
    model_dir, log_dir = tmp_path / f"run-{slow_exit}", tmp_path / f"logs-{slow_exit}"
    proc = start_launch(
        os.path.join(SPECS, "local-ps.yaml"), log_dir,
        ["tfdist", "train", f"--model=tests.cluster_scripts.click_embeddings:{model}",
         "--dataset=tests.cluster_scripts.click_embeddings:clicks", "--epochs=2",
         "--steps_per_epoch=5", "--global_batch_size=256", f"--model_dir={model_dir}",
         *THREAD_FLAGS], env=cli_env(TFDIST_TEST_SLOW_EXIT=slow_exit))
    output = proc.communicate(timeout=400)[0]
    assert proc.returncode == 0, output[-4000:]
    assert "[chief:0] tfdist: trained" in output, output[-4000:]
    after_summary = output.split("[chief:0] tfdist: trained", 1)[1]
    errors = [line for line in after_summary.splitlines() if TEARDOWN_ERRORS.search(line)]
    assert not errors, f"slow exit {slow_exit} s: {len(errors)} lines, e.g. {errors[:3]}"
    assert "[launch] job finished: status 0" in after_summary
    rows_only = ("; 1 Keras 3 Embedding layer(s) read only their rows" if model == "keras3_model"
                 else "\n")
    assert ("Sparse updates: rows (--sparse_updates=auto, parameter servers): SGD: sparse "
            f"gradients move only their rows (exact){rows_only}") in output


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_the_recommender_trains_with_its_tables_split_over_two_ps(tmp_path, loop):
  """examples/recommender.py: two 1,000,003-row tables, each split over ps:0 and ps:1 (one
  row more on the first), Adam updating only the rows a step looks up."""
  model_dir = tmp_path / "run"
  proc = start_launch(os.path.join(SPECS, "local-ps2.yaml"), tmp_path / "logs",
                      ["python", "examples/recommender.py", f"--model_dir={model_dir}",
                       f"--loop={loop}", "--epochs=4"])
  output = proc.communicate(timeout=600)[0]
  assert proc.returncode == 0, output[-4000:]
  assert "[chief:0] user table 2 shard(s): ps:0 500,002 rows, ps:1 500,001 rows" in output
  assert ("Sparse updates: rows (--sparse_updates=rows): Adam: lazy, sparse gradients update "
          "only their rows") in output
  auc = float(re.search(r"\[chief:0\] eval_auc (\S+);", output).group(1))
  metrics = read_metrics(model_dir)
  assert metrics["strategy"] == "ParameterServerStrategy" and metrics["loop"] == loop
  assert auc == pytest.approx(metrics["eval_metrics"]["auc"], abs=1e-4) and auc > 0.8, auc
  assert metrics["step_ms"] > 0


def test_a_keras3_table_split_over_ps_tasks_is_one_line_and_exit_2(tmp_path):
  """TensorFlow cannot differentiate a Keras 3 variable split over ps tasks: said before
  anything is written, not as a traceback from the first step."""
  model_dir = tmp_path / "run"
  proc = start_launch(
      os.path.join(SPECS, "local-ps2.yaml"), tmp_path / "logs",
      ["tfdist", "train", "--model=tests.cluster_scripts.click_embeddings:keras3_model",
       "--dataset=tests.cluster_scripts.click_embeddings:clicks", "--epochs=1",
       "--steps_per_epoch=2", f"--model_dir={model_dir}", *THREAD_FLAGS])
  output = proc.communicate(timeout=300)[0]
  assert proc.returncode == 2, output[-4000:]
  errors = [line for line in output.splitlines() if line.startswith("[chief:0] tfdist train: error:")]
  assert len(errors) == 1 and "Keras 3 variables cannot be split over ps tasks" in errors[0] \
      and "--ps_shard_min_bytes=0" in errors[0], output[-4000:]
  assert "Traceback" not in output
  assert not (model_dir / "run.json").exists()
