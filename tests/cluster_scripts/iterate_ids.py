"""Run on every task of a cluster: iterate one epoch of the distributed ids, record them.

    python -m tests.cluster_scripts.iterate_ids DATA_DIR|package.module:function OUT_DIR \
        GLOBAL_BATCH SEED|none

A user's data function gives features whose first value is the example's id, or a dict of
features with the id as its "id".
"""

import json
import os
import sys

import tfdist  # noqa: F401
from absl import logging

from tfdist.cluster import tf_config
from tfdist.data import DataOptions, load_source
from tfdist.data.tfds_source import TfdsSource
from tfdist.strategy import StrategyOptions
from tfdist.strategy.factory import make_strategy
from tests.cluster_scripts.ids_dataset import ExampleIds


def main(data_dir: str, out_dir: str, global_batch: int, seed) -> None:
  logging.set_verbosity(logging.INFO)
  task = tf_config.from_environment()
  strategy = make_strategy(StrategyOptions(), task)
  source = (load_source(DataOptions(dataset=data_dir)).prepare() if ":" in data_dir
            else TfdsSource(ExampleIds(data_dir=data_dir, file_format="tfrecord")))
  dataset = strategy.distribute_datasets_from_function(
      source.train_input_fn(global_batch, seed=seed, repeat=False, drop_remainder=False))
  seen = []
  for features, _ in dataset:
    ids = features["id"] if isinstance(features, dict) else features
    for local in strategy.experimental_local_results(ids):
      seen.extend(int(i) for i in local.numpy().reshape(len(local), -1)[:, 0])
  with open(os.path.join(out_dir, f"ids-{task.task.type}-{task.task.index}.json"), "w") as f:
    json.dump(seen, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
       None if sys.argv[4] == "none" else int(sys.argv[4]))
