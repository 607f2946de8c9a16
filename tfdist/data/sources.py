"""Datasets by name, and their input functions for `distribute_datasets_from_function`.

A source knows its train and eval data and what the model needs (input shape,
classes); every source gets the same pipeline: explicit sharding (FILE or DATA),
shuffle, repeat and per-replica batching from the global batch.
"""

from __future__ import annotations

import abc
from typing import Callable, Optional

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from tfdist.data import mnist5k
from tfdist.data.batching import DATA, FILE, choose_shard_policy, per_replica_batch_size
from tfdist.data.options import TFDS_PREFIX, DataOptions, DataSourceError

_EVAL_SPLITS = ("test", "validation")

InputFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]


class DatasetSource(abc.ABC):
  """Train and eval data, read by a subclass (`_read_train`, `_read_eval`).

  Example:
    source = load_source(DataOptions(dataset="mnist5k"))
    dataset = strategy.distribute_datasets_from_function(source.train_input_fn(64, seed=1))
  """

  name: str
  train_split: str
  eval_split: str
  input_shape: tuple
  num_classes: int
  num_train_examples: int
  num_train_files: int = 0   # the files the train split reads (FILE sharding splits them)
  shards_itself: bool = False  # the reader shards by InputContext itself
  cache: bool = False          # keep the pipeline's examples in memory after the first pass
  shuffle_buffer: int = 10_000

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
      ds = ds.batch(batch, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
      return without_auto_shard(ds)

    return input_fn

  def eval_dataset(self, batch_size: int) -> tf.data.Dataset:
    """The whole eval split in order, for one process to evaluate."""
    ds = self._decode(self._read_eval()).batch(batch_size)
    return without_auto_shard(ds.prefetch(tf.data.AUTOTUNE))


def _to_float(image, label):
  if image.dtype == tf.uint8:
    image = tf.cast(image, tf.float32) / 255.0
  return image, label


class TfdsSource(DatasetSource):
  """A prepared TFDS dataset with supervised keys: (input, ClassLabel) examples.

  Example:
    source = TfdsSource(mnist5k.builder(None), eval_split="train[80%:]")
  """

  cache = True  # TFDS datasets tfdist trains on here are small; decoding once is the win

  def __init__(self, builder: tfds.core.DatasetBuilder, train_split: str = "train",
               eval_split: Optional[str] = None, shuffle_buffer: int = 10_000):
    splits = builder.info.splits
    self.builder = builder
    self.name = builder.name
    self.train_split = train_split
    self.eval_split = eval_split or next((s for s in _EVAL_SPLITS if s in splits), None)
    if self.eval_split is None:
      raise DataSourceError(f"`data.eval_split`: {builder.name} has no test or validation "
                            f"split; name one of {', '.join(sorted(splits))}")
    self.input_shape, self.num_classes = _supervised_features(builder)
    train = _split_info(builder, train_split, "data.dataset")
    self.num_train_examples = train.num_examples
    self.num_eval_examples = _split_info(builder, self.eval_split, "data.eval_split").num_examples
    # A slice reads parts of its files: FILE sharding would split it unevenly.
    self.num_train_files = 1 if "[" in train_split else train.num_shards
    self.shuffle_buffer = shuffle_buffer

  def _read_train(self, context, policy, shuffle_files, seed):
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False,
                                  input_context=context if policy == FILE else None)
    return self.builder.as_dataset(split=self.train_split, as_supervised=True,
                                   shuffle_files=shuffle_files, read_config=read_config)

  def _read_eval(self):
    return self.builder.as_dataset(split=self.eval_split, as_supervised=True,
                                   read_config=tfds.ReadConfig(try_autocache=False))

  def _decode(self, ds):
    return ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)


def _split_info(builder: tfds.core.DatasetBuilder, split: str, field: str):
  try:
    return builder.info.splits[split]
  except (KeyError, ValueError) as e:
    raise DataSourceError(
        f"`{field}`: {builder.name} has no split {split!r} ({str(e).splitlines()[0][:120]}); "
        f"it has {', '.join(sorted(builder.info.splits))}") from None


def _supervised_features(builder: tfds.core.DatasetBuilder) -> tuple[tuple, int]:
  """(input shape, classes) of a supervised dataset whose input is one fixed-shape tensor."""
  keys = builder.info.supervised_keys
  if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
    raise DataSourceError(f"`data.dataset`: {builder.name} has no (input, label) supervised "
                          f"keys (it has {keys!r}); use a package.module:function dataset")
  features = builder.info.features
  feature, label = features[keys[0]], features[keys[1]]
  shape, dtype = getattr(feature, "shape", None), getattr(feature, "dtype", None)
  if (not isinstance(shape, tuple) or None in shape or dtype is None
      or not (dtype.is_floating or dtype.is_integer or dtype.is_bool)):
    raise DataSourceError(
        f"`data.dataset`: {builder.name}'s input feature {keys[0]!r} is "
        f"{type(feature).__name__}(shape={shape}, dtype={getattr(dtype, 'name', dtype)}); "
        "expected numbers of a fixed shape (use a package.module:function dataset to "
        "convert it)")
  if not hasattr(label, "num_classes"):
    raise DataSourceError(
        f"`data.dataset`: {builder.name}'s label feature {keys[1]!r} is "
        f"{type(label).__name__}; expected a ClassLabel (tfdist trains classifiers)")
  return tuple(shape), label.num_classes


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


def load_source(options: DataOptions, data_fn: Optional[Callable] = None) -> DatasetSource:
  """The dataset `options.dataset` names (or `data_fn`), prepared and offline unless `download`.

  Raises:
    DataSourceError: unknown or unprepared dataset, missing split (one line, names the field).
  """
  from tfdist.data import user  # pylint: disable=import-outside-toplevel
  if data_fn is not None or ":" in options.dataset and not options.dataset.startswith(TFDS_PREFIX):
    return user.FunctionSource(
        data_fn or user.import_data_fn(options.dataset),
        eval_split=options.eval_split, shuffle_buffer=options.shuffle_buffer)
  if options.dataset == mnist5k.NAME:
    return TfdsSource(mnist5k.builder(options.data_dir), eval_split=options.eval_split,
                      shuffle_buffer=options.shuffle_buffer)
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
  return TfdsSource(builder, train_split=split or "train", eval_split=options.eval_split,
                    shuffle_buffer=options.shuffle_buffer)
