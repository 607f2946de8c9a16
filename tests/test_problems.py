"""Supervised problems beyond images to class ids: regression, dict and string features with
sample weights, variable-length sequences, several outputs; bad data is one line, exit 2."""

import os

import pytest

from tests.helpers import REPO, THREAD_FLAGS, read_metrics, run_tfdist, start_launch

PROBLEMS = "tests.cluster_scripts.problems"
SPECS = os.path.join(REPO, "configs", "clusters")
# (data function, model function, the eval figures it must report, and a bar they meet)
KINDS = {
    "regression": ("line", "regression", {"eval_loss": ("<", 0.5), "mae": ("<", 0.6)}),
    "dict_strings_weights": ("clicks", "click_model", {"auc": (">", 0.9)}),
    "sequences": ("sentences", "sentence_model", {"accuracy": (">", 0.8)}),
    "two_outputs": ("two_targets", "two_heads", {"total_mae": ("<", 1.0),
                                                 "sign_accuracy": (">", 0.7)}),
}


def check_figures(metrics: dict, bars: dict) -> None:
  for name, (how, bar) in bars.items():
    value = metrics["eval_loss"] if name == "eval_loss" else metrics["eval_metrics"][name]
    assert (value < bar) if how == "<" else (value > bar), (name, value, metrics["eval_metrics"])


def train_args(kind: str, model_dir, keras3: bool = False, *extra: str) -> list[str]:
  data, model, _ = KINDS[kind]
  return ["train", f"--dataset={PROBLEMS}:{data}",
          f"--model={PROBLEMS}:{model}{'_keras3' if keras3 else ''}", "--epochs=3",
          "--global_batch_size=64", f"--model_dir={model_dir}", *THREAD_FLAGS, *extra]


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["fit", "custom"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_problem_kind_under_mirrored_with_both_loops(tmp_path, kind, loop):
  result = run_tfdist(*train_args(kind, tmp_path / "run", False, "--strategy=mirrored",
                                  "--cpu_replicas=2", f"--loop={loop}"))
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(tmp_path / "run")
  check_figures(metrics, KINDS[kind][2])
  assert metrics["num_replicas"] == 2 and metrics["eval_examples"] == 256
  shown = f"eval_loss {metrics['eval_loss']:.4f}"
  assert shown in result.stdout, result.stdout  # the summary line shows the same figures
  if kind != "sequences" and kind != "two_outputs":
    assert metrics["eval_accuracy"] is None  # no accuracy metric: none reported


@pytest.mark.e2e
def test_keras3_models_train_dict_and_several_output_data(tmp_path):
  for kind in ("dict_strings_weights", "two_outputs"):
    result = run_tfdist(*train_args(kind, tmp_path / kind, True, "--strategy=mirrored",
                                    "--cpu_replicas=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    check_figures(read_metrics(tmp_path / kind), KINDS[kind][2])


@pytest.mark.cluster
@pytest.mark.parametrize("spec, kind, keras3, loop", [
    ("local-2workers.yaml", "sequences", False, "custom"),   # padded lengths differ per worker
    ("local-2workers.yaml", "two_outputs", True, "fit"),
    ("local-ps.yaml", "dict_strings_weights", False, "fit"),
    ("local-ps.yaml", "sequences", True, "custom"),
])
def test_problem_kinds_on_multi_worker_and_parameter_server_clusters(tmp_path, spec, kind,
                                                                     keras3, loop):
  model_dir = tmp_path / "run"
  command = ["tfdist", *train_args(kind, model_dir, keras3, f"--loop={loop}")]
  proc = start_launch(os.path.join(SPECS, spec), tmp_path / "logs", command)
  output = proc.communicate(timeout=400)[0]
  assert proc.returncode == 0, output[-4000:]
  metrics = read_metrics(model_dir)
  assert metrics["num_workers"] == 2
  check_figures(metrics, KINDS[kind][2])


@pytest.mark.e2e
@pytest.mark.parametrize("data, model, fragment", [
    ("string_labels", "regression", "label is TensorSpec(shape=(), dtype=tf.string"),
    ("train_differs_from_test", "regression", "splits 'train' and 'test' hold different examples"),
    ("wrong_label_keys", "two_heads", "the label keys ['sign', 'sum'] are not the model's outputs"),
    ("wrong_weight_shape", "regression", "sample_weight is TensorSpec(shape=(3,)"),
    ("line", "sentence_model", "takes `num_classes`, but the data has none"),
    ("line", "cnn", "takes `num_classes`, but the data has none"),
])
def test_bad_data_is_one_line_and_writes_nothing(tmp_path, data, model, fragment):
  model_name = model if model == "cnn" else f"{PROBLEMS}:{model}"
  result = run_tfdist("train", f"--dataset={PROBLEMS}:{data}", f"--model={model_name}",
                      f"--model_dir={tmp_path / 'run'}", "--epochs=1", *THREAD_FLAGS)
  assert_user_error(result, fragment)
  assert not (tmp_path / "run").exists()


def assert_user_error(result, fragment):
  """Exit 2, the error as the last line on stderr, no traceback. Errors found once the model
  is built (its outputs, its compilation) come after the run's start-up log lines."""
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("tfdist train: error:") and fragment in last, last
  assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.e2e
def test_an_uncompiled_model_for_float_labels_is_refused(tmp_path):
  module = tmp_path / "uncompiled.py"
  module.write_text("import tf_keras as keras\n\ndef build(input_shape):\n"
                    "  return keras.Sequential([keras.Input(shape=input_shape), "
                    "keras.layers.Dense(1)])\n")
  env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}", TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_CONFIG", None)
  result = run_tfdist("train", f"--dataset={PROBLEMS}:line", "--model=uncompiled:build",
                      f"--model_dir={tmp_path / 'run'}", "--epochs=1", *THREAD_FLAGS, env=env)
  assert_user_error(result, "returns an uncompiled model, and the labels are not class ids")
  assert not (tmp_path / "run").exists()


@pytest.mark.cluster
@pytest.mark.parametrize("example, line", [("regression.py", r"eval_mse (\S+);"),
                                           ("text_classifier.py", r"eval_accuracy (\S+);")])
def test_the_problem_examples_run_on_two_workers(tmp_path, example, line):
  import re
  model_dir = tmp_path / "run"
  proc = start_launch(os.path.join(SPECS, "local-2workers.yaml"), tmp_path / "logs",
                      ["python", f"examples/{example}", f"--model_dir={model_dir}", "--epochs=4"])
  output = proc.communicate(timeout=400)[0]
  assert proc.returncode == 0, output[-4000:]
  value = float(re.search(rf"\[worker:0\] {line}", output).group(1))
  assert value < 0.05 if example == "regression.py" else value > 0.95
  assert read_metrics(model_dir)["strategy"] == "MultiWorkerMirroredStrategy"
