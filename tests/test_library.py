"""The library entry point, a user's own data, TFDS splits, warm starts and training further."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist
from tests.helpers import assert_usage_error

SPECS = os.path.join(REPO, "configs", "clusters")

# A user's data module, outside the project: CSV rows (id, 4 features, label) in 4 train files,
# and generated features; the first feature of `*_with_ids` is the example's id.
USER_DATA = textwrap.dedent('''
    import os
    import tensorflow as tf

    DIR = os.environ["MY_DATA_DIR"]

    def _csv(split, with_ids):
      files = sorted(tf.io.gfile.glob(os.path.join(DIR, f"{split}-*.csv")))
      def parse(line):
        v = tf.io.decode_csv(line, [0.0] * 5 + [0])
        return tf.stack(v[0 if with_ids else 1:5]), tf.cast(v[5], tf.int64)
      return tf.data.Dataset.from_tensor_slices(files).interleave(
          tf.data.TextLineDataset, cycle_length=2).map(parse)

    def rows(split):
      return _csv(split, with_ids=False)

    def rows_with_ids(split):
      return _csv(split, with_ids=True)

    def generated_with_ids(split):
      first, count = (0, 960) if split == "train" else (10_000, 96)
      ids = tf.range(first, first + count, dtype=tf.int64)
      return tf.data.Dataset.from_tensor_slices(ids).map(
          lambda i: (tf.stack([tf.cast(i, tf.float32), 1.0]), i % 2))

    def _as_dict(features, label):  # the id among string and number features
      return {"id": tf.cast(features[0], tf.int64), "tag": tf.strings.as_string(label),
              "values": features[1:]}, label

    def dict_rows_with_ids(split):
      return rows_with_ids(split).map(_as_dict)

    def dict_generated_with_ids(split):
      return generated_with_ids(split).map(_as_dict)

    def batched(split):
      return rows(split).batch(8)

    def broken(split):
      return {"train": 1}[split] / 0

    def no_split():
      return rows("train")
''')


@pytest.fixture
def user_data(tmp_path):
  """(env with the module importable, its CSV dir): 4 x 240 train rows, 240 test rows."""
  import numpy as np
  data = tmp_path / "csv"
  data.mkdir()
  rng = np.random.default_rng(1)
  centres = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
  next_id = 0
  for name, count in [("train-0", 240), ("train-1", 240), ("train-2", 240), ("train-3", 240),
                      ("test-0", 240)]:
    labels = rng.integers(0, 3, size=count)
    points = centres[labels] + rng.normal(0, 0.6, size=(count, 4))
    lines = []
    for p, y in zip(points, labels):
      lines.append(f"{next_id}," + ",".join(f"{v:.4f}" for v in p) + f",{y}")
      next_id += 1
    (data / f"{name}.csv").write_text("\n".join(lines) + "\n")
  (tmp_path / "my_data.py").write_text(USER_DATA)
  env = cli_env(MY_DATA_DIR=str(data), PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
  return env, data


@pytest.mark.e2e
def test_user_data_trains_under_mirrored(tmp_path, user_data):
  env, _ = user_data
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--dataset=my_data:rows", "--model=mlp", "--strategy=mirrored",
                      "--cpu_replicas=2", "--epochs=4", f"--model_dir={model_dir}",
                      *THREAD_FLAGS, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(str(model_dir))
  assert metrics["dataset"] == "my_data:rows" and metrics["num_replicas"] == 2
  assert metrics["steps_per_epoch"] == 960 // 64 and metrics["eval_examples"] == 240
  assert metrics["eval_accuracy"] >= 0.9
  assert "dataset: my_data:rows" in (model_dir / "params.yaml").read_text()


@pytest.mark.cluster
@pytest.mark.parametrize("function, policy", [("rows_with_ids", "FILE"),
                                              ("generated_with_ids", "DATA"),
                                              ("dict_rows_with_ids", "FILE"),
                                              ("dict_generated_with_ids", "DATA")])
def test_user_data_every_example_once_per_epoch_over_two_workers(tmp_path, user_data, function,
                                                                 policy):
  env, _ = user_data
  out_dir = tmp_path / "out"
  out_dir.mkdir()
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "python", "-m",
                      "tests.cluster_scripts.iterate_ids", f"my_data:{function}", str(out_dir),
                      "24", "3", env=env, timeout=200)
  assert result.returncode == 0, result.stdout[-4000:]
  per_worker = [json.loads(p.read_text()) for p in sorted(out_dir.glob("ids-*.json"))]
  assert len(per_worker) == 2 and all(per_worker), "a worker read nothing"
  seen = [i for ids in per_worker for i in ids]
  assert len(seen) == len(set(seen)), "an example was read twice"
  assert sorted(seen) == list(range(960)), "examples are missing"
  assert f"Input: {policy} sharding for pipeline 1 of 2" in (
      tmp_path / "logs" / "worker-1.log").read_text()


@pytest.mark.cluster
def test_library_entry_point_with_user_data_on_every_task_of_two_workers(tmp_path):
  """examples/own_data.py: tfdist.run, unchanged, on both tasks of a 2-worker MWMS job."""
  model_dir = tmp_path / "run"
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "python", "examples/own_data.py",
                      f"--csv_dir={tmp_path / 'csv'}", f"--model_dir={model_dir}", "--epochs=4",
                      timeout=300)
  assert result.returncode == 0, result.stdout[-4000:]
  metrics = read_metrics(str(model_dir))
  assert metrics["strategy"] == "MultiWorkerMirroredStrategy" and metrics["num_workers"] == 2
  assert metrics["eval_accuracy"] >= 0.9
  assert "[worker:0] eval_accuracy" in result.stdout
  assert "[worker:1] eval_accuracy" not in result.stdout  # only the chief evaluates
  assert "Input: FILE sharding for pipeline 1 of 2 (4 files split evenly" in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("function, fragment", [
    ("batched", "gives batches (features float32[None,4], label int64[None]); expected "
                "unbatched examples"),
    ("broken", "`data.dataset` (my_data:broken) raised ZeroDivisionError for split 'train'"),
    ("no_split", "the function must take `split`"),
    ("missing", "my_data has no function 'missing'"),
])
def test_user_data_errors_exit_2_with_one_line(tmp_path, user_data, function, fragment):
  env, _ = user_data
  result = run_tfdist("train", f"--dataset=my_data:{function}", f"--model_dir={tmp_path / 'run'}",
                      env=env)
  assert_usage_error(result, "tfdist train: error:", fragment)
  assert not (tmp_path / "run").exists()


@pytest.mark.e2e
def test_tfds_split_slices_and_eval_split(tmp_path, data_dir):
  model_dir = tmp_path / "run"
  result = run_tfdist("train", "--dataset=tfds:mnist5k:train[:80%]", "--eval_split=train[80%:]",
                      "--model=mlp", "--epochs=1", f"--data_dir={data_dir}",
                      f"--model_dir={model_dir}", *THREAD_FLAGS)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(str(model_dir))
  assert metrics["steps_per_epoch"] == 3200 // 64 and metrics["eval_examples"] == 800
  assert_usage_error(run_tfdist("train", "--eval_split=validation", f"--data_dir={data_dir}",
                                f"--model_dir={tmp_path / 'bad'}"),
                     "`data.eval_split`: mnist5k has no split 'validation'")


@pytest.mark.e2e
def test_tfds_datasets_of_any_supervised_features_and_unsupported_ones(tmp_path):
  """Non-image supervised datasets load (ids, text); one without (input, label) keys is one error."""
  script = textwrap.dedent(f'''
      import tfdist, tensorflow as tf, tensorflow_datasets as tfds
      from tfdist.data import DataOptions, DataSourceError, load_source
      from tests.cluster_scripts.ids_dataset import ExampleIds, prepare

      class TextLabels(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")
        def _info(self):
          return tfds.core.DatasetInfo(builder=self, supervised_keys=("text", "label"),
              features=tfds.features.FeaturesDict({{"text": tfds.features.Text(),
                                                   "label": tfds.features.ClassLabel(num_classes=2)}}))
        def _split_generators(self, dl_manager):
          return {{"train": self._generate_examples(), "test": self._generate_examples()}}
        def _generate_examples(self):
          for i in range(4):
            yield i, {{"text": "x" * i, "label": i % 2}}

      class Unlabelled(TextLabels):
        def _info(self):
          return tfds.core.DatasetInfo(builder=self,
              features=tfds.features.FeaturesDict({{"text": tfds.features.Text(),
                                                   "label": tfds.features.ClassLabel(num_classes=2)}}))

      data_dir = {str(tmp_path)!r}
      prepare(data_dir, 2)
      TextLabels(data_dir=data_dir).download_and_prepare()
      Unlabelled(data_dir=data_dir).download_and_prepare()
      for name in ("example_ids", "text_labels"):
        source = load_source(DataOptions(dataset="tfds:" + name, data_dir=data_dir))
        print(name, source.example_spec.features.dtype.name, source.example_spec.input_shape,
              source.num_classes, source.num_train_examples)
      try:
        load_source(DataOptions(dataset="tfds:unlabelled", data_dir=data_dir))
      except DataSourceError as e:
        print("error", e)
  ''')
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=cli_env(),
                          capture_output=True, text=True, timeout=200)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "example_ids int64 () 2 1000" in result.stdout
  assert "text_labels string () 2 4" in result.stdout
  assert ("error `data.dataset`: unlabelled has no (input, label) supervised keys") in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_finished_run_trains_further_with_more_epochs(tmp_path, data_dir, loop):
  model_dir = tmp_path / "run"
  args = ("train", "--model=mlp", f"--loop={loop}", "--steps_per_epoch=20",
          f"--model_dir={model_dir}", f"--data_dir={data_dir}", *THREAD_FLAGS)
  first = run_tfdist(*args, "--epochs=2")
  assert first.returncode == 0, first.stderr[-3000:]
  before = read_metrics(str(model_dir))
  further = run_tfdist(*args, "--epochs=3")
  assert further.returncode == 0, further.stderr[-3000:]
  metrics = read_metrics(str(model_dir))
  assert metrics["epochs_completed"] == 3 and len(metrics["train_loss_history"]) == 1
  assert metrics["started_from"]["epoch"] == 2
  assert metrics["started_from"]["weights"].endswith("checkpoints/ckpt-0002")
  assert metrics["resumed_from"] is None
  assert metrics["train_loss"] < before["train_loss_history"][0]  # not from scratch
  assert "Epoch 3/3" in further.stdout and "Epoch 1/3" not in further.stdout
  run = json.loads((model_dir / "run.json").read_text())
  assert run["checkpoints"] == ["ckpt-0001", "ckpt-0002", "ckpt-0003"]
  assert run["final_checkpoint"] == "ckpt-0003" and run["status"] == "finished"
  again = run_tfdist(*args, "--epochs=3")
  assert again.returncode == 0, again.stderr[-3000:]
  assert "nothing to train" in again.stderr and "Epoch" not in again.stdout
  assert read_metrics(str(model_dir)) == metrics


@pytest.mark.e2e
def test_init_checkpoint_warm_starts_a_new_run(tmp_path, data_dir):
  source = tmp_path / "source"
  common = ("--model=mlp", "--steps_per_epoch=20", "--epochs=1", "--seed=3",
            f"--data_dir={data_dir}", *THREAD_FLAGS)
  assert run_tfdist("train", *common, "--epochs=3", f"--model_dir={source}").returncode == 0
  fresh = run_tfdist("train", *common, f"--model_dir={tmp_path / 'fresh'}")
  warm = run_tfdist("train", *common, f"--model_dir={tmp_path / 'warm'}",
                    f"--init_checkpoint={source}")
  assert fresh.returncode == 0 and warm.returncode == 0, warm.stderr[-3000:]
  warm_metrics = read_metrics(str(tmp_path / "warm"))
  assert warm_metrics["started_from"]["weights"] == str(source / "checkpoints" / "ckpt-0003")
  assert (warm_metrics["train_loss_history"][0]
          < read_metrics(str(tmp_path / "fresh"))["train_loss_history"][0])
  assert_usage_error(run_tfdist("train", *common, f"--model_dir={tmp_path / 'a'}",
                                f"--init_checkpoint={tmp_path / 'nothing'}"),
                     "`train.init_checkpoint`", "no checkpoint there")
  assert not (tmp_path / "a").exists()
  mismatch = run_tfdist("train", "--model=cnn", *common[1:], f"--model_dir={tmp_path / 'b'}",
                        f"--init_checkpoint={source}")
  assert mismatch.returncode == 2 and "does not hold this model's weights" in mismatch.stderr
  assert not (tmp_path / "b").exists()


def readme_library_example() -> str:
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  start = readme.index("```python\n", readme.index("This is a complete script:")) + len("```python\n")
  return readme[start:readme.index("```", start)]


@pytest.mark.cluster
def test_the_readme_library_example_runs_on_one_machine_and_two_workers(tmp_path):
  script = tmp_path / "my_train.py"
  script.write_text(readme_library_example().replace("/tmp/my_run", str(tmp_path / "one")))
  one = subprocess.run([sys.executable, str(script)], cwd=REPO, env=cli_env(),
                       capture_output=True, text=True, timeout=300)
  assert one.returncode == 0, one.stderr[-3000:]
  assert float(one.stdout.split("eval_accuracy ")[1]) >= 0.95
  script.write_text(readme_library_example().replace("/tmp/my_run", str(tmp_path / "two")))
  two = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, 'local-2workers.yaml')}",
                   f"--log_dir={tmp_path / 'logs'}", "--", "python", str(script), timeout=300)
  assert two.returncode == 0, two.stdout[-4000:]
  metrics = read_metrics(str(tmp_path / "two"))
  assert metrics["num_workers"] == 2 and metrics["eval_accuracy"] >= 0.95


@pytest.mark.e2e
def test_the_own_data_example_is_a_dataset_for_the_command_line(tmp_path):
  """examples/own_data.py's function, as the README shows it with `tfdist train --dataset=`."""
  write = subprocess.run([sys.executable, "-c", "import own_data; own_data.write_example_csv("
                          f"{str(tmp_path / 'csv')!r})"], cwd=REPO,
                         env=cli_env(PYTHONPATH=os.path.join(REPO, "examples")),
                         capture_output=True, text=True, timeout=120)
  assert write.returncode == 0, write.stderr[-2000:]
  result = run_tfdist("train", "--dataset=own_data:csv_rows", "--model=mlp", "--epochs=2",
                      f"--model_dir={tmp_path / 'run'}", *THREAD_FLAGS,
                      env=cli_env(PYTHONPATH=os.path.join(REPO, "examples"),
                                  OWN_DATA_CSV_DIR=str(tmp_path / "csv")))
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(str(tmp_path / "run"))
  assert metrics["dataset"] == "own_data:csv_rows" and metrics["eval_examples"] == 600
  assert metrics["eval_accuracy"] >= 0.9
