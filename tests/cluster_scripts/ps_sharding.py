"""Run on every task of a parameter-server cluster: the chief records where variables live.

    python -m tests.cluster_scripts.ps_sharding OUT_FILE PS_SHARD_MIN_BYTES MODEL_DIR DATA_DIR

Every task calls `tfdist.run` unchanged: ps and worker tasks serve, the chief trains.
"""

import json
import sys

import tfdist
import tensorflow as tf

built = {}


def model_with_a_table(input_shape, num_classes):
  """A 5 MB embedding table (looked up by 8 pixel values) and a 40-byte bias."""
  inputs = tf.keras.Input(shape=input_shape)
  ids = tf.keras.layers.Lambda(
      lambda x: tf.cast(tf.reshape(x, [-1, 784])[:, 200:208] * 255, tf.int32))(inputs)
  table = tf.keras.layers.Embedding(20_000, 64, name="table")
  x = tf.keras.layers.Flatten()(table(ids))
  head = tf.keras.layers.Dense(num_classes, name="head")
  model = tf.keras.Model(inputs, head(x))
  if not built:  # the first model is the trained one; the final evaluation builds another
    built.update(table=table, head=head)
  return model


def main(out_file: str, min_bytes: int, model_dir: str, data_dir: str) -> None:
  tfdist.run({"strategy": {"ps_shard_min_bytes": min_bytes, "intra_op_threads": 1,
                           "inter_op_threads": 1},
              "data": {"data_dir": data_dir},
              "train": {"model_dir": model_dir, "epochs": 1, "steps_per_epoch": 2,
                        "export": False}},
             model_fn=model_with_a_table)
  table = built["table"].embeddings
  shards = getattr(table, "variables", [table])
  with open(out_file, "w") as f:
    json.dump({"embedding": [v.device for v in shards],
               "embedding_shapes": [v.shape.as_list() for v in shards],
               "bias": [built["head"].bias.device]}, f)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4])
