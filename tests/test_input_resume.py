"""The input resumes where it stopped: a pipeline started at step k gives the batches the
uninterrupted pipeline gives from step k on, across passes, for every sharding policy."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfdist.data import stream
from tfdist.data.tfds_source import TfdsSource
from tests.cluster_scripts import ids_dataset
from tests.cluster_scripts.ids_dataset import ExampleIds


@pytest.fixture(scope="module")
def ids_source(tmp_path_factory) -> TfdsSource:
  """1,000 ids in 4 files (FILE sharding for 2 or 4 pipelines; DATA for 3)."""
  data_dir = str(tmp_path_factory.mktemp("ids"))
  ids_dataset.prepare(data_dir, num_shards=4)
  return TfdsSource(ExampleIds(data_dir=data_dir, file_format="tfrecord"), shuffle_buffer=300)


def _batches(source, context, global_batch, seed, start_step, count, layout=()):
  dataset = source.train_input_fn(global_batch, seed=seed, start_step=start_step,
                                  layout=layout)(context)
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


def test_a_parameter_server_worker_resumes_at_the_pass_of_the_step():
  """Under ParameterServerStrategy steps go to whichever worker is free: a resumed run starts
  each worker at the start of the pass its step falls in (1,000 ids, 50 a step: 20 a pass)."""
  assert stream.pass_of_step(0, 50, 1000) == 0
  assert stream.pass_of_step(130, 50, 1000) == 6


def _read(source, layout, end_step, global_batch, seed=7):
  """What every step of a run whose worker count changed as `layout` says reads: per step,
  the ids of all its pipelines (one replica each)."""
  steps = []
  for s, segment in enumerate(layout):
    until = layout[s + 1].step if s + 1 < len(layout) else end_step
    m = segment.pipelines
    per_pipeline = [
        _batches(source, tf.distribute.InputContext(m, j, m), global_batch, seed, segment.step,
                 until - segment.step, layout=layout[:s + 1]) for j in range(m)]
    steps += [sum((batches[i] for batches in per_pipeline), []) for i in range(until - segment.step)]
  return steps


@pytest.mark.parametrize("changes", [
    [(0, 2), (10, 4)],                    # more workers mid-pass
    [(0, 4), (7, 1)],                     # fewer
    [(0, 2), (25, 1)],                    # at a pass boundary: nothing carried
    [(0, 1), (13, 2), (17, 4), (30, 2)],  # again while carrying, and in a later pass
])
def test_a_run_resumed_on_another_worker_count_reads_every_example_once_a_pass(ids_source,
                                                                               changes):
  """1,000 ids, global batch 40: a pass is 25 steps whatever the worker count; every pass
  reads each id once, across the changes."""
  layout = tuple(stream.Segment(step, pipelines) for step, pipelines in changes)
  steps = _read(ids_source, layout, 75, 40)
  for p in range(3):
    assert sorted(sum(steps[25 * p:25 * (p + 1)], [])) == list(range(1000)), p
  uninterrupted = _read(ids_source, layout[:1], 75, 40)
  assert steps[:changes[1][0]] == uninterrupted[:changes[1][0]]


@pytest.mark.parametrize("layout,step", [
    ((stream.Segment(0, 2), stream.Segment(10, 4)), 14),   # in the carry
    ((stream.Segment(0, 2), stream.Segment(10, 4)), 31),   # in the new pipelines' own passes
])
def test_a_run_resumed_again_on_the_same_worker_count_continues_its_stream(ids_source, layout,
                                                                           step):
  m = layout[-1].pipelines
  for j in range(m):
    context = tf.distribute.InputContext(m, j, m)
    whole = _batches(ids_source, context, 40, 7, layout[-1].step, 30, layout=layout)
    resumed = _batches(ids_source, context, 40, 7, step, 4, layout=layout)
    assert resumed == whole[step - layout[-1].step:step - layout[-1].step + 4], j


def test_uneven_pipelines_carry_exactly_what_they_had_left(ids_source):
  """3 pipelines (DATA: 334, 333 and 333 ids) for 20 steps, then 2 (FILE): the new pipelines
  first read the 400 ids left of the pass, then whole passes of their own files."""
  old = (stream.Segment(0, 3),)
  read = sum(_read(ids_source, old, 20, 30), [])
  layout = old + (stream.Segment(20, 2),)
  carried, next_passes = [], []
  for j in range(2):
    flat = sum(_batches(ids_source, tf.distribute.InputContext(2, j, 2), 30, 7, 20, 50,
                        layout=layout), [])
    carried += flat[:200]
    next_passes += flat[200:700]
  assert sorted(read + carried) == list(range(1000))
  assert sorted(next_passes) == list(range(1000))


def test_the_layout_keeps_what_was_read_and_adds_a_segment_where_the_count_changed():
  recorded = [{"step": 0, "pipelines": 2}, {"step": 40, "pipelines": 4}]
  Segment = stream.Segment
  assert stream.layout_at([], 30, 2) == (Segment(0, 2),)
  assert stream.layout_at(recorded, 0, 1) == (Segment(0, 1),)
  assert stream.layout_at(recorded, 50, 4) == (Segment(0, 2), Segment(40, 4))
  assert stream.layout_at(recorded, 50, 1) == (Segment(0, 2), Segment(40, 4), Segment(50, 1))
  # The segment that began at the start step read nothing that was kept.
  assert stream.layout_at(recorded, 40, 1) == (Segment(0, 2), Segment(40, 1))
  assert stream.layout_at(recorded, 40, 2) == (Segment(0, 2),)
  assert stream.layout_at(recorded, 30, 2) == (Segment(0, 2),)
  assert stream.to_record(stream.layout_at(recorded, 50, 4)) == recorded
