"""The embedded mnist5k dataset: real digits, fixed stratified split, several shards, offline."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import REPO, cli_env
from tfdist.data import DataOptions, DataSourceError, load_source, mnist5k, preparing
from tfdist.data.tfds_source import TfdsSource


def test_split_is_stratified_and_disjoint():
  images, labels = mnist5k.read_digits(mnist5k.csv_path())
  assert images.shape == (5000, 28, 28, 1) and images.dtype == np.uint8
  splits = mnist5k.split_indices(labels)
  assert len(splits["train"]) == 4000 and len(splits["test"]) == 1000
  assert not set(splits["train"]) & set(splits["test"])
  assert np.bincount(labels[splits["train"]]).tolist() == [400] * 10
  assert np.bincount(labels[splits["test"]]).tolist() == [100] * 10
  # Fixed: the same split every time.
  assert np.array_equal(mnist5k.split_indices(labels)["test"], splits["test"])


def test_prepared_dataset_has_shards_and_real_images(data_dir):
  source = load_source(DataOptions(data_dir=data_dir))
  assert (source.num_train_examples, source.num_eval_examples) == (4000, 1000)
  assert source.num_train_files == mnist5k.NUM_SHARDS
  assert source.example_spec.input_shape == (28, 28, 1) and source.num_classes == 10
  images, labels = next(iter(source.eval_dataset(1000)))
  assert images.dtype == tf.float32 and float(tf.reduce_max(images)) == 1.0
  assert np.bincount(labels.numpy()).tolist() == [100] * 10


def test_input_fn_batches_per_replica_and_repeats(data_dir):
  source = TfdsSource(mnist5k.builder(data_dir))
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=4)
  dataset = source.train_input_fn(64, seed=1)(context)
  shapes = [tuple(x.shape) for x, _ in dataset.take(40)]  # more than one pass over a shard
  assert set(shapes) == {(16, 28, 28, 1)}
  options = dataset.options().experimental_distribute.auto_shard_policy
  assert options == tf.data.experimental.AutoShardPolicy.OFF


@pytest.mark.e2e
def test_preparing_leaves_this_process_tensorflow_unstarted(tmp_path):
  """A multi-worker strategy must configure TensorFlow's runtime before it starts; TFDS's
  writers start it, so a first use prepares in a child process (a fresh data dir here)."""
  script = ("import sys\n"
            "from tfdist.data import DataOptions, load_source\n"
            "source = load_source(DataOptions(data_dir=sys.argv[1]))\n"
            "import tensorflow as tf\n"
            "tf.config.threading.set_intra_op_parallelism_threads(1)  # raises once started\n"
            "print('examples', source.num_train_examples)\n")
  result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "fresh")], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "examples 4000" in result.stdout
  assert mnist5k.Mnist5k(data_dir=str(tmp_path / "fresh")).is_prepared()


def test_an_uncreatable_data_dir_and_a_failed_preparation_are_one_line(tmp_path):
  blocked = tmp_path / "not-a-dir"
  blocked.write_text("a file where the data dir should be")
  with pytest.raises(DataSourceError, match=r"^`data.data_dir` \(.*not-a-dir/sub\): cannot be "
                     r"created \(Not a directory\)$"):
    mnist5k.builder(str(blocked / "sub"))
  # The child's own failure, as one line naming what it prepared.
  with pytest.raises(DataSourceError, match=r"^`data.dataset`: preparing mnist5k there failed "
                     r"\(status 1\): \S.*Not a directory"):
    preparing.in_child_process(mnist5k.prepare_here, str(blocked / "sub"),
                               what="mnist5k there")


def test_tasks_preparing_one_data_dir_at_once_prepare_it_once(tmp_path):
  """The local tasks of a job start together: one prepares (mnist5k, or a TFDS --download),
  the others wait on the data dir's lock and then find the dataset prepared."""
  import threading
  import time
  prepared, calls, start = [], [], threading.Barrier(3)

  def prepare():
    calls.append(threading.get_ident())
    time.sleep(0.3)  # long enough for every task to be waiting
    prepared.append(True)

  def task():
    start.wait()
    preparing.prepare_once(str(tmp_path / "tfds"), "mnist/3.0.1", lambda: bool(prepared),
                           prepare)

  tasks = [threading.Thread(target=task) for _ in range(3)]
  for t in tasks:
    t.start()
  for t in tasks:
    t.join(timeout=30)
  assert len(calls) == 1 and prepared == [True]
  assert os.listdir(tmp_path / "tfds") == [".mnist_3.0.1.lock"]
