"""The base of every dataset source, and the input pipeline they all share.

A source knows its train and eval data and what the model needs (input shape,
classes); every source gets the same pipeline: explicit sharding (FILE or DATA),
shuffle, repeat and per-replica batching from the global batch.
"""

from __future__ import annotations

import abc
import random
from typing import Any, Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.data import examples, stream
from tfdist.data.batching import (DATA, FILE, ShardPolicy, choose_shard_policy,
                                  per_replica_batch_size)
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
                     per_worker: bool = False, start_step: int = 0,
                     layout: stream.Layout = ()) -> InputFn:
    """An input function: sharded for its pipeline, per-replica batched, shuffled.

    The global batch is what the caller gives; each pipeline batches
    `InputContext.get_per_replica_batch_size(global_batch_size)`.

    Each pass over a pipeline's examples is shuffled by a seed drawn from `seed` and
    the pass's index, so the stream of batches is a function of the seed alone and
    `start_step` can resume it: the pipeline starts with the batch the uninterrupted
    stream gives at that step (its pass is rebuilt, the examples before skipped).
    Without a `seed` one is drawn. `layout`: the input pipelines the run had before
    (data/stream.py; none: always as many as now); where their number changed, the new
    pipelines first read what the old ones left of their passes.

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
      passes = _Passes(self, context, seed, per_worker)
      shard = passes.shard_policy(context.num_input_pipelines)
      logging.info("Input: %s sharding for pipeline %d of %d (%s); per-replica batch %d",
                   shard.policy, context.input_pipeline_id, context.num_input_pipelines,
                   shard.reason, batch)
      here = (context.num_input_pipelines, context.input_pipeline_id)
      if not repeat:
        ds = passes.of(*here)(0)
      elif per_worker:  # (where a worker stands is not known: see above)
        ds = stream.passes_from(passes, *here, stream.pass_of_step(
            start_step, global_batch_size, self.num_train_examples))
      else:
        segments = tuple(layout) or (stream.Segment(0, context.num_input_pipelines),)
        if segments[-1].pipelines != context.num_input_pipelines:
          raise ValueError(f"input layout {segments} ends with {segments[-1].pipelines} "
                           f"pipelines, the strategy has {context.num_input_pipelines}")
        ds = stream.Stream(passes, segments, global_batch_size).dataset(
            context.input_pipeline_id, start_step)
      ds = examples.batch(ds, self.example_spec, batch, drop_remainder)
      return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))

    return input_fn

  def eval_dataset(self, batch_size: int) -> tf.data.Dataset:
    """The whole eval split in order, for one process to evaluate."""
    ds = examples.batch(self._decode(self._read_eval()), self.example_spec, batch_size,
                        drop_remainder=False)
    return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))


class _Passes:
  """The passes of a source's pipelines, for any number of pipelines (data/stream.py).

  Only this task's own pipeline is cached (`DatasetSource.cache`); another layout's are
  read once, when a run resumes on a new number of pipelines.
  """

  def __init__(self, source: DatasetSource, context: tf.distribute.InputContext, seed: int,
               per_worker: bool):
    self.source, self.seed, self.per_worker = source, seed, per_worker
    self._here = (context.num_input_pipelines, context.input_pipeline_id)
    self._replicas_per_pipeline = max(
        1, context.num_replicas_in_sync // context.num_input_pipelines)
    self._examples: dict = {}
    self._lengths: dict = {}

  def shard_policy(self, pipelines: int) -> ShardPolicy:
    return choose_shard_policy(self.source.num_train_files, pipelines,
                               shards_itself=self.source.shards_itself)

  def examples(self, pipelines: int, pipeline: int) -> tf.data.Dataset:
    """The examples pipeline `pipeline` of `pipelines` reads each pass, in a fixed order.

    Nothing else iterates this dataset (counting reads its own copy): a reader that shuffles
    its files may draw another order on each iteration of one dataset object.
    """
    key = (pipelines, pipeline)
    if key not in self._examples:
      ds = self._read(pipelines, pipeline)
      if self.source.cache and key == self._here:
        ds = ds.cache()
      self._examples[key] = ds
    return self._examples[key]

  def _read(self, pipelines: int, pipeline: int) -> tf.data.Dataset:
    context = tf.distribute.InputContext(pipelines, pipeline,
                                         pipelines * self._replicas_per_pipeline)
    policy = self.shard_policy(pipelines).policy
    # DATA sharding keeps every n-th example of what each pipeline reads: every pipeline must
    # read the same order, so files are not shuffled before `shard` (examples are, after).
    ds = self.source._read_train(context, policy, shuffle_files=policy != DATA, seed=self.seed)
    if policy == DATA:
      ds = ds.shard(pipelines, pipeline)
    return self.source._decode(ds)

  def of(self, pipelines: int, pipeline: int) -> Callable[[Any], tf.data.Dataset]:
    pipeline_examples = self.examples(pipelines, pipeline)  # (made here, not in a flat_map)
    return lambda pass_index: pipeline_examples.shuffle(
        self.source.shuffle_buffer, seed=_pass_seed(self.seed, pass_index, self.per_worker),
        reshuffle_each_iteration=False)

  def length(self, pipelines: int, pipeline: int) -> int:
    """From the split's count where sharding keeps every n-th example (or all), else counted
    (FILE: this pipeline's files; read once)."""
    key = (pipelines, pipeline)
    if key not in self._lengths:
      self._lengths[key] = self._count(pipelines, pipeline)
    return self._lengths[key]

  def _count(self, pipelines: int, pipeline: int) -> int:
    policy = self.shard_policy(pipelines).policy
    if policy == DATA:
      return len(range(pipeline, self.source.num_train_examples, pipelines))
    if policy != FILE and not self.source.shards_itself:
      return self.source.num_train_examples
    ds = self._read(pipelines, pipeline)  # (not `examples`: see there)
    count = int(ds.cardinality())
    if count < 0:
      count = int(ds.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    if count < 1:
      raise DataSourceError(f"`data.dataset` ({self.source.name}): input pipeline {pipeline} "
                            f"of {pipelines} has no examples")
    return count


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
