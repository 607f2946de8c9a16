"""Run on every task of a 2-worker cluster: Keras 3's own `model.fit` under
MultiWorkerMirroredStrategy, which tfdist works around (train/keras3_upstream.py).

    python -m tests.cluster_scripts.keras3_own_fit
"""

import tensorflow as tf
import keras


def main() -> None:
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  with strategy.scope():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  data = tf.data.Dataset.from_tensor_slices((tf.zeros([64, 4]), tf.zeros([64], tf.int64)))
  model.fit(data.batch(8), epochs=1, verbose=0)
  print("KERAS3_FIT_WORKED", flush=True)


if __name__ == "__main__":
  main()
