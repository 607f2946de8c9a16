"""The simplest distributed regression: y = 2x, a two-layer model, mean squared error.

    python examples/regression.py --model_dir=/tmp/tfdist/regression
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/regression.py --model_dir=/tmp/tfdist/regression_mwms

Float labels: the model comes compiled with its loss (tfdist compiles only classifiers).
The chief prints the evaluation's mean squared error.
"""

import tfdist  # first: makes tf.keras the tf_keras that tfdist trains with

import numpy as np
import tensorflow as tf
from absl import app, flags

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/regression", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 10, "Epochs to train.")


def line(split):
  """Unbatched (x, y) pairs with y = 2x: 4,096 to train on, 1,024 to evaluate."""
  rng = np.random.default_rng(0 if split == "train" else 1)
  x = rng.uniform(-1, 1, size=(4096 if split == "train" else 1024, 1)).astype("float32")
  return tf.data.Dataset.from_tensor_slices((x, 2 * x[:, 0]))


def model(input_shape):
  m = tf.keras.Sequential([tf.keras.Input(shape=input_shape),
                           tf.keras.layers.Dense(10, activation="relu"),
                           tf.keras.layers.Dense(1)])
  m.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
  return m


def main(argv):
  del argv
  metrics = tfdist.run({"data": {"global_batch_size": 64},
                        "train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value}},
                       model_fn=model, data_fn=line)
  if metrics and metrics["eval_loss"] is not None:  # the chief evaluates
    print(f"eval_mse {metrics['eval_loss']:.5f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
