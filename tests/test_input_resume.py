"""The input resumes where it stopped: a pipeline started at step k gives the batches the
uninterrupted pipeline gives from step k on, across passes, for every sharding policy."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfdist.data.tfds_source import TfdsSource
from tests.cluster_scripts import ids_dataset
from tests.cluster_scripts.ids_dataset import ExampleIds


@pytest.fixture(scope="module")
def ids_source(tmp_path_factory) -> TfdsSource:
  """1,000 ids in 4 files (FILE sharding for 2 or 4 pipelines; DATA for 3)."""
  data_dir = str(tmp_path_factory.mktemp("ids"))
  ids_dataset.prepare(data_dir, num_shards=4)
  return TfdsSource(ExampleIds(data_dir=data_dir, file_format="tfrecord"), shuffle_buffer=300)


def _batches(source, context, global_batch, seed, start_step, count):
  dataset = source.train_input_fn(global_batch, seed=seed, start_step=start_step)(context)
  return [ids.numpy().tolist() for ids, _ in dataset.take(count)]


@pytest.mark.parametrize("pipelines,replicas", [(1, 2), (2, 2), (3, 3), (4, 4)])
def test_a_pipeline_started_at_a_step_continues_the_uninterrupted_stream(ids_source, pipelines,
                                                                          replicas):
  global_batch = 24 * replicas
  per_step = replicas // pipelines  # batches this pipeline gives per step
  for pipeline in range(pipelines):
    context = tf.distribute.InputContext(pipelines, pipeline, replicas)
    whole = _batches(ids_source, context, global_batch, 7, 0, 45 * per_step)
    for step in (1, 9, 41):  # in the first pass, and in later ones
      resumed = _batches(ids_source, context, global_batch, 7, step, 4 * per_step)
      assert resumed == whole[step * per_step:(step + 4) * per_step], (pipeline, step)


def test_each_pass_is_a_new_order_and_reads_every_example_once(ids_source):
  context = tf.distribute.InputContext(1, 0, 1)
  stream = list(itertools.chain.from_iterable(
      _batches(ids_source, context, 50, 3, 0, 60)))  # three passes of 1,000
  passes = [stream[i * 1000:(i + 1) * 1000] for i in range(3)]
  assert all(sorted(p) == list(range(1000)) for p in passes)
  assert passes[0] != passes[1] != passes[2]
  assert stream == list(itertools.chain.from_iterable(
      _batches(ids_source, context, 50, 3, 0, 60)))  # the seed decides the order
  other = list(itertools.chain.from_iterable(_batches(ids_source, context, 50, 4, 0, 20)))
  assert other != passes[0]


def test_a_parameter_server_worker_resumes_at_the_pass_of_the_step(ids_source):
  """Under ParameterServerStrategy steps go to whichever worker is free: a resumed run starts
  each worker at the start of the pass its step falls in (1,000 ids, 50 a step: 20 a pass)."""
  context = tf.distribute.InputContext(1, 0, 1)
  dataset = ids_source._read_train(context, "OFF", shuffle_files=True, seed=1)
  assert ids_source._start(dataset, "OFF", context, 0, 50, per_worker=True) == (0, 0)
  assert ids_source._start(dataset, "OFF", context, 130, 50, per_worker=True) == (6, 0)
  assert ids_source._start(dataset, "OFF", context, 130, 50, per_worker=False) == (6, 500)
