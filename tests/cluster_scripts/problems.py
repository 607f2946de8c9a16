"""Supervised problems other than images to class ids, as a user brings them (tests only).

Data functions (`--dataset=tests.cluster_scripts.problems:NAME`) and model functions
(`--model=tests.cluster_scripts.problems:NAME`), tf_keras unless the name ends in `_keras3`:

- `line` / `regression`: y = 2x + noise, float labels, mean squared error (compiled by the user).
- `clicks` / `click_model`: dict features (int ids, a string country, a float), a 0/1 float
  label and a sample weight per example; binary cross-entropy and AUC.
- `sentences` / `sentence_model`: token lists of varying length (padded per batch), class ids;
  the model comes uncompiled (tfdist compiles it).
- `two_targets` / `two_heads`: one feature tensor, a dict of two labels (a float and a class id)
  for a model with two named outputs, loss weights and sample weights.
"""

import os

import numpy as np
import tensorflow as tf

COUNTRIES = ["de", "fr", "jp", "us", "br"]


def _split(split):
  return (1024, 0) if split == "train" else (256, 1)


def line(split):
  count, seed = _split(split)
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, size=(count, 1)).astype("float32")
  y = (2 * x[:, 0] + rng.normal(0, 0.05, size=count)).astype("float32")
  return tf.data.Dataset.from_tensor_slices((x, y))


def clicks(split):
  count, seed = _split(split)
  rng = np.random.default_rng(10 + seed)
  user = rng.integers(0, 200, size=count)
  item = rng.integers(0, 300, size=count)
  country = rng.integers(0, len(COUNTRIES), size=count)
  price = rng.uniform(0, 1, size=count).astype("float32")
  clicked = ((user % 3 == 0) | (country == 2)).astype("float32")
  weight = np.where(clicked > 0, 2.0, 1.0).astype("float32")
  features = {"user": user.astype("int64"), "item": item.astype("int64"),
              "country": np.array(COUNTRIES)[country], "price": price}
  return tf.data.Dataset.from_tensor_slices((features, clicked, weight))


def sentences(split):
  """Class 1 when token 7 appears; 3 to 12 tokens from a vocabulary of 50 (0 is padding)."""
  count, seed = _split(split)
  rng = np.random.default_rng(20 + seed)
  rows = [rng.integers(1, 50, size=rng.integers(3, 13)) for _ in range(count)]
  labels = np.array([int(7 in row) for row in rows], dtype="int64")
  tokens = tf.ragged.constant(rows, dtype=tf.int64)
  return tf.data.Dataset.from_tensor_slices((tokens, labels))


def two_targets(split):
  count, seed = _split(split)
  rng = np.random.default_rng(30 + seed)
  x = rng.normal(size=(count, 4)).astype("float32")
  labels = {"total": x.sum(axis=1).astype("float32"), "sign": (x[:, 0] > 0).astype("int64")}
  weights = {"total": np.ones(count, "float32"), "sign": np.full(count, 2.0, "float32")}
  return tf.data.Dataset.from_tensor_slices((x, labels, weights))


def _keras(keras3):
  if keras3:
    import keras  # pylint: disable=import-outside-toplevel
    return keras
  import tf_keras  # pylint: disable=import-outside-toplevel
  return tf_keras


def regression(input_shape, keras3=False):
  keras = _keras(keras3)
  model = keras.Sequential([keras.Input(shape=input_shape), keras.layers.Dense(10, "relu"),
                            keras.layers.Dense(1)])
  model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
  return model


def regression_keras3(input_shape):
  return regression(input_shape, keras3=True)


def click_model(features_spec, keras3=False):
  keras = _keras(keras3)
  inputs = {name: keras.Input(shape=spec.shape, dtype=spec.dtype.name, name=name)
            for name, spec in features_spec.items()}
  user = keras.layers.Flatten()(keras.layers.Embedding(200, 4)(inputs["user"][:, None]))
  item = keras.layers.Flatten()(keras.layers.Embedding(300, 4)(inputs["item"][:, None]))
  country = keras.layers.StringLookup(vocabulary=COUNTRIES, output_mode="one_hot")(
      inputs["country"])
  joined = keras.layers.Concatenate()([user, item, country, inputs["price"][:, None]])
  hidden = keras.layers.Dense(16, activation="relu")(joined)
  model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
  model.compile(optimizer=keras.optimizers.Adam(0.02), loss="binary_crossentropy",
                metrics=[keras.metrics.AUC(name="auc")])
  return model


def click_model_keras3(features_spec):
  return click_model(features_spec, keras3=True)


def sentence_model(num_classes, keras3=False):
  keras = _keras(keras3)
  return keras.Sequential([
      keras.Input(shape=(None,), dtype="int64"),
      keras.layers.Embedding(50, 16, mask_zero=True),
      keras.layers.GlobalAveragePooling1D(),
      keras.layers.Dense(16, activation="relu"),
      keras.layers.Dense(num_classes)])


def sentence_model_keras3(num_classes):
  return sentence_model(num_classes, keras3=True)


def two_heads(input_shape, keras3=False):
  keras = _keras(keras3)
  inputs = keras.Input(shape=input_shape)
  hidden = keras.layers.Dense(16, activation="relu")(inputs)
  total = keras.layers.Dense(1, name="total")(hidden)
  sign = keras.layers.Dense(2, name="sign")(hidden)
  model = keras.Model(inputs, {"total": total, "sign": sign} if keras3 else [total, sign])
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss={"total": "mse",
                      "sign": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                loss_weights={"total": 1.0, "sign": 0.5},
                metrics={"total": ["mae"], "sign": ["accuracy"]})
  return model


def two_heads_keras3(input_shape):
  return two_heads(input_shape, keras3=True)


# Bad inputs (each one line, exit 2): string labels; splits of different structure; label keys
# that are not the model's outputs; a sample weight per feature instead of per example.

def string_labels(split):
  return line(split).map(lambda x, y: (x, tf.strings.as_string(y)))


def train_differs_from_test(split):
  return line(split) if split == "train" else clicks(split)


def wrong_label_keys(split):
  return two_targets(split).map(lambda x, y, w: (x, {"sum": y["total"], "sign": y["sign"]}))


def wrong_weight_shape(split):
  return line(split).map(lambda x, y: (x, y, tf.ones([3])))
