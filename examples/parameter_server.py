"""Parameter-server training from the library API, the same code on every task.

    tfdist launch --cluster_spec=configs/clusters/local-ps.yaml -- \\
        python examples/parameter_server.py --model_dir=/tmp/tfdist/ps_example

Workers and parameter servers become plain gRPC servers; the chief builds
ParameterServerStrategy (large variables split over the ps tasks) and trains
with model.fit, which schedules steps on the workers asynchronously.
"""

import tfdist  # noqa: F401  (first: tf.keras is then tf_keras)

from absl import app, flags, logging

from tfdist.cluster import tf_config
from tfdist.data import DataOptions, load_source
from tfdist.models import resolve
from tfdist.strategy import ROLE_SERVER, StrategyOptions, choose
from tfdist.strategy.factory import make_strategy
from tfdist.strategy.parameter_server import serve
from tfdist.train import TrainOptions, train_with_fit

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/ps_example", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs to train.")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  task = tf_config.from_environment()
  if task is None or not task.cluster.num_ps:
    raise app.UsageError("run under a cluster with ps tasks, e.g. through tfdist launch")
  options = StrategyOptions(name="parameter_server", ps_shard_min_bytes=64 << 10)
  choice = choose(options, task, num_gpus=0)
  if choice.role == ROLE_SERVER:
    serve(task)  # never returns: the launcher (or your job system) stops it
  strategy = make_strategy(options, task, choice)
  _, metrics = train_with_fit(
      strategy=strategy, source=load_source(DataOptions()), model_fn=resolve("cnn"),
      options=TrainOptions(model_dir=_MODEL_DIR.value, epochs=_EPOCHS.value),
      global_batch_size=64, num_workers=task.cluster.num_compute_workers)
  print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
