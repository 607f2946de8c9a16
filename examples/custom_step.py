"""A custom training step with tfdist's custom loop: label smoothing plus an activity penalty.

    python examples/custom_step.py --model_dir=/tmp/tfdist/custom_step
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/custom_step.py --model_dir=/tmp/tfdist/custom_step_mwms

You write what one batch costs (per-example losses, and predictions for the accuracy);
tfdist scales it by the global batch, adds your model's own losses scaled by the
replica count, all-reduces the gradients and runs the loop under any strategy.
"""

import tfdist  # first: tf.keras is then tf_keras

import tensorflow as tf
from absl import app, flags, logging

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/custom_step", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs to train.")


def build_model(input_shape, num_classes):
  inputs = tf.keras.Input(shape=input_shape)
  x = tf.keras.layers.Conv2D(32, 3, activation="relu")(inputs)
  x = tf.keras.layers.MaxPooling2D()(x)
  x = tf.keras.layers.Flatten()(x)
  # The model adds a loss of its own; the loop scales it by the number of replicas.
  x = tf.keras.layers.Dense(128, activation="relu",
                            activity_regularizer=tf.keras.regularizers.L2(1e-5))(x)
  return tf.keras.Model(inputs, tf.keras.layers.Dense(num_classes)(x))


def smoothed_cross_entropy(model, images, labels):
  """The step: per-example losses and the predictions (logits) they came from."""
  logits = model(images, training=True)
  onehot = tf.one_hot(labels, depth=logits.shape[-1])
  losses = tf.keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                    label_smoothing=0.1)
  return losses, logits


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  metrics = tfdist.run(
      {"train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value, "loop": "custom",
                 "steps_per_execution": 10}},
      model_fn=build_model, step_loss=smoothed_cross_entropy,
      optimizer=tf.keras.optimizers.Adam(1e-3))
  if metrics and metrics["eval_accuracy"] is not None:
    print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
