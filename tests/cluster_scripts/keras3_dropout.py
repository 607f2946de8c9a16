"""A Keras 3 CNN with dropout, compiled by its user (tests only): its random draws come from a
seed generator whose state a resumed run must restore to end with the uninterrupted weights."""

import keras


def cnn(input_shape, num_classes):
  model = keras.Sequential([
      keras.Input(shape=input_shape),
      keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
      keras.layers.Flatten(), keras.layers.Dropout(0.25),
      keras.layers.Dense(num_classes)])
  model.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
  return model
