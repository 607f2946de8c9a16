"""The embedded mnist5k dataset: real digits, fixed stratified split, several shards, offline."""

import numpy as np
import tensorflow as tf

from tfdist.data import DataOptions, load_source, mnist5k
from tfdist.data.tfds_source import TfdsSource


def test_split_is_stratified_and_disjoint():
  images, labels = mnist5k.read_digits(mnist5k.csv_path())
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  splits = mnist5k.split_indices(labels)
  assert len(splits["train"]) == 4000 and len(splits["test"]) == 1000
  assert not set(splits["train"]) & set(splits["test"])
  assert np.bincount(labels[splits["train"]]).tolist() == [400] * 10
  assert np.bincount(labels[splits["test"]]).tolist() == [100] * 10
  # Fixed: the same split every time.
  assert np.array_equal(mnist5k.split_indices(labels)["test"], splits["test"])


def test_prepared_dataset_has_shards_and_real_images(data_dir):
  source = load_source(DataOptions(data_dir=data_dir))
  assert (source.num_train_examples, source.num_eval_examples) == (4000, 1000)
  assert source.num_train_files == mnist5k.NUM_SHARDS
  assert source.example_spec.input_shape == (28, 28, 1) and source.num_classes == 10
  images, labels = next(iter(source.eval_dataset(1000)))
  assert images.dtype == tf.float32 and float(tf.reduce_max(images)) == 1.0
  assert np.bincount(labels.numpy()).tolist() == [100] * 10


def test_input_fn_batches_per_replica_and_repeats(data_dir):
  source = TfdsSource(mnist5k.builder(data_dir))
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=4)
  dataset = source.train_input_fn(64, seed=1)(context)
  shapes = [tuple(x.shape) for x, _ in dataset.take(40)]  # more than one pass over a shard
  assert set(shapes) == {(16, 28, 28, 1)}
  options = dataset.options().experimental_distribute.auto_shard_policy
  assert options == tf.data.experimental.AutoShardPolicy.OFF
