"""A larger dense model for the communication tests: 5,824,522 float32 weights (23.3 MB of
gradients a step), about 26 times the built-in cnn's.

    tfdist train --model=tests.cluster_scripts.wide_dense:model
"""

import tf_keras as keras


def model(input_shape, num_classes):
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=tuple(input_shape)),
      keras.layers.Flatten(),
      keras.layers.Dense(2048, activation="relu"),
      keras.layers.Dense(2048, activation="relu"),
      keras.layers.Dense(num_classes),
  ], name="wide_dense")
