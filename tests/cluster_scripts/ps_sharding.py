"""Run on every task of a parameter-server cluster: the chief records where variables live.

    python -m tests.cluster_scripts.ps_sharding OUT_FILE PS_SHARD_MIN_BYTES
"""

import json
import sys

import tfdist  # noqa: F401
import tensorflow as tf

from tfdist.cluster import tf_config
from tfdist.strategy import ROLE_SERVER, StrategyOptions, choose
from tfdist.strategy.factory import make_strategy
from tfdist.strategy.parameter_server import serve


def main(out_file: str, min_bytes: int) -> None:
  task = tf_config.from_environment()
  options = StrategyOptions(ps_shard_min_bytes=min_bytes)
  choice = choose(options, task, num_gpus=0)
  if choice.role == ROLE_SERVER:
    serve(task)
  strategy = make_strategy(options, task, choice)
  with strategy.scope():
    embedding = tf.keras.layers.Embedding(20_000, 64)  # 5 MB of float32
    embedding.build((None,))
    bias = tf.Variable(tf.zeros([10]), name="bias")  # 40 bytes
  table = embedding.embeddings
  shards = getattr(table, "variables", [table])
  with open(out_file, "w") as f:
    json.dump({"embedding": [v.device for v in shards],
               "embedding_shapes": [v.shape.as_list() for v in shards],
               "bias": [bias.device]}, f)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]))
