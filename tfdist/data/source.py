"""The base of every dataset source, and the input pipeline they all share.

A source knows its train and eval data and what the model needs (input shape,
classes); every source gets the same pipeline: explicit sharding (FILE or DATA),
shuffle, repeat and per-replica batching from the global batch.
"""

from __future__ import annotations

import abc
from typing import Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.data import examples
from tfdist.data.batching import DATA, choose_shard_policy, per_replica_batch_size
from tfdist.data.examples import ExampleSpec
from tfdist.data.options import DataSourceError

InputFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


class DatasetSource(abc.ABC):
  """Train and eval data, read by a subclass (`_read_train`, `_read_eval`).

  Example:
    source = load_source(DataOptions(dataset="mnist5k")).prepare()
    dataset = strategy.distribute_datasets_from_function(source.train_input_fn(64, seed=1))
  """

  name: str
  train_split: str
  eval_split: str
  example_spec: ExampleSpec      # what one example holds (data/examples.py)
  num_classes: Optional[int]     # where labels are class ids, else None
  num_train_examples: int
  num_train_files: int = 0   # the files the train split reads (FILE sharding splits them)
  shards_itself: bool = False  # the reader shards by InputContext itself
  cache: bool = False          # keep the pipeline's examples in memory after the first pass
  shuffle_buffer: int = 10_000

  def prepare(self) -> "DatasetSource":
    """Reads what the source must know before training (e.g. a user function's example
    count and classes). Call once TensorFlow's runtime may start (after the strategy is
    built); returns the source."""
    return self

  @abc.abstractmethod
  def _read_train(self, context: tf.distribute.InputContext, policy: str,
                  shuffle_files: bool, seed: Optional[int]) -> tf.data.Dataset:
    """The train examples of this pipeline (FILE: its files; DATA: all, in a fixed order)."""

  @abc.abstractmethod
  def _read_eval(self) -> tf.data.Dataset:
    """The eval split's examples, in order."""

  def _decode(self, ds: tf.data.Dataset) -> tf.data.Dataset:
    """Per-example work done after sharding (so DATA sharding skips it for others' examples)."""
    return ds

  def model_arguments(self) -> dict:
    """What a model function may ask for (models/registry.py); None where the data has no
    such thing (`input_shape` of dict features, `num_classes` of float labels)."""
    spec = self.example_spec
    return {"input_shape": spec.input_shape,
            "num_classes": self.num_classes if spec.class_ids else None,
            "features_spec": spec.features, "labels_spec": spec.labels}

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
      shard = choose_shard_policy(self.num_train_files, context.num_input_pipelines,
                                  shards_itself=self.shards_itself)
      logging.info("Input: %s sharding for pipeline %d of %d (%s); per-replica batch %d",
                   shard.policy, context.input_pipeline_id, context.num_input_pipelines,
                   shard.reason, batch)
      # DATA sharding keeps every n-th example of what each pipeline reads: every pipeline must
      # read the same order, so files are not shuffled before `shard` (examples are, after).
      ds = self._read_train(context, shard.policy, shuffle_files=shard.policy != DATA, seed=seed)
      if shard.policy == DATA:
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
      ds = self._decode(ds)
      if self.cache:
        ds = ds.cache()
      ds = ds.shuffle(self.shuffle_buffer, seed=_shuffle_seed(seed, per_worker),
                      reshuffle_each_iteration=True)
      if repeat:
        ds = ds.repeat()
      ds = examples.batch(ds, self.example_spec, batch, drop_remainder)
      return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))

    return input_fn

  def eval_dataset(self, batch_size: int) -> tf.data.Dataset:
    """The whole eval split in order, for one process to evaluate."""
    ds = examples.batch(self._decode(self._read_eval()), self.example_spec, batch_size,
                        drop_remainder=False)
    return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))


def _shuffle_seed(seed: Optional[int], per_worker: bool):
  """The example shuffle's seed: `seed`, or on a parameter-server worker one of its own.

  The worker index is a call-time capture, read on each worker when its copy of
  the traced input function runs.
  """
  if seed is None or not per_worker:
    return seed
  worker = tf.distribute.coordinator.experimental_get_current_worker_index()
  return tf.constant(seed, tf.int64) * 1_000_003 + worker


def without_auto_shard(ds: tf.data.Dataset) -> tf.data.Dataset:
  """tfdist shards explicitly; TF's auto-shard would shard again and warn."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options)
