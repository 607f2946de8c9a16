"""Two replicas each give a variable the gradient 1 + 2**-12 (exact in float32, 1.0 in bfloat16
and float16); one SGD step (learning rate 1) per optimizer kind and all-reduce dtype. Prints the
variable after the step, dense and as rows (a sparse gradient), as JSON:
{"tf_keras/bfloat16": {"dense": -2.0, "rows": -2.000488...}, ...}

    python -m tests.cluster_scripts.compressed_sum
"""

import json

import tfdist  # noqa: F401
from tfdist.strategy import devices

devices.configure_host(cpu_replicas=2)

import tensorflow as tf  # noqa: E402

from tfdist.models import generations  # noqa: E402
from tfdist.models.gradient_compression import compress_all_reduce  # noqa: E402

GRADIENT = 1 + 2 ** -12
OPTIMIZERS = {
    "tf_keras": lambda: generations.keras_of(generations.KERAS2).optimizers.SGD(1.0),
    "tf_keras_legacy": lambda: generations.keras_of(generations.KERAS2).optimizers.legacy.SGD(1.0),
    "keras3": lambda: generations.keras_of(generations.KERAS3).optimizers.SGD(1.0),
}


def one_step(strategy, kind: str, dtype: str) -> dict:
  keras3 = kind == "keras3"
  with strategy.scope():
    make = (generations.keras_of(generations.KERAS3).Variable if keras3 else tf.Variable)
    dense, rows = make(tf.zeros([4])), make(tf.zeros([3, 2]))
    optimizer = OPTIMIZERS[kind]()
    if hasattr(optimizer, "build"):  # (legacy optimizers make their state on first use)
      optimizer.build([dense, rows])
    compressed = compress_all_reduce(optimizer, dtype)

  @tf.function
  def step():
    def replica_step():
      sparse = tf.IndexedSlices(tf.fill([1, 2], GRADIENT), tf.constant([1]), tf.constant([3, 2]))
      optimizer.apply_gradients([(tf.fill([4], GRADIENT), dense), (sparse, rows)])
    strategy.run(replica_step)

  step()
  value = lambda v: float(tf.convert_to_tensor(v)[1] if len(v.shape) == 1 else
                          tf.convert_to_tensor(v)[1][0])
  return {"compressed": compressed, "dense": value(dense), "rows": value(rows)}


def main():
  strategy = tf.distribute.MirroredStrategy(devices.local_devices(2))
  print(json.dumps({f"{kind}/{dtype}": one_step(strategy, kind, dtype)
                    for kind in OPTIMIZERS for dtype in ("float32", "bfloat16", "float16")}))


if __name__ == "__main__":
  main()
