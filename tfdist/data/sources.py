"""Datasets by name, and their input functions for `distribute_datasets_from_function`."""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from tfdist.data import mnist5k
from tfdist.data.batching import DATA, FILE, choose_shard_policy, per_replica_batch_size
from tfdist.data.options import TFDS_PREFIX, DataOptions, DataSourceError

_EVAL_SPLITS = ("test", "validation")

InputFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


def _to_float(image, label):
  if image.dtype == tf.uint8:
    image = tf.cast(image, tf.float32) / 255.0
  return image, label


class DatasetSource:
  """A prepared TFDS dataset with a train and an eval split.

  Example:
    source = DatasetSource(mnist5k.builder(None))
    dataset = strategy.distribute_datasets_from_function(source.train_input_fn(64, seed=1))
  """

  def __init__(self, builder: tfds.core.DatasetBuilder, train_split: str = "train",
               eval_split: Optional[str] = None, shuffle_buffer: int = 10_000):
    splits = builder.info.splits
    if train_split not in splits:
      raise DataSourceError(
          f"`data.dataset`: {builder.name} has no split {train_split!r}; "
          f"it has {', '.join(sorted(splits))}")
    eval_split = eval_split or next((s for s in _EVAL_SPLITS if s in splits), None)
    if eval_split is None:
      raise DataSourceError(
          f"`data.dataset`: {builder.name} has no test or validation split to evaluate on")
    keys = builder.info.supervised_keys
    if not keys:
      raise DataSourceError(
          f"`data.dataset`: {builder.name} has no (input, label) supervised keys")
    label = builder.info.features[keys[1]]
    if not hasattr(label, "num_classes"):
      raise DataSourceError(f"`data.dataset`: {builder.name}'s label is not a class label")
    self.builder = builder
    self.name = builder.name
    self.train_split = train_split
    self.eval_split = eval_split
    self.input_shape = tuple(builder.info.features[keys[0]].shape)
    self.num_classes = label.num_classes
    self.num_train_examples = splits[train_split].num_examples
    self.num_eval_examples = splits[eval_split].num_examples
    self.num_train_files = splits[train_split].num_shards
    self.shuffle_buffer = shuffle_buffer

  def steps_per_epoch(self, global_batch_size: int) -> int:
    """Full global batches in one pass over the train split."""
    steps = self.num_train_examples // global_batch_size
    if steps < 1:
      raise DataSourceError(
          f"`data.global_batch_size` ({global_batch_size}) is larger than the train split "
          f"({self.num_train_examples} examples)")
    return steps

  def train_input_fn(self, global_batch_size: int, seed: Optional[int] = None,
                     repeat: bool = True, drop_remainder: bool = True,
                     preprocess: Optional[Callable] = _to_float,
                     per_worker: bool = False) -> InputFn:
    """An input function: sharded for its pipeline, per-replica batched, shuffled.

    The global batch is what the caller gives; each pipeline batches
    `InputContext.get_per_replica_batch_size(global_batch_size)`.

    `per_worker`: the function runs on each parameter-server worker through
    `ClusterCoordinator.create_per_worker_dataset`, which traces it once and runs
    that one graph everywhere; each worker's shuffle order is then drawn on the
    worker, from `seed` and its worker index (or unseeded when `seed` is None).
    """

    def input_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
      batch = per_replica_batch_size(global_batch_size, context.num_replicas_in_sync)
      shard = choose_shard_policy(self.num_train_files, context.num_input_pipelines)
      logging.info("Input: %s sharding for pipeline %d of %d (%s); per-replica batch %d",
                   shard.policy, context.input_pipeline_id, context.num_input_pipelines,
                   shard.reason, batch)
      read_config = tfds.ReadConfig(
          shuffle_seed=seed, try_autocache=False,
          input_context=context if shard.policy == FILE else None)
      # DATA sharding keeps every n-th example of what each pipeline reads: every pipeline must
      # read the same order, so files are not shuffled before `shard` (examples are, after).
      ds = self.builder.as_dataset(split=self.train_split, as_supervised=True,
                                   shuffle_files=shard.policy != DATA, read_config=read_config)
      if shard.policy == DATA:
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
      if preprocess is not None:
        ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
      ds = ds.cache().shuffle(self.shuffle_buffer, seed=_shuffle_seed(seed, per_worker),
                              reshuffle_each_iteration=True)
      if repeat:
        ds = ds.repeat()
      ds = ds.batch(batch, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
      return _without_auto_shard(ds)

    return input_fn

  def eval_dataset(self, batch_size: int) -> tf.data.Dataset:
    """The whole eval split in order, for one process to evaluate."""
    ds = self.builder.as_dataset(split=self.eval_split, as_supervised=True,
                                 read_config=tfds.ReadConfig(try_autocache=False))
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return _without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))


def _shuffle_seed(seed: Optional[int], per_worker: bool):
  """The example shuffle's seed: `seed`, or on a parameter-server worker one of its own.

  The worker index is a call-time capture, read on each worker when its copy of
  the traced input function runs.
  """
  if seed is None or not per_worker:
    return seed
  worker = tf.distribute.coordinator.experimental_get_current_worker_index()
  return tf.constant(seed, tf.int64) * 1_000_003 + worker


def _without_auto_shard(ds: tf.data.Dataset) -> tf.data.Dataset:
  # tfdist shards explicitly above; TF's auto-shard would shard again and warn.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options)


def load_source(options: DataOptions) -> DatasetSource:
  """The dataset `options.dataset` names, prepared and offline unless `download`.

  Raises:
    DataSourceError: unknown or unprepared dataset, missing split (one line, names the field).
  """
  if options.dataset == mnist5k.NAME:
    return DatasetSource(mnist5k.builder(options.data_dir), shuffle_buffer=options.shuffle_buffer)
  name, _, split = options.dataset[len(TFDS_PREFIX):].partition(":")
  try:
    builder = tfds.builder(name, data_dir=options.data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError):
    raise DataSourceError(f"`data.dataset`: TFDS has no dataset named {name!r}") from None
  if not builder.is_prepared():
    if not options.download:
      raise DataSourceError(
          f"`data.dataset`: TFDS dataset {name!r} is not prepared in {builder.data_dir_root}; "
          "prepare it there (tfds build) or pass --download to let TFDS fetch it")
    builder.download_and_prepare()
  return DatasetSource(builder, train_split=split or "train", shuffle_buffer=options.shuffle_buffer)
