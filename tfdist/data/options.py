"""Data options and errors (no TensorFlow import: flags and configs are checked first)."""

from __future__ import annotations

import dataclasses
import re
from typing import Optional

from tfdist._input import short

MNIST5K = "mnist5k"
TFDS_PREFIX = "tfds:"
# tfds:NAME[/CONFIG][:SPLIT]; TFDS's own names are lower_snake_case.
_TFDS_NAME = re.compile(r"^tfds:[A-Za-z0-9_]+(/[A-Za-z0-9_.\-]+)?(:[A-Za-z0-9_\[\]:%.+\-]*)?$")


class DataSourceError(ValueError):
  """The dataset cannot be found or loaded; the message names the field."""


@dataclasses.dataclass(frozen=True)
class DataOptions:
  """Attributes:
    dataset: `mnist5k`, or `tfds:NAME[:TRAIN_SPLIT]` for a prepared TFDS dataset.
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

  def __post_init__(self):
    if not isinstance(self.global_batch_size, int) or self.global_batch_size < 1:
      raise DataSourceError(
          f"`data.global_batch_size` ({self.global_batch_size!r}) must be a positive integer")
    if not isinstance(self.shuffle_buffer, int) or self.shuffle_buffer < 1:
      raise DataSourceError(
          f"`data.shuffle_buffer` ({self.shuffle_buffer!r}) must be a positive integer")
    if self.dataset != MNIST5K and not (isinstance(self.dataset, str)
                                        and _TFDS_NAME.match(self.dataset)):
      raise DataSourceError(
          f"`data.dataset` ({short(self.dataset)}) must be {MNIST5K} or tfds:NAME[:SPLIT]")
    if self.data_dir is not None and "\0" in self.data_dir:
      raise DataSourceError("`data.data_dir` must be a path without NUL characters")
