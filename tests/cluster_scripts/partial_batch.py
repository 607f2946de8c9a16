"""Two replicas, one uneven step (2 examples + 1): print the custom loop's loss and gradients
next to the exact mean over the 3 examples, and what a per-replica mean would give.

    python -m tests.cluster_scripts.partial_batch
"""

import json

import tfdist  # noqa: F401
from tfdist.strategy import devices

devices.configure_host(cpu_replicas=2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfdist.train.custom_loop import cross_entropy_step, replica_loss  # noqa: E402


def main():
  strategy = tf.distribute.MirroredStrategy(devices.local_devices(2))
  x = np.array([[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 2.0, 1.0], [3.0, 0.5, -2.0, 0.0]], np.float32)
  y = np.array([0, 2, 1], np.int64)
  with strategy.scope():
    model = keras.Sequential([keras.layers.Dense(3, input_shape=(4,),
                                                 kernel_initializer=keras.initializers.GlorotUniform(seed=1))])
  shards = strategy.experimental_distribute_values_from_function(
      lambda ctx: (x[:2], y[:2]) if ctx.replica_id_in_sync_group == 0 else (x[2:], y[2:]))

  def step(features, labels):
    with tf.GradientTape() as tape:
      per_example, _ = cross_entropy_step(model, features, labels)
      loss = replica_loss(per_example, model.losses, strategy.num_replicas_in_sync)
      naive = tf.reduce_mean(per_example) / strategy.num_replicas_in_sync
    return loss, naive, tape.gradient(loss, model.trainable_variables)

  loss, naive, grads = strategy.run(step, args=shards)
  total = float(strategy.reduce("SUM", loss, axis=None))
  naive_total = float(strategy.reduce("SUM", naive, axis=None))
  summed = [strategy.reduce("SUM", g, axis=None).numpy() for g in grads]

  with tf.GradientTape() as tape:
    exact = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
        y, model(x, training=True), from_logits=True))
  exact_grads = tape.gradient(exact, model.trainable_variables)
  print(json.dumps({
      "loss": total, "exact": float(exact), "naive": naive_total,
      "max_grad_diff": max(float(np.max(np.abs(a - b.numpy()))) for a, b in zip(summed, exact_grads)),
  }))


if __name__ == "__main__":
  main()
