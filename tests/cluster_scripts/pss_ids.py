"""Run on every task of a parameter-server cluster: the chief records each worker's example ids.

    python -m tests.cluster_scripts.pss_ids DATA_DIR OUT_FILE STEPS [SEED]

The chief schedules STEPS steps through a ClusterCoordinator on tfdist's per-worker
input; each step returns the worker's index and the batch of example ids it read.
"""

import json
import sys

import tfdist  # noqa: F401
import tensorflow as tf

from tfdist.cluster import tf_config
from tfdist.data.tfds_source import TfdsSource
from tfdist.strategy import ROLE_SERVER, StrategyOptions, choose
from tfdist.strategy.factory import make_strategy
from tfdist.strategy.parameter_server import serve
from tests.cluster_scripts.ids_dataset import ExampleIds


def main(data_dir: str, out_file: str, steps: int, seed) -> None:
  task = tf_config.from_environment()
  choice = choose(StrategyOptions(), task, num_gpus=0)
  if choice.role == ROLE_SERVER:
    serve(task)
  if seed is not None:
    tf.keras.utils.set_random_seed(seed)  # as tfdist's Run does: the global seed too
  strategy = make_strategy(StrategyOptions(), task, choice)
  coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(strategy)
  source = TfdsSource(ExampleIds(data_dir=data_dir, file_format="tfrecord"))
  input_fn = source.train_input_fn(8, seed=seed, per_worker=True)
  dataset = coordinator.create_per_worker_dataset(
      lambda: strategy.distribute_datasets_from_function(input_fn))
  iterator = iter(dataset)

  @tf.function
  def step(iterator):
    ids, _ = next(iterator)
    return tf.distribute.coordinator.experimental_get_current_worker_index(), ids

  results = [coordinator.schedule(step, args=(iterator,)) for _ in range(steps)]
  coordinator.join()
  per_worker = {}
  for result in results:
    worker, ids = result.fetch()
    per_worker.setdefault(str(int(worker)), []).extend(int(i) for i in ids)
  with open(out_file, "w") as f:
    json.dump(per_worker, f)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
       int(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[4] != "none" else None)
