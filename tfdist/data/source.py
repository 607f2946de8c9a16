"""The base of every dataset source, and the input pipeline they all share.

A source knows its train and eval data and what the model needs (input shape,
classes); every source gets the same pipeline: explicit sharding (FILE or DATA),
shuffle, repeat and per-replica batching from the global batch.
"""

from __future__ import annotations

import abc
import random
from typing import Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.data import examples
from tfdist.data.batching import DATA, FILE, choose_shard_policy, per_replica_batch_size
from tfdist.data.examples import ExampleSpec
from tfdist.data.options import DataSourceError

_ENDLESS = 2**62  # passes: as many as training takes

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
                     per_worker: bool = False, start_step: int = 0) -> InputFn:
    """An input function: sharded for its pipeline, per-replica batched, shuffled.

    The global batch is what the caller gives; each pipeline batches
    `InputContext.get_per_replica_batch_size(global_batch_size)`.

    Each pass over a pipeline's examples is shuffled by a seed drawn from `seed` and
    the pass's index, so the stream of batches is a function of the seed alone and
    `start_step` can resume it: the pipeline starts with the batch the uninterrupted
    stream gives at that step (its pass is rebuilt, the examples before skipped).
    Without a `seed` one is drawn.

    `per_worker`: the function runs on each parameter-server worker through
    `ClusterCoordinator.create_per_worker_dataset`, which traces it once and runs
    that one graph everywhere; each worker's order is then drawn on the worker, from
    `seed` and its worker index. Steps go to whichever worker is free, so a worker's
    position is not known: `start_step` starts every worker at the pass the step
    falls in (a fresh order for the epoch, not the first epoch's replayed).
    """
    seed = random.getrandbits(31) if seed is None else seed

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
      if repeat:
        ds = self._passes(ds, seed, per_worker, *self._start(
            ds, shard.policy, context, start_step, global_batch_size, per_worker))
      else:
        ds = self._shuffled_pass(ds, seed, 0, per_worker)
      ds = examples.batch(ds, self.example_spec, batch, drop_remainder)
      return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))

    return input_fn

  def _shuffled_pass(self, ds: tf.data.Dataset, seed: int, pass_index,
                     per_worker: bool) -> tf.data.Dataset:
    return ds.shuffle(self.shuffle_buffer, seed=_pass_seed(seed, pass_index, per_worker),
                      reshuffle_each_iteration=False)

  def _start(self, ds: tf.data.Dataset, policy: str, context: tf.distribute.InputContext,
             start_step: int, global_batch_size: int, per_worker: bool) -> tuple[int, int]:
    """(pass, example of it) where this pipeline's stream stands after `start_step` steps."""
    if not start_step:
      return 0, 0
    if per_worker:  # (where a worker stands is not known: see train_input_fn)
      return start_step * global_batch_size // self.num_train_examples, 0
    # Each step takes a batch for each of this pipeline's replicas.
    consumed = start_step * (global_batch_size // context.num_input_pipelines)
    return divmod(consumed, self._pass_length(ds, policy, context))

  def _passes(self, ds: tf.data.Dataset, seed: int, per_worker: bool, first_pass: int,
              skip: int) -> tf.data.Dataset:
    """Pass after pass of `ds`, each in its own order, from example `skip` of `first_pass`."""
    if skip:
      logging.info("Input resumes at example %d of pass %d (skipped, not trained on)", skip,
                   first_pass + 1)
    rest = tf.data.Dataset.range(first_pass + 1, _ENDLESS).flat_map(
        lambda index: self._shuffled_pass(ds, seed, index, per_worker))
    return self._shuffled_pass(ds, seed, first_pass, per_worker).skip(skip).concatenate(rest)

  def _pass_length(self, ds: tf.data.Dataset, policy: str,
                   context: tf.distribute.InputContext) -> int:
    """The examples in one pass of this pipeline: from the split's count where sharding keeps
    every n-th example (or all), else counted (FILE: this pipeline's files; read once)."""
    if policy == DATA:
      return len(range(context.input_pipeline_id, self.num_train_examples,
                       context.num_input_pipelines))
    if policy != FILE and not self.shards_itself:
      return self.num_train_examples
    count = int(ds.cardinality())
    if count < 0:
      count = int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if count < 1:
      raise DataSourceError(f"`data.dataset` ({self.name}): input pipeline "
                            f"{context.input_pipeline_id} has no examples")
    return count

  def eval_dataset(self, batch_size: int) -> tf.data.Dataset:
    """The whole eval split in order, for one process to evaluate."""
    ds = examples.batch(self._decode(self._read_eval()), self.example_spec, batch_size,
                        drop_remainder=False)
    return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))


def _pass_seed(seed: int, pass_index, per_worker: bool):
  """The shuffle seed of pass `pass_index` (an int, or a tensor inside `flat_map`); on a
  parameter-server worker, also of its worker index.

  The worker index is a call-time capture, read on each worker when its copy of
  the traced input function runs.
  """
  value = tf.constant(seed, tf.int64) * 1_000_003 + tf.cast(pass_index, tf.int64) * 7_919
  if per_worker:
    value += tf.cast(tf.distribute.coordinator.experimental_get_current_worker_index(), tf.int64)
  return value


def without_auto_shard(ds: tf.data.Dataset) -> tf.data.Dataset:
  """tfdist shards explicitly; TF's auto-shard would shard again and warn."""
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
  return ds.with_options(options)
