"""Data options and errors (no TensorFlow import: flags and configs are checked first)."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from tfdist._input import short
from tfdist._user_code import is_function_name

MNIST5K = "mnist5k"
TFDS_PREFIX = "tfds:"
# tfds:NAME[/CONFIG][:SPLIT]; TFDS's own names are lower_snake_case.
_SPLIT_TEXT = r"[A-Za-z0-9_\[\]:%.+\-]*"
_TFDS_NAME = re.compile(rf"^tfds:[A-Za-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:{_SPLIT_TEXT})?$")
_SPLIT = re.compile(rf"^[A-Za-z0-9_]{_SPLIT_TEXT}$")


class DataSourceError(ValueError):
  """The dataset cannot be found or loaded; the message names the field."""


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """Attributes:
    dataset: `mnist5k`; `tfds:NAME[/CONFIG][:TRAIN_SPLIT]` for a prepared TFDS dataset (the
      split may be sliced: `tfds:mnist:train[:80%]`); or `package.module:function`, a user's
      function `fn(split)` (or `fn(split, input_context)`) returning a tf.data.Dataset of
      unbatched (features, label) examples (see tfdist/data/function_source.py).
    eval_split: the split evaluated after training (None: `test`, or TFDS's `validation`
      when it has no test split). May be sliced: `train[80%:]`.
    data_dir: TFDS data dir (None: TFDS's default, ~/tensorflow_datasets).
    global_batch_size: examples per step over all replicas.
    download: let TFDS download a `tfds:` dataset that is not prepared yet.
    shuffle_buffer: examples in each pipeline's shuffle buffer.
  """

  dataset: str = MNIST5K
  data_dir: Optional[str] = None
  global_batch_size: int = 64
  download: bool = False
  shuffle_buffer: int = 10_000
  eval_split: Optional[str] = None

  def __post_init__(self):
    if not isinstance(self.global_batch_size, int) or self.global_batch_size < 1:
      raise DataSourceError(
          f"`data.global_batch_size` ({self.global_batch_size!r}) must be a positive integer")
    if not isinstance(self.shuffle_buffer, int) or self.shuffle_buffer < 1:
      raise DataSourceError(
          f"`data.shuffle_buffer` ({self.shuffle_buffer!r}) must be a positive integer")
    if self.dataset != MNIST5K and not is_function_name(self.dataset) and not (
        isinstance(self.dataset, str) and _TFDS_NAME.match(self.dataset)):
      raise DataSourceError(
          f"`data.dataset` ({short(self.dataset)}) must be {MNIST5K}, tfds:NAME[:SPLIT] or "
          "package.module:function")
    if self.eval_split is not None and not _SPLIT.match(self.eval_split):
      raise DataSourceError(f"`data.eval_split` ({short(self.eval_split)}) must be a split "
                            "name, optionally sliced, e.g. test or train[80%:]")
    if self.data_dir is not None and "\0" in self.data_dir:
      raise DataSourceError("`data.data_dir` must be a path without NUL characters")
