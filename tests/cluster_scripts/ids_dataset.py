"""A TFDS dataset of example ids 0..N-1, to prove what each worker reads."""

import tensorflow as tf
import tensorflow_datasets as tfds

NUM_TRAIN = 1000


class ExampleIds(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Tensor(shape=(), dtype=tf.int64),
            "label": tfds.features.ClassLabel(num_classes=2)}),
        supervised_keys=("id", "label"))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(range(NUM_TRAIN)),
            "test": self._generate_examples(range(NUM_TRAIN, NUM_TRAIN + 10))}

  def _generate_examples(self, ids):
    for i in ids:
      yield i, {"id": i, "label": i % 2}


def prepare(data_dir: str, num_shards: int) -> None:
  ExampleIds(data_dir=data_dir, file_format="tfrecord").download_and_prepare(
      download_config=tfds.download.DownloadConfig(num_shards=num_shards,
                                                   try_download_gcs=False))
