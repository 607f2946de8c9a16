"""Train your own Keras model with tfdist's library entry point (model.fit under any strategy).

    python examples/own_model_fit.py --model_dir=/tmp/tfdist/own_model
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/own_model_fit.py --model_dir=/tmp/tfdist/own_model_mwms

The same script runs on every task of a cluster: `tfdist.run` reads where it runs
(TF_CONFIG, a SLURM step, a Kubernetes pod) and picks the strategy; only the chief
writes outputs.
"""

import tfdist  # first: makes tf.keras the tf_keras that tfdist trains with

import tensorflow as tf
from absl import app, flags, logging

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/own_model", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs to train.")


def my_model(input_shape, num_classes):
  """Any function returning a Keras model; compile it yourself or let tfdist do it."""
  inputs = tf.keras.Input(shape=input_shape)
  x = tf.keras.layers.Conv2D(16, 5, activation="relu")(inputs)
  x = tf.keras.layers.MaxPooling2D(2)(x)
  x = tf.keras.layers.Flatten()(x)
  x = tf.keras.layers.Dense(64, activation="relu")(x)
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(num_classes)(x))
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3),
                loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  metrics = tfdist.run({"data": {"global_batch_size": 64},   # mnist5k, offline
                        "train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value}},
                       model_fn=my_model)
  if metrics and metrics["eval_accuracy"] is not None:  # the chief evaluates
    print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
