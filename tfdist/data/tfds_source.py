"""A prepared TFDS dataset as a source: `--dataset=mnist5k` or `tfds:NAME[:SPLIT]`."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from tfdist.data.batching import FILE
from tfdist.data.examples import ExampleSpec
from tfdist.data.options import DataSourceError
from tfdist.data.source import DatasetSource

_EVAL_SPLITS = ("test", "validation")


def _to_float(image, label):
  if image.dtype == tf.uint8:
    image = tf.cast(image, tf.float32) / 255.0
  return image, label


class TfdsSource(DatasetSource):
  """A prepared TFDS dataset with supervised keys (input, label): the input a tensor of any
  dtype (strings too; uint8 images are scaled to [0, 1]; varying lengths are padded), the
  label a ClassLabel (class ids) or a numeric tensor.

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
    self.example_spec, self.num_classes = _supervised_spec(builder)
    train = _split_info(builder, train_split, "data.dataset")
    self.num_train_examples = train.num_examples
    self.num_eval_examples = _split_info(builder, self.eval_split, "data.eval_split").num_examples
    # A slice reads parts of its files: FILE sharding would split it unevenly.
    self.num_train_files = 1 if "[" in train_split else train.num_shards
    self.shuffle_buffer = shuffle_buffer

  def _read_train(self, context, policy, shuffle_files, seed):
    # One file order for the seed, on every iteration: a pass rebuilt on resume, or read
    # twice when the worker count changed, must read the files as the first reading did.
    read_config = tfds.ReadConfig(shuffle_seed=seed, shuffle_reshuffle_each_iteration=False,
                                  try_autocache=False,
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


def _supervised_spec(builder: tfds.core.DatasetBuilder) -> tuple[ExampleSpec, Optional[int]]:
  """(example spec, classes or None) of a supervised dataset, from its features' info."""
  keys = builder.info.supervised_keys
  if not keys or len(keys) != 2 or not all(isinstance(k, str) for k in keys):
    raise DataSourceError(f"`data.dataset`: {builder.name} has no (input, label) supervised "
                          f"keys (it has {keys!r}); use a package.module:function dataset")
  features = builder.info.features
  specs = []
  for key in keys:
    feature = features[key]
    shape, dtype = getattr(feature, "shape", None), getattr(feature, "dtype", None)
    if not isinstance(shape, tuple) or dtype is None:
      raise DataSourceError(
          f"`data.dataset`: {builder.name}'s feature {key!r} is {type(feature).__name__}; "
          "expected one tensor (use a package.module:function dataset to convert it)")
    dtype = tf.as_dtype(dtype)
    specs.append(tf.TensorSpec(shape, tf.float32 if dtype == tf.uint8 else dtype))
  spec = ExampleSpec.of(tuple(specs), f"`data.dataset` ({builder.name})")
  return spec, getattr(features[keys[1]], "num_classes", None) if spec.class_ids else None
