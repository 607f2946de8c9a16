"""The `tfdist` command line: user errors exit 2 with one line; the default job trains."""

import json
import os

import numpy as np
import pytest

from tests.conftest import THREAD_FLAGS, cli_env, read_metrics, run_tfdist, REPO


def assert_usage_error(result, *fragments):
  assert result.returncode == 2, result.stderr[-2000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  for fragment in fragments:
    assert fragment in lines[0], lines[0]
  assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--epohcs=3"], ["Unknown command line flag 'epohcs'"]),
    (["--epochs=three"], ["--epochs", "three"]),
    (["--epochs=0"], ["`train.epochs` (0) must be a positive integer"]),
    (["--strategy=tpu"], ["`strategy.name` ('tpu') must be one of"]),
    (["--params_override=train.epoch=3"], ["`train.epoch`: unknown key"]),
    (["--config=/nonexistent.yaml"], ["--config: no such file"]),
    (["--model=resnet"], ["`model.name` ('resnet')"]),
    (["--dataset=tfds:mnist"], ["`data.dataset`: TFDS dataset 'mnist' is not prepared"]),
    (["--task=worker:0"], ["--task needs --cluster_spec"]),
    (["--cluster_spec=configs/clusters/example-fixed-ports.yaml"], ["--cluster_spec needs --task"]),
    (["--cluster_spec=configs/clusters/example-fixed-ports.yaml", "--task=worker:5"],
     ["--task.index: 5 is out of range for 'worker'"]),
    (["--cluster_spec=configs/clusters/local-2workers.yaml", "--task=worker:0"],
     ["'auto' ports have no fixed value"]),
    (["--strategy=mirrored", "--cpu_replicas=3", "--global_batch_size=64"],
     ["`data.global_batch_size` (64) must be divisible by the number of replicas (3)"]),
    (["extra"], ["unexpected arguments 'extra'"]),
])
def test_train_user_errors_exit_2_with_one_line(tmp_path, data_dir, args, fragments):
  model_dir = tmp_path / "run"
  result = run_tfdist("train", f"--model_dir={model_dir}", f"--data_dir={data_dir}", *args)
  assert_usage_error(result, "tfdist train: error:", *fragments)
  assert not model_dir.exists(), "a user error must not leave a model dir behind"


@pytest.mark.parametrize("tf_config, fragment", [
    ("{}", "TF_CONFIG.cluster: missing"),
    ("{bad", "TF_CONFIG: not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "TF_CONFIG.task.index: 3 is out of range"),
])
def test_bad_tf_config_exits_2(tmp_path, tf_config, fragment):
  result = run_tfdist("train", f"--model_dir={tmp_path / 'run'}", env=cli_env(TF_CONFIG=tf_config))
  assert_usage_error(result, fragment)
  assert not (tmp_path / "run").exists()


def test_cluster_validate_and_tf_config():
  result = run_tfdist("cluster", "validate", "configs/clusters/local-ps.yaml")
  assert result.returncode == 0, result.stderr
  assert "valid; 4 task(s): chief:0, worker:0, worker:1, ps:0" in result.stdout
  assert "ParameterServerStrategy" in result.stdout
  result = run_tfdist("cluster", "validate", "configs/clusters/local-2workers.yaml")
  assert "MultiWorkerMirroredStrategy" in result.stdout
  result = run_tfdist("cluster", "tf-config", "configs/clusters/example-fixed-ports.yaml",
                      "--task=worker:1")
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout) == {
      "cluster": {"worker": ["127.0.0.1:22220", "127.0.0.1:22221"]},
      "task": {"type": "worker", "index": 1}}


def test_cluster_command_errors(tmp_path):
  bad = tmp_path / "bad.yaml"
  bad.write_text("cluster: {worker: [127.0.0.1:99999]}")
  assert_usage_error(run_tfdist("cluster", "validate", str(bad)), "port '99999'")
  assert_usage_error(run_tfdist("cluster", "tf-config", "configs/clusters/example-fixed-ports.yaml"),
                     "--task: required")
  assert_usage_error(run_tfdist("cluster", "frobnicate", "x"), "expected `tfdist cluster validate")
  result = run_tfdist("nonsense")
  assert result.returncode == 2 and "unknown command 'nonsense'" in result.stderr


def test_mirrored_two_cpu_replicas_end_to_end(tmp_path, data_dir):
  """The issue's acceptance run: 2 logical CPUs, accuracy bar, metrics.json, reloadable export."""
  model_dir = str(tmp_path / "run")
  result = run_tfdist("train", "--strategy=mirrored", "--cpu_replicas=2", "--epochs=6",
                      f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(model_dir)
  assert metrics["strategy"] == "MirroredStrategy"
  assert metrics["num_replicas"] == 2 and metrics["num_workers"] == 1
  assert metrics["per_replica_batch_size"] == 32 and metrics["global_batch_size"] == 64
  assert metrics["epochs_completed"] == 6 and metrics["resumed_from"] is None
  assert metrics["eval_accuracy"] >= 0.95 and metrics["eval_examples"] == 1000
  assert metrics["examples_per_sec"] > 0 and metrics["wall_seconds"] > 0
  assert "Strategy: MirroredStrategy (--strategy=mirrored over 2 logical CPUs)" in result.stderr
  assert "tfdist: trained cnn on mnist5k with MirroredStrategy" in result.stdout
  assert os.listdir(os.path.join(model_dir, "tensorboard"))
  assert any(name.startswith("ckpt-0006") for name in os.listdir(metrics["checkpoint_dir"]))
  assert not os.path.exists(os.path.join(model_dir, "backup")), "a finished run removes its backup"

  import tf_keras
  from tfdist.data import DataOptions, load_source
  model = tf_keras.models.load_model(os.path.join(model_dir, "export"))
  images, labels = next(iter(load_source(DataOptions(data_dir=data_dir)).eval_dataset(1000)))
  predicted = np.argmax(model.predict(images, verbose=0), axis=-1)
  assert np.mean(predicted == labels.numpy()) == pytest.approx(metrics["eval_accuracy"], abs=1e-6)


def test_seeded_runs_are_reproducible(tmp_path, data_dir):
  losses = []
  for run in ("a", "b"):
    model_dir = str(tmp_path / run)
    result = run_tfdist("train", "--epochs=2", "--steps_per_epoch=15", "--seed=7",
                        f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    losses.append(read_metrics(model_dir)["train_loss_history"])
  assert losses[0] == losses[1]


def test_config_file_and_override(tmp_path, data_dir):
  config = tmp_path / "exp.yaml"
  config.write_text(f"model: {{name: mlp}}\ntrain: {{epochs: 3, model_dir: {tmp_path / 'ignored'}}}\n")
  model_dir = str(tmp_path / "run")
  result = run_tfdist("train", f"--config={config}", "--params_override=train.epochs=1,"
                      "train.steps_per_epoch=5", f"--model_dir={model_dir}",
                      f"--data_dir={data_dir}", *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(model_dir)
  assert metrics["epochs_completed"] == 1 and metrics["steps_per_epoch"] == 5
  assert "trained mlp on mnist5k" in result.stdout
  assert not (tmp_path / "ignored").exists()


def test_readme_quickstart_is_what_ci_runs():
  """CI extracts the commands from the README; both must exist and use the project's own files."""
  import subprocess
  script = open(os.path.join(REPO, ".ci", "run"), encoding="utf-8").read()
  body = script[script.index("quickstart() {"):script.index("train_cmd=")]
  for name, needle in (("train", "tfdist train"), ("test", "pytest")):
    command = subprocess.run(["bash", "-c", body + f"quickstart {name}"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert needle in command and "pip install" in command and "-e ." in command.replace("'", "")


def test_own_model_example_runs(tmp_path, data_dir):
  import subprocess, sys
  result = subprocess.run(
      [sys.executable, "examples/own_model_fit.py", f"--model_dir={tmp_path}", "--epochs=1"],
      cwd=REPO, env=cli_env(TFDS_DATA_DIR=data_dir), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "eval_accuracy" in result.stdout and read_metrics(str(tmp_path))["epochs_completed"] == 1
