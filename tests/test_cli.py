"""The `tfdist` command line: user errors exit 2 with one line; the default job trains."""

import json
import os
import re

import numpy as np
import pytest

from tests.helpers import REPO, THREAD_FLAGS, assert_usage_error, cli_env, read_metrics, run_tfdist


@pytest.mark.e2e
@pytest.mark.parametrize("args, fragments", [
    (["--epohcs=3"], ["Unknown command line flag 'epohcs'"]),
    (["--epochs=three"], ["--epochs", "three"]),
    (["--epochs=0"], ["`train.epochs` (0) must be a positive integer"]),
    (["--strategy=tpu"], ["--strategy=tpu: value should be one of <auto|one_device|mirrored|"]),
    (["--loop=keras"], ["--loop=keras: value should be one of <fit|custom>"]),
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
    (["--model=:build"], ["`model.name` (':build') must be one of cnn, mlp"]),
    (["--task=worker:\u00b2", "--cluster_spec=configs/clusters/example-fixed-ports.yaml"],
     ["`--task` ('worker:\u00b2') must be TYPE:INDEX"]),
    (["--dataset=tfds:a/../../b"], ["`data.dataset` ('tfds:a/../../b') must be mnist5k, tfds:"]),
])
def test_train_user_errors_exit_2_with_one_line(tmp_path, data_dir, args, fragments):
  model_dir = tmp_path / "run"
  result = run_tfdist("train", f"--model_dir={model_dir}", f"--data_dir={data_dir}", *args)
  assert_usage_error(result, "tfdist train: error:", *fragments)
  assert not model_dir.exists(), "a user error must not leave a model dir behind"


@pytest.mark.e2e
@pytest.mark.parametrize("tf_config, fragment", [
    ("{}", "TF_CONFIG.cluster: missing"),
    ("{bad", "TF_CONFIG: not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "TF_CONFIG.task.index: 3 is out of range"),
    ('{"cluster": {"worker": "127.0.0.1:29101"}, "task": {"type": "worker", "index": 0}}',
     "TF_CONFIG.cluster.worker: expected a non-empty list of 'host:port' addresses"),
    ("[" * 50_000, "TF_CONFIG: nested too deeply"),
])
def test_bad_tf_config_exits_2(tmp_path, tf_config, fragment):
  result = run_tfdist("train", f"--model_dir={tmp_path / 'run'}", env=cli_env(TF_CONFIG=tf_config))
  assert_usage_error(result, fragment)
  assert not (tmp_path / "run").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("task", ["chief", "worker", "ps"])
def test_deterministic_is_refused_on_every_task_of_a_parameter_server_job(tmp_path, task):
  cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"], "ps": ["127.0.0.1:3"]}
  tf_config = json.dumps({"cluster": cluster, "task": {"type": task, "index": 0}})
  result = run_tfdist("train", "--deterministic", f"--model_dir={tmp_path / 'run'}",
                      env=cli_env(TF_CONFIG=tf_config))
  assert_usage_error(result, "`train.deterministic`: ParameterServerStrategy cannot run "
                     "deterministically")
  assert not (tmp_path / "run").exists()


@pytest.mark.e2e
@pytest.mark.parametrize("flag, content, fragment", [
    ("--cluster_spec", b"\x7fELF\x02\x01\x01\x00\xff\xfe", "--cluster_spec: "),
    ("--config", b"\x7fELF\x02\x01\x01\x00\xff\xfe", "--config: "),
    ("--config", b"train: {epochs: 1}\n" + b"#" * (2 << 20), "--config: "),
    ("--cluster_spec", b"", "expected a mapping with a `cluster` key"),
    ("--config", b"data: {data_dir: [1, 2]}", "`data.data_dir` ([1, 2]) must be a string or null"),
])
def test_unreadable_files_exit_2_with_one_line(tmp_path, flag, content, fragment):
  path = tmp_path / "input.yaml"
  path.write_bytes(content)
  extra = ["--task=worker:0"] if flag == "--cluster_spec" else []
  result = run_tfdist("train", f"{flag}={path}", *extra, f"--model_dir={tmp_path / 'run'}")
  assert_usage_error(result, fragment)
  assert not (tmp_path / "run").exists()


@pytest.mark.cluster
def test_a_model_dir_that_cannot_be_a_directory_exits_2(tmp_path):
  (tmp_path / "file").write_text("x")
  result = run_tfdist("train", f"--model_dir={tmp_path / 'file'}")
  assert_usage_error(result, f"--model_dir: {tmp_path / 'file'} exists and is not a directory")
  result = run_tfdist("train", f"--model_dir={tmp_path / 'file' / 'run'}")
  assert_usage_error(result, "--model_dir: cannot create or write")
  result = run_tfdist("launch", "--cluster_spec=configs/clusters/local-2workers.yaml",
                      f"--log_dir={tmp_path / 'file' / 'logs'}", "--", "true")
  assert_usage_error(result, "tfdist launch: error: --log_dir: cannot create")


@pytest.mark.e2e
def test_a_user_module_that_cannot_import_exits_2(tmp_path):
  (tmp_path / "my_broken.py").write_text("def build(:\n")
  result = run_tfdist("train", "--model=my_broken:build", f"--model_dir={tmp_path / 'run'}",
                      env=cli_env(PYTHONPATH=f"{tmp_path}:{REPO}"))
  assert_usage_error(result, "importing 'my_broken' raised SyntaxError", "my_broken.py:1")
  assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_model_dir_expands_the_home_dir(tmp_path, data_dir):
  """A shell does not expand `~` after `--model_dir=`; tfdist does, instead of making a `~` dir."""
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  result = run_tfdist("train", "--model_dir=~/run", f"--data_dir={data_dir}", "--epochs=1",
                      "--steps_per_epoch=2", "--params_override=train.export=false", *THREAD_FLAGS,
                      env=cli_env(HOME=str(tmp_path), PYTHONPATH=REPO), cwd=str(cwd))
  assert result.returncode == 0, result.stderr[-3000:]
  assert read_metrics(str(tmp_path / "run"))["model_dir"] == str(tmp_path / "run")
  assert os.listdir(cwd) == []


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


@pytest.mark.e2e
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
  assert metrics["cpu_ms_per_step"] > 0
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


def info_lines_from_outside_tfdist(output: str) -> list[str]:
  """absl-format INFO lines (`I1203 21:12:15.607791 1403 file.py:136] ...`) whose file is not
  one of tfdist's modules."""
  ours = {name for _, _, files in os.walk(os.path.join(REPO, "tfdist")) for name in files}
  lines = re.findall(r"^I\d{4} [\d:.]+ +\d+ ([^:\]]+):\d+\] .*$", output, re.MULTILINE)
  return [name for name in lines if name not in ours]


@pytest.mark.e2e
def test_seeded_runs_are_reproducible_and_quiet_unless_asked(tmp_path, data_dir):
  """Same seed, same losses; the default run shows no TensorFlow-internal INFO line, and
  --verbosity brings them back (here: the background checkpoint writer's)."""
  losses, foreign = [], []
  for run, verbosity in (("a", ()), ("b", ("--verbosity=0",))):
    model_dir = str(tmp_path / run)
    result = run_tfdist("train", "--epochs=2", "--steps_per_epoch=15", "--seed=7",
                        "--backup_every_steps=5", f"--model_dir={model_dir}",
                        f"--data_dir={data_dir}", *THREAD_FLAGS, *verbosity)
    assert result.returncode == 0, result.stderr[-3000:]
    losses.append(read_metrics(model_dir)["train_loss_history"])
    foreign.append(info_lines_from_outside_tfdist(result.stdout + result.stderr))
  assert losses[0] == losses[1]
  assert foreign[0] == [], foreign[0][:5]
  assert "async_checkpoint_helper.py" in foreign[1], foreign[1][:5]


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_own_model_example_runs(tmp_path, data_dir):
  import subprocess, sys
  result = subprocess.run(
      [sys.executable, "examples/own_model_fit.py", f"--model_dir={tmp_path}", "--epochs=1"],
      cwd=REPO, env=cli_env(TFDS_DATA_DIR=data_dir), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "eval_accuracy" in result.stdout and read_metrics(str(tmp_path))["epochs_completed"] == 1


def kill_at(args, line_start, delay=0.6):
  """Runs `tfdist train ARGS`; SIGKILLs it `delay` s after it prints a line starting with
  `line_start`. Returns its output up to then."""
  import signal, subprocess, sys, time
  proc = subprocess.Popen([sys.executable, "-m", "tfdist", "train", *args], cwd=REPO, text=True,
                          env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(line_start):
      time.sleep(delay)
      proc.send_signal(signal.SIGKILL)
      break
  proc.wait(timeout=60)
  assert proc.returncode == -9, "".join(output)[-3000:]
  return "".join(output)


@pytest.mark.e2e
def test_one_device_trains_and_resumes_after_a_kill(tmp_path, data_dir):
  """OneDeviceStrategy has the same fault tolerance as the others (tf_keras refuses it alone)."""
  model_dir = tmp_path / "run"
  args = ["--strategy=one_device", "--epochs=4", "--backup_every_steps=10", "--save_share=0",
          f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS]
  kill_at(args, "Epoch 3/4")
  assert (model_dir / "backup").exists()
  result = run_tfdist("train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(str(model_dir))
  assert metrics["strategy"] == "OneDeviceStrategy" and metrics["epochs_completed"] == 4
  assert metrics["resumed_from"]["epoch"] >= 2, metrics["resumed_from"]
  assert metrics["eval_accuracy"] >= 0.95
  assert "Strategy: OneDeviceStrategy (--strategy=one_device over one device)" in result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_failure_after_training_keeps_the_backup(tmp_path, data_dir, loop):
  """The export fails (its path is taken by a file): training is not lost; the rerun writes the
  outputs without training again, and only then removes the backup."""
  model_dir = tmp_path / "run"
  model_dir.mkdir()
  (model_dir / "export").write_text("in the way")
  args = [f"--loop={loop}", "--epochs=2", "--steps_per_epoch=20", f"--model_dir={model_dir}",
          f"--data_dir={data_dir}", *THREAD_FLAGS]
  failed = run_tfdist("train", *args)
  assert failed.returncode == 1
  assert (model_dir / "backup").exists() and os.listdir(model_dir / "backup")
  assert not (model_dir / "metrics.json").exists()
  (model_dir / "export").unlink()
  result = run_tfdist("train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from backup at epoch 2 after step 20" in result.stderr
  assert "Epoch 1/2" not in result.stdout + result.stderr, "training ran again"
  metrics = read_metrics(str(model_dir))
  assert metrics["epochs_completed"] == 2 and metrics["resumed_from"] == {"epoch": 2, "step": 20}
  assert metrics["eval_accuracy"] > 0.5 and (model_dir / "export").is_dir()
  assert not (model_dir / "backup").exists()
  run = json.loads((model_dir / "run.json").read_text())
  assert run["status"] == "finished" and run["final_checkpoint"] == "ckpt-0002"


def test_help_lists_each_commands_flags_with_their_choices():
  """Choice flags are enums built from the same constants as the config fields they set."""
  from tfdist.strategy import STRATEGY_NAMES
  from tfdist.train import LOOPS
  from tfdist.train.precision import POLICIES
  result = run_tfdist("train", "--help")
  assert result.returncode == 0
  help_text = " ".join(result.stdout.split())
  for flag, choices in (("strategy", STRATEGY_NAMES), ("loop", LOOPS),
                        ("mixed_precision", POLICIES)):
    assert f"--{flag}: <{'|'.join(choices)}>:" in help_text
  assert "--slurm_tasks:" in help_text and "--epochs:" in help_text
  assert "--image:" in run_tfdist("cluster", "--help").stdout


@pytest.mark.e2e
def test_params_yaml_reproduces_the_run(tmp_path, data_dir):
  """Each run writes its resolved config (and the versions); --config=params.yaml runs it again."""
  first, second = tmp_path / "first", tmp_path / "second"
  result = run_tfdist("train", "--model=mlp", "--epochs=2", "--steps_per_epoch=10", "--seed=5",
                      "--params_override=data.global_batch_size=32,train.learning_rate=0.002",
                      f"--model_dir={first}", f"--data_dir={data_dir}", *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  params = (first / "params.yaml").read_text()
  assert params.startswith("# tfdist ") and "TensorFlow 2." in params.splitlines()[0]
  assert "global_batch_size: 32" in params and "learning_rate: 0.002" in params
  assert "mixed_precision: auto" not in params  # resolved: what this machine ran with
  metrics = read_metrics(str(first))
  assert set(metrics["versions"]) == {"tfdist", "tensorflow", "keras"}
  result = run_tfdist("train", f"--config={first / 'params.yaml'}", f"--model_dir={second}",
                      *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  again = read_metrics(str(second))
  assert again["train_loss_history"] == metrics["train_loss_history"]
  assert (second / "params.yaml").read_text() == params.replace(str(first), str(second))


@pytest.mark.e2e
def test_evaluate_a_trained_run(tmp_path, data_dir):
  """`tfdist evaluate` rebuilds the run's model from its params.yaml and evaluates a checkpoint."""
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--model=mlp", "--epochs=2", "--steps_per_epoch=10",
                      f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  trained = read_metrics(str(model_dir))
  final = run_tfdist("evaluate", f"--model_dir={model_dir}")
  assert final.returncode == 0, final.stderr[-3000:]
  assert re.search(r"tfdist: evaluated ckpt-0002 of mlp on mnist5k \(test\): eval_loss [0-9.]+, "
                   r"eval_accuracy [0-9.]+ \(1,000 examples\)", final.stdout), final.stdout
  first = run_tfdist("evaluate", f"--model_dir={model_dir}",
                     f"--checkpoint={model_dir / 'checkpoints' / 'ckpt-0001'}")
  assert first.returncode == 0, first.stderr[-3000:]
  evaluations = json.loads((model_dir / "eval" / "metrics.json").read_text())["evaluations"]
  assert [e["epoch"] for e in evaluations] == [2, 1]
  # The final checkpoint holds the weights the run evaluated at its end.
  assert evaluations[0]["eval_accuracy"] == pytest.approx(trained["eval_accuracy"], abs=1e-6)
  assert all(e["eval_examples"] == 1000 for e in evaluations)
  assert_usage_error(run_tfdist("evaluate", f"--model_dir={tmp_path}"),
                     f"--model_dir: {tmp_path} has no params.yaml")
  assert_usage_error(run_tfdist("evaluate", f"--model_dir={model_dir}", "--checkpoint=/nope/ckpt"),
                     "--checkpoint: no checkpoint '/nope/ckpt'")
