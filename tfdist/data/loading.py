"""The source a config names: mnist5k, a TFDS dataset, or a user's function."""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow_datasets as tfds

from tfdist.data import mnist5k, preparing
from tfdist.data.function_source import FunctionSource, import_data_fn
from tfdist.data.options import TFDS_PREFIX, DataOptions, DataSourceError
from tfdist.data.source import DatasetSource
from tfdist.data.tfds_source import TfdsSource


def load_source(options: DataOptions, data_fn: Optional[Callable] = None) -> DatasetSource:
  """The dataset `options.dataset` names (or `data_fn`), prepared and offline unless `download`.

  Raises:
    DataSourceError: unknown or unprepared dataset, missing split (one line, names the field).
  """
  if data_fn is not None or ":" in options.dataset and not options.dataset.startswith(TFDS_PREFIX):
    return FunctionSource(
        data_fn or import_data_fn(options.dataset),
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
    root = str(builder.data_dir_root)
    fresh = lambda: tfds.builder(name, data_dir=options.data_dir)  # a new one reads the disk
    preparing.prepare_once(
        root, name, lambda: fresh().is_prepared(),
        lambda: preparing.in_child_process(download_and_prepare, name, root,
                                           what=f"TFDS dataset {name!r}", show_output=True))
    builder = fresh()
  return TfdsSource(builder, train_split=split or "train", eval_split=options.eval_split,
                    shuffle_buffer=options.shuffle_buffer)


def download_and_prepare(name: str, data_dir: str) -> None:
  """TFDS downloads and prepares dataset `name` in `data_dir` (run in a child process)."""
  tfds.builder(name, data_dir=data_dir).download_and_prepare()
