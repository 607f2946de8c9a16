"""Train on your own data: a function that returns a tf.data.Dataset of (features, label).

    python examples/own_data.py --csv_dir=/tmp/tfdist/own_data_csv --model_dir=/tmp/tfdist/own_data
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/own_data.py --model_dir=/tmp/tfdist/own_data_mwms

The same function works from the command line (the module must be importable):

    OWN_DATA_CSV_DIR=/tmp/tfdist/own_data_csv PYTHONPATH=examples \\
        tfdist train --dataset=own_data:csv_rows --model=mlp --model_dir=/tmp/tfdist/own_data_cli

Return one split's examples unbatched and in a fixed order: tfdist shards them over
workers (FILE: each worker reads its own CSV files, as here with 4 train files),
shuffles, repeats and batches them at the per-replica batch.
"""

import functools
import os

import tfdist

import numpy as np
import tensorflow as tf
from absl import app, flags, logging

NUM_FEATURES = 6
DEFAULT_CSV_DIR = "/tmp/tfdist/own_data_csv"


def csv_rows(split: str, csv_dir: str = "") -> tf.data.Dataset:
  """`split`'s rows of `csv_dir/{split}-*.csv`: NUM_FEATURES floats, then the class id."""
  csv_dir = csv_dir or os.environ.get("OWN_DATA_CSV_DIR", DEFAULT_CSV_DIR)
  files = sorted(tf.io.gfile.glob(os.path.join(csv_dir, f"{split}-*.csv")))
  if not files:
    raise FileNotFoundError(f"no {split}-*.csv in {csv_dir}")

  def parse(line):
    values = tf.io.decode_csv(line, [0.0] * NUM_FEATURES + [0])
    return tf.stack(values[:NUM_FEATURES]), tf.cast(values[NUM_FEATURES], tf.int64)

  return (tf.data.Dataset.from_tensor_slices(files)
          .interleave(tf.data.TextLineDataset, cycle_length=1)
          .map(parse, num_parallel_calls=tf.data.AUTOTUNE))


def write_example_csv(csv_dir: str, seed: int = 0) -> None:
  """Three classes of points around their own centres: 4 train files, 1 test file."""
  if tf.io.gfile.glob(os.path.join(csv_dir, "train-*.csv")):
    return
  rng = np.random.default_rng(seed)
  centres = rng.normal(0, 2.0, size=(3, NUM_FEATURES))
  tf.io.gfile.makedirs(csv_dir)
  for name, rows in [(f"train-{i}", 800) for i in range(4)] + [("test-0", 600)]:
    labels = rng.integers(0, 3, size=rows)
    points = centres[labels] + rng.normal(0, 1.0, size=(rows, NUM_FEATURES))
    lines = [",".join(f"{v:.4f}" for v in p) + f",{y}" for p, y in zip(points, labels)]
    path = os.path.join(csv_dir, f"{name}.csv")
    with tf.io.gfile.GFile(f"{path}.{os.getpid()}.tmp", "w") as f:
      f.write("\n".join(lines) + "\n")
    tf.io.gfile.rename(f"{path}.{os.getpid()}.tmp", path, overwrite=True)  # readers see it whole


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  csv_dir, model_dir = flags.FLAGS.csv_dir, flags.FLAGS.model_dir
  write_example_csv(csv_dir)  # every task may: the content is seeded, the same
  metrics = tfdist.run({"model": {"name": "mlp"},
                        "train": {"model_dir": model_dir, "epochs": flags.FLAGS.epochs}},
                       data_fn=functools.partial(csv_rows, csv_dir=csv_dir))
  if metrics and metrics["eval_accuracy"] is not None:
    print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {model_dir}")


if __name__ == "__main__":
  # Defined only when run as a script: `tfdist train --dataset=own_data:csv_rows` imports
  # this module next to tfdist's own flags.
  flags.DEFINE_string("csv_dir", DEFAULT_CSV_DIR,
                      "Where the CSV files are (written here first if missing).")
  flags.DEFINE_string("model_dir", "/tmp/tfdist/own_data", "Where outputs go.")
  flags.DEFINE_integer("epochs", 8, "Epochs to train.")
  app.run(main)
