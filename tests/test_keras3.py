"""Keras 3 models (`import keras`) under every strategy and loop, as tfdist trains tf_keras ones."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist
from tests.helpers import assert_usage_error

SPECS = os.path.join(REPO, "configs", "clusters")

# A user's model module, written the way the current Keras docs write models.
KERAS3_MODELS = textwrap.dedent('''
    import keras

    def build(input_shape, num_classes):
      return keras.Sequential([
          keras.Input(shape=input_shape),
          keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.MaxPooling2D(),
          keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
          keras.layers.Dense(num_classes)])

    def _sgd(input_shape, num_classes, learning_rate):
      model = build(input_shape, num_classes)
      model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])
      return model

    def sgd_momentum(input_shape, num_classes):
      return _sgd(input_shape, num_classes, 0.05)

    def frozen_sgd(input_shape, num_classes):
      """A learning rate of 0: if tfdist replaced the optimizer, this model would learn."""
      return _sgd(input_shape, num_classes, 0.0)
''')

# tf.keras code: Keras 3 when the user sets TF_USE_LEGACY_KERAS=0.
TF_KERAS_MODELS = textwrap.dedent('''
    import tensorflow as tf

    def build(input_shape, num_classes):
      return tf.keras.Sequential([tf.keras.Input(shape=input_shape), tf.keras.layers.Flatten(),
                                  tf.keras.layers.Dense(64, activation="relu"),
                                  tf.keras.layers.Dense(num_classes)])
''')


def with_user_models(directory) -> dict:
  """The CLI's environment with the user model modules above written into `directory`."""
  (directory / "k3_models.py").write_text(KERAS3_MODELS)
  (directory / "tfk_models.py").write_text(TF_KERAS_MODELS)
  return cli_env(PYTHONPATH=f"{directory}{os.pathsep}{REPO}")


@pytest.fixture
def keras3_env(tmp_path):
  return with_user_models(tmp_path)


def launch(spec, model_dir, log_dir, env, *train_args, launch_args=(), timeout=400):
  return run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, spec)}",
                    f"--log_dir={log_dir}", *launch_args, "--", "tfdist", "train",
                    f"--model_dir={model_dir}", *THREAD_FLAGS, *train_args, env=env,
                    timeout=timeout)


def assert_keras3_run(metrics, strategy, bar):
  assert metrics["keras"] == "keras3" and metrics["versions"]["keras"].startswith("Keras 3.")
  assert metrics["strategy"] == strategy
  assert metrics["eval_accuracy"] >= bar, metrics


@pytest.mark.e2e
def test_uncompiled_keras3_model_with_tfdist_defaults_under_mirrored(tmp_path, data_dir,
                                                                    keras3_env):
  """`fit` on 2 logical CPUs, 8 epochs: accuracy, progress, TensorBoard, export reloaded."""
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--model=k3_models:build", "--strategy=mirrored",
                      "--cpu_replicas=2", "--epochs=8", f"--model_dir={model_dir}",
                      f"--data_dir={data_dir}", *THREAD_FLAGS, env=keras3_env)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(str(model_dir))
  assert_keras3_run(metrics, "MirroredStrategy", 0.95)
  assert metrics["num_replicas"] == 2 and len(metrics["train_loss_history"]) == 8
  assert "Keras 3 model: fit runs its train_step in tfdist's loop, 10 step(s) per call" in (
      result.stderr)
  assert re.search(r"Epoch 8/8: 62 steps - loss: [0-9.]+ - accuracy: [0-9.]+", result.stdout)
  assert sorted(os.listdir(model_dir / "checkpoints"))[-1] == "ckpt-0008.index"
  assert os.listdir(model_dir / "tensorboard" / "train")
  # The export reloads without the model's code and predicts with the reported accuracy.
  script = textwrap.dedent(f'''
      import numpy as np, tensorflow as tf
      from tfdist.data import DataOptions, load_source
      images, labels = next(iter(load_source(DataOptions(data_dir={data_dir!r})).eval_dataset(1000)))
      loaded = tf.saved_model.load({str(model_dir / "export")!r})  # (kept: it owns the variables)
      served = loaded.serve(images)
      print("accuracy", np.mean(np.argmax(served.numpy(), -1) == labels.numpy()))
  ''')
  reloaded = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=120)
  assert reloaded.returncode == 0, reloaded.stderr[-3000:]
  assert float(reloaded.stdout.split("accuracy ")[1]) == pytest.approx(metrics["eval_accuracy"],
                                                                       abs=1e-6)


@pytest.mark.e2e
def test_custom_loop_with_a_keras3_model_under_mirrored(tmp_path, data_dir, keras3_env):
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--model=k3_models:build", "--loop=custom", "--strategy=mirrored",
                      "--cpu_replicas=2", "--epochs=4", f"--model_dir={model_dir}",
                      f"--data_dir={data_dir}", *THREAD_FLAGS, env=keras3_env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_keras3_run(read_metrics(str(model_dir)), "MirroredStrategy", 0.93)


@pytest.mark.e2e
def test_a_compiled_keras3_model_keeps_its_own_optimizer(tmp_path, data_dir, keras3_env):
  """SGD with learning rate 0 learns nothing: tfdist used it, not an optimizer of its own."""
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--model=k3_models:frozen_sgd", "--epochs=1",
                      f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS,
                      env=keras3_env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert read_metrics(str(model_dir))["eval_accuracy"] < 0.3


# The Keras 3 2-worker job that the tests below share, deterministic: the killed job must end
# with its weights.
KERAS3_TWO_WORKER_JOB = ("--model=k3_models:sgd_momentum", "--epochs=4", "--deterministic")


@pytest.fixture(scope="module")
def keras3_two_worker_job(tmp_path_factory, data_dir):
  """run(loop) -> (model dir, launch output) of KERAS3_TWO_WORKER_JOB with `loop`, run once on
  first use (its tests share one xdist group); the custom loop's sums gradients in bfloat16."""
  done = {}

  def run(loop: str):
    if loop not in done:
      root = tmp_path_factory.mktemp(f"keras3-two-workers-{loop}")
      result = launch("local-2workers.yaml", root / "run", root / "logs",
                      with_user_models(root), *KERAS3_TWO_WORKER_JOB, f"--loop={loop}",
                      f"--data_dir={data_dir}",
                      # Keras 3's optimizer sums the gradients itself: in bfloat16 too.
                      f"--allreduce_dtype={'bfloat16' if loop == 'custom' else 'float32'}")
      assert result.returncode == 0, result.stdout[-4000:]
      done[loop] = (root / "run", result.stdout)
    return done[loop]

  return run


@pytest.mark.cluster
@pytest.mark.xdist_group("keras3_two_worker_job")
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_keras3_under_multi_worker_mirrored(keras3_two_worker_job, loop):
  model_dir, stdout = keras3_two_worker_job(loop)
  metrics = read_metrics(str(model_dir))
  assert_keras3_run(metrics, "MultiWorkerMirroredStrategy", 0.93)
  assert metrics["num_workers"] == 2 and metrics["num_replicas"] == 2
  assert metrics["communication"]["allreduce_value_bytes"] == (2 if loop == "custom" else 4)
  assert ("summed over 2 replicas as bfloat16" in stdout) == (loop == "custom")
  assert set(os.listdir(model_dir)) == {"checkpoints", "export", "metrics.json", "params.yaml",
                                        "run.json", "tensorboard"}


@pytest.mark.cluster
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_keras3_under_parameter_servers(tmp_path, data_dir, keras3_env, loop):
  """Chief + 2 workers + 1 ps (and, with fit, the sidecar evaluator following the run)."""
  model_dir = tmp_path / "run"
  spec = "local-ps-eval.yaml" if loop == "fit" else "local-ps.yaml"
  result = launch(spec, model_dir, tmp_path / "logs", keras3_env,
                  "--model=k3_models:sgd_momentum", f"--loop={loop}", "--epochs=4",
                  f"--data_dir={data_dir}")
  assert result.returncode == 0, result.stdout[-4000:]
  metrics = read_metrics(str(model_dir))
  assert_keras3_run(metrics, "ParameterServerStrategy", 0.9)
  if loop == "fit":
    evaluations = json.loads((model_dir / "eval" / "metrics.json").read_text())["evaluations"]
    assert evaluations[-1]["checkpoint"] == "ckpt-0004"
    assert abs(evaluations[-1]["eval_accuracy"] - metrics["eval_accuracy"]) <= 0.002


@pytest.mark.cluster
@pytest.mark.xdist_group("keras3_two_worker_job")
def test_a_killed_worker_resumes_a_keras3_run_from_its_backup(tmp_path, data_dir, keras3_env,
                                                               keras3_two_worker_job):
  """SIGKILL worker:1 mid-epoch 3: the job comes back from its backup and ends with the
  weights of the same job never killed (fit: Keras 3's train_step in tfdist's loop)."""
  model_dir, log_dir = tmp_path / "run", tmp_path / "logs"
  proc = subprocess.Popen(
      [sys.executable, "-m", "tfdist", "launch",
       f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}", "--restarts=1",
       f"--log_dir={log_dir}", "--", "tfdist", "train", f"--model_dir={model_dir}",
       *THREAD_FLAGS, *KERAS3_TWO_WORKER_JOB, "--loop=fit", f"--data_dir={data_dir}",
       "--allreduce_dtype=float32", "--backup_every_steps=10", "--save_share=0"],
      cwd=REPO, env=keras3_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith("[worker:0] Epoch 2/4"):
      time.sleep(1.0)  # into epoch 3, past a backup at step 10
      pid = int(re.search(r"started worker:1 \(pid (\d+)",
                          (log_dir / "worker-1.log").read_text()).group(1))
      os.kill(pid, signal.SIGKILL)
      break
  output.extend(proc.stdout)
  text = "".join(output)
  assert proc.wait(timeout=400) == 0, text[-4000:]
  assert "restarting every task (restart 1 of 1)" in text
  metrics = read_metrics(str(model_dir))
  assert metrics["resumed_from"] is not None and metrics["resumed_from"]["epoch"] >= 3, text[-3000:]
  assert metrics["epochs_completed"] == 4 and metrics["eval_accuracy"] >= 0.93
  uninterrupted = read_metrics(str(keras3_two_worker_job("fit")[0]))["weights_sha256"]
  print(f"weights_sha256 MWMS 2 workers, Keras 3, fit, SIGKILL: uninterrupted {uninterrupted}, "
        f"resumed at {metrics['resumed_from']} {metrics['weights_sha256']}")  # (pytest -rP)
  assert metrics["weights_sha256"] == uninterrupted


@pytest.mark.e2e
def test_tf_keras_code_is_keras3_when_the_user_sets_legacy_keras_off(tmp_path, data_dir,
                                                                      keras3_env):
  model_dir = tmp_path / "run"
  env = dict(keras3_env, TF_USE_LEGACY_KERAS="0")
  result = run_tfdist("train", "--model=tfk_models:build", "--epochs=2", f"--model_dir={model_dir}",
                      f"--data_dir={data_dir}", *THREAD_FLAGS, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert_keras3_run(read_metrics(str(model_dir)), "MirroredStrategy", 0.85)
  same = run_tfdist("train", "--model=tfk_models:build", "--epochs=2",
                    f"--model_dir={tmp_path / 'legacy'}", f"--data_dir={data_dir}", *THREAD_FLAGS,
                    env=keras3_env)  # unset: tf.keras is tf_keras, as it always was with tfdist
  assert same.returncode == 0, same.stderr[-3000:]
  assert read_metrics(str(tmp_path / "legacy"))["keras"] == "tf_keras"


@pytest.mark.e2e
def test_keras3_on_another_backend_is_one_line_before_start_up(tmp_path, keras3_env):
  """worker:1 never starts: the error must come before the rendezvous would wait for it."""
  config = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
            "task": {"type": "worker", "index": 0}}
  env = dict(keras3_env, KERAS_BACKEND="numpy", TF_CONFIG=json.dumps(config))
  result = run_tfdist("train", "--model=k3_models:build", f"--model_dir={tmp_path / 'run'}",
                      env=env, timeout=60)
  assert_usage_error(result, "Keras 3.", "runs on the 'numpy' backend",
                     "set KERAS_BACKEND=tensorflow")


@pytest.mark.cluster
def test_upstream_keras3_fit_still_fails_under_multi_worker_mirrored(tmp_path):
  """What train/keras3_upstream.py works around; when this fails, the workaround can go."""
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "python", "-m",
                      "tests.cluster_scripts.keras3_own_fit", timeout=200)
  assert "KERAS3_FIT_WORKED" not in result.stdout, "Keras 3 fit works now: drop the workaround"
  assert result.returncode != 0
  assert "Attempt to convert a value (PerReplica" in result.stdout, result.stdout[-3000:]


@pytest.mark.e2e
def test_the_keras3_example_runs_with_its_callback(tmp_path):
  result = subprocess.run([sys.executable, "examples/keras3_model.py",
                           f"--model_dir={tmp_path}", "--epochs=1"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "epoch 1: accuracy" in result.stderr and "learning rate 0.050" in result.stderr
  assert re.search(r"Keras 3\.\d+\.\d+: eval_accuracy 0\.\d+", result.stdout)


@pytest.mark.e2e
def test_upstream_keras3_variables_cannot_be_saved_in_the_background(tmp_path):
  """Why tfdist saves Keras 3 models in the foreground (train/saving.py: save_options)."""
  script = textwrap.dedent(f'''
      import tensorflow as tf, keras
      with tf.distribute.MirroredStrategy().scope():  # as tfdist builds models
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
      options = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)
      try:
        checkpoint = tf.train.Checkpoint(model=model)
        for epoch in (1, 2):  # the second background save is the one that fails
          checkpoint.write({str(tmp_path)!r} + f"/ckpt-{{epoch}}", options=options)
          checkpoint.sync()
        print("ASYNC_SAVE_WORKED")
      except ValueError as e:
        print("ValueError:", str(e).strip().splitlines()[-1])
  ''')
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=120)
  assert "ASYNC_SAVE_WORKED" not in result.stdout, "Keras 3 saves async now: drop save_options"
  assert "tf.function only supports singleton tf.Variables" in result.stdout, result.stderr[-2000:]
