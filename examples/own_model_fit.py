"""Train your own Keras model with tfdist's library API (model.fit under any strategy).

    python examples/own_model_fit.py --model_dir=/tmp/own_model

The same script runs on every task of a cluster: set TF_CONFIG (or use
`tfdist launch --cluster_spec=... -- python examples/own_model_fit.py`) and the
strategy becomes MultiWorkerMirroredStrategy without a code change.
"""

import tfdist  # noqa: F401  (first: makes tf.keras the tf_keras that tfdist trains with)

import tensorflow as tf
from absl import app, flags, logging

from tfdist.cluster import tf_config
from tfdist.data import DataOptions, load_source
from tfdist.strategy import StrategyOptions
from tfdist.strategy.factory import make_strategy
from tfdist.train import TrainOptions, train_with_fit

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
  task = tf_config.from_environment()           # None on one machine
  strategy = make_strategy(StrategyOptions(), task)  # logs why it chose what it chose
  source = load_source(DataOptions())           # mnist5k, offline
  _, metrics = train_with_fit(
      strategy=strategy, source=source, model_fn=my_model,
      options=TrainOptions(model_dir=_MODEL_DIR.value, epochs=_EPOCHS.value),
      global_batch_size=64, is_chief=task is None or task.is_chief,
      num_workers=task.cluster.num_workers if task else 1)
  print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
