"""How many files a dataset reads (what FILE sharding splits), read from its graph."""

import tensorflow as tf

from tfdist.data.files import count_files


def names(tmp_path, count):
  paths = [str(tmp_path / f"part-{i}.tfrecord") for i in range(count)]
  for path in paths:
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(b"x")
  return paths


def test_a_reader_of_a_list_of_files(tmp_path):
  assert count_files(tf.data.TFRecordDataset(names(tmp_path, 3))) == 3
  assert count_files(tf.data.TextLineDataset(names(tmp_path, 1)[0])) == 1  # one name: one file


def test_files_interleaved_through_a_function_then_mapped(tmp_path):
  files = tf.data.Dataset.from_tensor_slices(names(tmp_path, 5))
  ds = files.interleave(tf.data.TFRecordDataset, cycle_length=2).map(lambda r: tf.strings.length(r))
  assert count_files(ds) == 5


def test_data_that_reads_no_files():
  assert count_files(tf.data.Dataset.range(10).map(lambda x: x * 2)) == 0
  assert count_files(tf.data.Dataset.from_tensor_slices(["a", "b"])) == 0  # strings, not read
