"""A click model with a million-row user table and a million-row item table, split over the
parameter servers: the case parameter servers exist for.

    tfdist launch --cluster_spec=configs/clusters/local-ps2.yaml -- \\
        python examples/recommender.py --model_dir=/tmp/tfdist/recommender
    (add --loop=custom for tfdist's custom loop; without a cluster it trains on this machine)

Each example is a dict: a user id, an item id (both up to 1,000,003) and the user's country, a
string hashed into buckets by the model; the label is 1.0 for a click. The data is generated (no
download): a user clicks an item of their taste, except in night-owl countries, where they
click the others. Under ParameterServerStrategy tfdist splits each table over the ps tasks
and a step reads and updates only the rows its batch looks up (`--sparse_updates`, auto: rows
under parameter servers), so the step time does not grow with the tables.
"""

import tfdist  # first: makes tf.keras the tf_keras that tfdist trains with

import numpy as np
import tensorflow as tf
from absl import app, flags

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/recommender", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 4, "Epochs to train.")
_LOOP = flags.DEFINE_enum("loop", "fit", ["fit", "custom"], "model.fit or tfdist's loop.")
_ROWS = flags.DEFINE_integer("rows", 1_000_003, "Rows of each id table (user, item).")
_STEPS = flags.DEFINE_integer("steps_per_epoch", None, "Default: one pass over the data.")

COUNTRIES = ["fr", "de", "jp", "br", "us", "in", "ng", "mx", "se", "kr"]
NIGHT_OWLS = {"jp", "br", "kr", "mx", "ng"}  # they click what is not to their taste
TASTES = 4
tables = {}  # the trained model's tables, for the summary


def clicks(split: str, rows: int) -> tf.data.Dataset:
  """Unbatched ({"user", "item", "country"}, click) pairs: 65,536 to train on, 8,192 to
  evaluate. 2,000 active users and 1,000 items, spread over the whole id range."""
  ids = np.random.default_rng(7)  # the same users, items and tastes for both splits
  users, items = (ids.choice(rows, size=n, replace=False) for n in (2000, 1000))
  taste = {int(u): int(t) for u, t in zip(users, ids.integers(TASTES, size=users.size))}
  genre = {int(i): int(g) for i, g in zip(items, ids.integers(TASTES, size=items.size))}
  draw = np.random.default_rng(0 if split == "train" else 1)
  count = 65_536 if split == "train" else 8_192
  user, item = draw.choice(users, size=count), draw.choice(items, size=count)
  country = draw.choice(COUNTRIES, size=count)
  liked = np.array([taste[int(u)] == genre[int(i)] for u, i in zip(user, item)])
  owl = np.isin(country, list(NIGHT_OWLS))
  click = (liked != owl).astype("float32")
  return tf.data.Dataset.from_tensor_slices(
      ({"user": user.astype("int64"), "item": item.astype("int64"), "country": country}, click))


def model(rows: int) -> tf.keras.Model:
  """Compiled with its loss (float labels): Adam, binary cross-entropy on a logit, AUC."""
  inputs = {"user": tf.keras.Input(shape=(), dtype="int64", name="user"),
            "item": tf.keras.Input(shape=(), dtype="int64", name="item"),
            "country": tf.keras.Input(shape=(), dtype="string", name="country")}
  user_table = tf.keras.layers.Embedding(rows, 8, name="user_table")
  item_table = tf.keras.layers.Embedding(rows, 8, name="item_table")
  user, item = user_table(inputs["user"]), item_table(inputs["item"])
  country = tf.keras.layers.Embedding(64, 4, name="country_table")(
      tf.keras.layers.Hashing(64)(inputs["country"]))
  x = tf.keras.layers.Concatenate()([user, item, user * item, country])
  x = tf.keras.layers.Dense(32, activation="relu")(x)
  logit = tf.keras.layers.Dense(1)(x)
  m = tf.keras.Model(inputs, tf.keras.layers.Reshape(())(logit))
  m.compile(optimizer=tf.keras.optimizers.Adam(0.01),
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
            metrics=[tf.keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"),
                     tf.keras.metrics.AUC(from_logits=True, name="auc")])
  tables.setdefault("user", user_table)  # the first model built is the trained one
  return m


def table_shards(layer) -> str:
  """E.g. `2 shards: ps:0 500,002 rows, ps:1 500,001 rows`."""
  shards = getattr(layer.embeddings, "variables", [layer.embeddings])
  devices = [tf.DeviceSpec.from_string(v.device) for v in shards]
  where = [f"{d.job or 'local'}:{d.task or 0} {v.shape[0]:,} rows"
           for d, v in zip(devices, shards)]
  return f"{len(shards)} shard(s): {', '.join(where)}"


def main(argv):
  del argv
  rows = _ROWS.value
  metrics = tfdist.run({"data": {"global_batch_size": 256},
                        # rows everywhere, not only under parameter servers (auto): Adam
                        # over every row of two 1M-row tables costs 200 ms a step on one CPU.
                        "train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value,
                                  "steps_per_epoch": _STEPS.value, "loop": _LOOP.value,
                                  "sparse_updates": "rows"}},
                       model_fn=lambda: model(rows), data_fn=lambda split: clicks(split, rows))
  if metrics:  # the chief
    auc = metrics["eval_metrics"]["auc"]
    print(f"user table {table_shards(tables['user'])}")
    print(f"eval_auc {auc:.4f}; eval_accuracy {metrics['eval_accuracy']:.4f}; "
          f"{metrics['examples_per_sec']:,.0f} examples/s; {metrics['step_ms']:.1f} ms/step "
          f"(saves excluded); outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
