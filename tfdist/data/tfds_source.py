"""A prepared TFDS dataset as a source: `--dataset=mnist5k` or `tfds:NAME[:SPLIT]`."""

from __future__ import annotations

from typing import Optional

import tensorflow as tf
import tensorflow_datasets as tfds

from tfdist.data.batching import FILE
from tfdist.data.options import DataSourceError
from tfdist.data.source import DatasetSource

_EVAL_SPLITS = ("test", "validation")


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
