"""What a dataset's graph tells: how many files it reads (what FILE sharding splits), and
whether it is batched."""

import tensorflow as tf

from tfdist.data.graph import count_files, is_batched


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


def test_batched_data_is_told_from_unbatched():
  ds = tf.data.Dataset.range(10)
  assert not is_batched(ds.map(lambda x: (x, x)))
  assert is_batched(ds.batch(4).map(lambda x: (x, x)))
  assert is_batched(ds.padded_batch(4))
  assert not is_batched(ds.batch(4).unbatch().map(lambda x: x + 1))
