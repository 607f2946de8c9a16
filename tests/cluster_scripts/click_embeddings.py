"""A click model with a large id embedding, for parameter-server runs (tests only).

`clicks` is a data function: (user id, item id) pairs, label 1 for a click.
`tf_keras_model` and `keras3_model` embed the ids in a table of EMBEDDING_ROWS rows
(default 1,000,000: 32 MB, split over the ps tasks). With TFDIST_TEST_SLOW_EXIT=S the
chief's process takes S seconds longer to end after training (an atexit sleep, before
TensorFlow's own teardown), as a large job's teardown does.
"""

import atexit
import os
import time

import tensorflow as tf

ROWS = int(os.environ.get("EMBEDDING_ROWS", "1000000"))


def clicks(split):
  count, seed = (2048, [1, 2]) if split == "train" else (256, [3, 4])
  ids = tf.random.stateless_uniform([count, 2], seed=seed, maxval=ROWS, dtype=tf.int64)
  return tf.data.Dataset.from_tensor_slices((ids, ids[:, 0] % 2))


def _slow_exit():
  seconds = float(os.environ.get("TFDIST_TEST_SLOW_EXIT", "0"))
  if seconds:
    atexit.register(time.sleep, seconds)


def tf_keras_model(input_shape, num_classes):
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  _slow_exit()
  inputs = keras.Input(shape=input_shape, dtype=tf.int64)
  x = keras.layers.Flatten()(keras.layers.Embedding(ROWS, 8)(inputs))
  model = keras.Model(inputs, keras.layers.Dense(num_classes)(x))
  model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model


def keras3_model(input_shape, num_classes):
  import keras  # pylint: disable=import-outside-toplevel
  _slow_exit()
  inputs = keras.Input(shape=input_shape, dtype="int64")
  x = keras.layers.Flatten()(keras.layers.Embedding(ROWS, 8)(inputs))
  model = keras.Model(inputs, keras.layers.Dense(num_classes)(x))
  model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"],
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  return model
