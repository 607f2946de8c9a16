"""Parameter-server training from the library entry point, the same code on every task.

    tfdist launch --cluster_spec=configs/clusters/local-ps.yaml -- \\
        python examples/parameter_server.py --model_dir=/tmp/tfdist/ps_example

`tfdist.run` makes workers and parameter servers plain gRPC servers (they end when
the run is finished); the chief builds ParameterServerStrategy (large variables
split over the ps tasks) and trains with model.fit, which schedules steps on the
workers asynchronously.
"""

import tfdist

from absl import app, flags, logging

_MODEL_DIR = flags.DEFINE_string("model_dir", "/tmp/tfdist/ps_example", "Where outputs go.")
_EPOCHS = flags.DEFINE_integer("epochs", 5, "Epochs to train.")


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  metrics = tfdist.run({"strategy": {"name": "parameter_server", "ps_shard_min_bytes": 64 << 10},
                        "model": {"name": "cnn"},
                        "train": {"model_dir": _MODEL_DIR.value, "epochs": _EPOCHS.value}})
  if metrics:  # the chief
    print(f"eval_accuracy {metrics['eval_accuracy']:.4f}; outputs in {_MODEL_DIR.value}")


if __name__ == "__main__":
  app.run(main)
