"""Where an input pipeline's stream stands after some steps, also when the worker count changed.

A pipeline reads pass after pass of its shard of the examples, each pass in an order of its own
(drawn from the seed and the pass), so where it stands after k steps is arithmetic, and a resumed
run starts it there. A run resumed on another number of input pipelines (a job restarted on fewer
or more workers) begins a new *segment* of its input layout: its pipelines first read what the
old pipelines had left of their passes (the *carry*, dealt out every m-th example), then whole
passes of their own shards, from the first pass no old pipeline had begun. Every pass's examples
are then read once each, however often the worker count changed.

Example (4,096 examples, global batch 64; 2 workers for 10 steps, then 4):
  layout = (Segment(step=0, pipelines=2), Segment(step=10, pipelines=4))
  # each new pipeline carries a quarter of the 4,096 - 640 examples the old ones had left
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Protocol, Sequence

import tensorflow as tf
from absl import logging

_ENDLESS = 2**62  # passes: as many as training takes


@dataclasses.dataclass(frozen=True)
class Segment:
  """From training step `step` on, the input was read by `pipelines` input pipelines."""

  step: int
  pipelines: int


Layout = Sequence[Segment]


def layout_at(recorded: Iterable[dict], start_step: int, pipelines: int) -> tuple[Segment, ...]:
  """The layout of a run that starts at `start_step` on `pipelines` pipelines, given the one
  recorded by the run it goes on with (`to_record`'s form; none: it had `pipelines` too).

  Segments that began after the start step read nothing that counts and are dropped; so is
  one that began at it (nothing it read was kept) when the pipelines change again.

  Example:
    layout_at([{"step": 0, "pipelines": 2}], start_step=30, pipelines=1)
    # (Segment(0, 2), Segment(30, 1))
  """
  kept = [s for s in (Segment(int(r["step"]), int(r["pipelines"])) for r in recorded)
          if s.step < start_step or s.step == 0]
  if not kept or not start_step:
    return (Segment(0, pipelines),)
  if kept[-1].pipelines != pipelines:
    kept.append(Segment(start_step, pipelines))
  return tuple(kept)


def to_record(layout: Layout) -> list[dict]:
  """The layout as run.json holds it."""
  return [dataclasses.asdict(s) for s in layout]


def describe(layout: Layout) -> str:
  """E.g. "2 pipelines from step 0, 1 from step 30"."""
  return ", ".join(f"{s.pipelines}{' pipelines' if not i else ''} from step {s.step}"
                   for i, s in enumerate(layout))


def passes_from(passes: "Passes", pipelines: int, pipeline: int, first_pass: int,
                offset: int = 0) -> tf.data.Dataset:
  """Pass after pass of a pipeline's examples, from example `offset` of `first_pass`."""
  one_pass = passes.of(pipelines, pipeline)
  rest = tf.data.Dataset.range(first_pass + 1, _ENDLESS).flat_map(one_pass)
  return one_pass(first_pass).skip(offset).concatenate(rest)


def pass_of_step(step: int, global_batch_size: int, examples: int) -> int:
  """The pass of the examples that step `step` falls in, counted over all pipelines: where
  a parameter-server worker starts, since which steps each worker took is not known."""
  return step * global_batch_size // examples


class Passes(Protocol):
  """The passes of any pipeline of any layout (data/source.py gives them)."""

  def length(self, pipelines: int, pipeline: int) -> int:
    """Examples in one pass of pipeline `pipeline` of `pipelines`."""

  def of(self, pipelines: int, pipeline: int) -> Callable[[Any], tf.data.Dataset]:
    """The passes of that pipeline: pass index (an int, or a tensor inside `flat_map`) ->
    its examples, in the pass's order."""


@dataclasses.dataclass(frozen=True)
class Position:
  """Where one pipeline stands: `carry_left` carried examples still to read (then pass
  `pass_index` from its start), or else at example `offset` of pass `pass_index`."""

  carry_left: int
  pass_index: int
  offset: int


class Stream:
  """The streams of the pipelines of `layout`'s last segment; each step, each of a segment's
  pipelines reads its share of the global batch.

  Example:
    Stream(passes, layout, global_batch_size=64).dataset(pipeline=1, start_step=120)
  """

  def __init__(self, passes: Passes, layout: Layout, global_batch_size: int):
    self.passes = passes
    self.layout = tuple(layout)
    self.global_batch_size = global_batch_size
    for earlier, later in zip(self.layout, self.layout[1:]):
      if later.step <= earlier.step and later.step:
        raise ValueError(f"input layout {self.layout}: segments out of step order")
    # Each segment's entry: its pipelines' carry lengths and their first pass of their own; and
    # where the pipelines of each segment but the last stood when the next one began.
    self._entries = [([0] * self.layout[0].pipelines, 0)]
    self._ends: list[tuple[list[Position], int]] = []
    for segment, following in enumerate(self.layout[1:]):
      ended = self.positions(segment, following.step)
      next_pass = max(p.pass_index + (1 if p.offset else 0) for p in ended)
      pipelines = self.layout[segment].pipelines
      left = sum(p.carry_left + (next_pass - p.pass_index) * passes.length(pipelines, i)
                 - p.offset for i, p in enumerate(ended))
      self._ends.append((ended, next_pass))
      self._entries.append(([len(range(p, left, following.pipelines))
                             for p in range(following.pipelines)], next_pass))

  def dataset(self, pipeline: int, start_step: int) -> tf.data.Dataset:
    """Pipeline `pipeline`'s examples from where it stands after `start_step` steps."""
    last = len(self.layout) - 1
    position = self.positions(last, start_step)[pipeline]
    if position.offset:
      logging.info("Input resumes at example %d of pass %d (skipped, not trained on)",
                   position.offset, position.pass_index + 1)
    if position.carry_left:
      logging.info("Input resumes on %d pipeline(s) (%s): pipeline %d first reads %d of the %d "
                   "examples the pipelines before left of their passes", self.layout[last].pipelines,
                   describe(self.layout), pipeline, position.carry_left,
                   self._entries[last][0][pipeline])
    return self._after_carry(last, pipeline, position, passes_from(
        self.passes, self.layout[last].pipelines, pipeline, position.pass_index, position.offset))

  def positions(self, segment: int, step: int) -> list[Position]:
    """Where each pipeline of segment `segment` stands after `step` steps of training."""
    pipelines = self.layout[segment].pipelines
    carried, first_pass = self._entries[segment]
    read = (step - self.layout[segment].step) * (self.global_batch_size // pipelines)
    positions = []
    for pipeline, carry in enumerate(carried):
      if read < carry:
        positions.append(Position(carry - read, first_pass, 0))
      else:  # (at a pass's start no length is needed: counting may read a pipeline's files)
        passes, offset = (divmod(read - carry, self.passes.length(pipelines, pipeline))
                          if read > carry else (0, 0))
        positions.append(Position(0, first_pass + passes, offset))
    return positions

  def _after_carry(self, segment: int, pipeline: int, position: Position,
                   own: tf.data.Dataset) -> tf.data.Dataset:
    """`own` (the pipeline's own passes from `position`) after what it still carries."""
    if not position.carry_left:
      return own
    carried = self._remainder(segment - 1).shard(self.layout[segment].pipelines, pipeline)
    return carried.skip(self._entries[segment][0][pipeline] - position.carry_left).concatenate(own)

  def _remainder(self, segment: int) -> tf.data.Dataset:
    """What the pipelines of `segment` had left when the next segment began, one after the
    other (every example once for each pass it was due in)."""
    pipelines = self.layout[segment].pipelines
    ended, next_pass = self._ends[segment]
    parts = [self._after_carry(segment, pipeline, position,
                               tf.data.Dataset.range(position.pass_index, next_pass)
                               .flat_map(self.passes.of(pipelines, pipeline))
                               .skip(position.offset))
             for pipeline, position in enumerate(ended)]
    return functools.reduce(tf.data.Dataset.concatenate, parts)
