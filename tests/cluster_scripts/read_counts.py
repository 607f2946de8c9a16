"""Which examples a run read, counted by the model itself (tests only).

`ids` (`--dataset=tests.cluster_scripts.read_counts:ids`) gives the example ids 0..N-1 as the
feature, with a label of 0. `counter` (tf_keras) and `counter_keras3` are models whose one
weight is a count per id: an example's output is its count and its loss minus that, so
plain SGD at a learning rate of the global batch adds exactly 1 to the count of each
example a step reads (the loss is the mean over the global batch: 1/batch an example, times
the batch; exact in float32 for a power of two). The counts are weights like any other:
restored from a backup, so a killed-and-resumed run's final weights say how often the whole
run read each example.

N and the global batch come from READ_COUNTS_IDS (4096) and READ_COUNTS_BATCH (16).
"""

import os

import tensorflow as tf

NUM_IDS = int(os.environ.get("READ_COUNTS_IDS", "4096"))
GLOBAL_BATCH = int(os.environ.get("READ_COUNTS_BATCH", "16"))


def ids(split):
  count = NUM_IDS if split == "train" else 64
  return tf.data.Dataset.range(count).map(lambda i: (i, tf.constant(0.0)))


def _minus_count(labels, counts):
  del labels
  return -tf.reshape(counts, [-1])


def counter():
  import tf_keras as keras  # pylint: disable=import-outside-toplevel
  model = keras.Sequential([
      keras.layers.InputLayer(input_shape=(), dtype=tf.int64),
      keras.layers.Embedding(NUM_IDS, 1, embeddings_initializer="zeros", name="counts")])
  model.compile(optimizer=keras.optimizers.SGD(GLOBAL_BATCH), loss=_minus_count)
  return model


def counter_keras3():
  import keras  # pylint: disable=import-outside-toplevel
  model = keras.Sequential([
      keras.Input(shape=(), dtype="int64"),
      keras.layers.Embedding(NUM_IDS, 1, embeddings_initializer="zeros", name="counts")])
  model.compile(optimizer=keras.optimizers.SGD(GLOBAL_BATCH), loss=_minus_count)
  return model


def read_counts(checkpoint: str) -> list[int]:
  """The counts in a tfdist weights checkpoint (either Keras)."""
  reader = tf.train.load_checkpoint(checkpoint)
  name, = [n for n, shape in reader.get_variable_to_shape_map().items()
           if shape == [NUM_IDS, 1] and "OPTIMIZER" not in n and not n.startswith("optimizer")]
  return [int(round(v)) for v in reader.get_tensor(name).reshape(-1)]


def distinct_counts_by_epoch(model_dir, epochs: int) -> dict[int, set[int]]:
  """The distinct counts in each epoch's checkpoint (`ckpt-EEEE`): a run that read every
  example once an epoch gives {1: {1}, 2: {2}, ...}."""
  found = {}
  for epoch in range(1, epochs + 1):
    counts = read_counts(os.path.join(str(model_dir), "checkpoints", f"ckpt-{epoch:04d}"))
    assert len(counts) == NUM_IDS
    found[epoch] = set(counts)
  return found
