"""A Keras 3 model (`import keras`, as the current Keras guides write it) under any strategy.

    python examples/keras3_model.py --model_dir=/tmp/tfdist/keras3
    tfdist launch --cluster_spec=configs/clusters/local-2workers.yaml -- \\
        python examples/keras3_model.py --model_dir=/tmp/tfdist/keras3_mwms
    tfdist launch --cluster_spec=configs/clusters/local-ps.yaml -- \\
        python examples/keras3_model.py --model_dir=/tmp/tfdist/keras3_ps

Keras 3's own `fit` fails under MultiWorkerMirroredStrategy and has no
ParameterServerStrategy support; tfdist runs the model's own `train_step` (your
optimizer, loss and metrics) in its loop instead, with the same outputs as for
tf_keras models. Callbacks get their train and epoch hooks.
"""

import tfdist

import keras
from absl import app, flags, logging

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/keras3", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs to train.")


def my_model(input_shape, num_classes):
  model = keras.Sequential([
      keras.Input(shape=input_shape),
      keras.layers.Conv2D(32, 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      keras.layers.Dense(128, activation="relu"),
      keras.layers.Dense(num_classes),
  ])
  model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model


class PrintLearningRate(keras.callbacks.Callback):
  """A Keras 3 callback: tfdist calls its epoch hooks with the epoch's figures."""

  def on_epoch_end(self, epoch, logs=None):
    logging.info("epoch %d: accuracy %.4f, learning rate %.3f", epoch + 1, logs["accuracy"],
                 float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  metrics = tfdist.run({"train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value}},
                       model_fn=my_model, callbacks=[PrintLearningRate()])
  if metrics and metrics["eval_accuracy"] is not None:
    print(f"{metrics['versions']['keras']}: eval_accuracy {metrics['eval_accuracy']:.4f}; "
          f"outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
