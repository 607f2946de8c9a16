"""When and how a run saves while it trains, so that saving costs at most a share of its time.

Saves are written by a background thread at the lowest CPU priority: the training loop
waits only while the variables are copied, and the write uses CPU time training leaves
idle (docs/performance.md, "What saving costs"). How often a run saves is bounded by what a save
costs: the run's first backup and first epoch checkpoint are timed, and each kind's
interval widens until saving costs at most `--save_share` of training time (half of it
for backups, half for epoch checkpoints).
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import Any, Callable, Optional

import tensorflow as tf
from absl import logging

from tfdist.models import generations
from tfdist.strategy import collective

IN_FOREGROUND = tf.train.CheckpointOptions()
IN_BACKGROUND = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)
_LOWEST_PRIORITY = 19  # nice: the writer runs on CPU time no training thread wants

Save = Callable[[tf.train.CheckpointOptions], Any]  # a save, given how to write it


def save_options(model) -> tf.train.CheckpointOptions:
  """IN_BACKGROUND, except for Keras 3 models: copying their variables for a background
  write fails (Keras 3.15's `Variable._copy_trackable_to_cpu` creates a tf.Variable inside
  a tf.function: ValueError), so they are saved in the foreground."""
  if generations.generation(model) == generations.KERAS3:
    return IN_FOREGROUND
  return IN_BACKGROUND


def save_at_low_priority(save: Save, options: tf.train.CheckpointOptions) -> Any:
  """`save(options)`; the writer thread TensorFlow starts for a checkpoint's first background
  save gets the lowest CPU priority (Linux; elsewhere it keeps its own)."""
  before = {thread.ident for thread in threading.enumerate()}
  result = save(options)
  for thread in threading.enumerate():
    if thread.ident not in before and getattr(thread, "native_id", None):
      try:
        os.setpriority(os.PRIO_PROCESS, thread.native_id, _LOWEST_PRIORITY)
      except (AttributeError, OSError):  # no per-thread priorities here
        pass
  return result


def backup_interval(save_seconds: float, step_seconds: float, least_steps: int,
                    share: float) -> int:
  """Steps between backups: at least `least_steps` (--backup_every_steps), and enough
  that one save costs at most `share` of the training time between two. `share` 0:
  `least_steps`.

  Example:
    backup_interval(save_seconds=0.045, step_seconds=0.016, least_steps=50, share=0.01)  # 282
  """
  if share <= 0:
    return least_steps
  return max(least_steps, math.ceil(save_seconds / (share * max(step_seconds, 1e-6))))


def checkpoint_interval(save_seconds: float, epoch_seconds: float, share: float) -> int:
  """Epochs between epoch checkpoints: 1, or enough that one save costs at most `share`
  of the training time between two.

  Example:
    checkpoint_interval(save_seconds=0.06, epoch_seconds=0.9, share=0.01)  # 7
  """
  if share <= 0:
    return 1
  return max(1, math.ceil(save_seconds / (share * max(epoch_seconds, 1e-6))))


def _first_write_seconds(save: Save, checkpoint, how: tf.train.CheckpointOptions) -> float:
  """Runs a kind's first save as the later ones will run, waiting for it; returns the
  seconds its write takes.

  A background save is made twice: TensorFlow sets up a checkpoint's background
  writer on its first background save and traces the copy it makes on the second
  (together about 0.1-0.2 s once per run, not a cost of each save); the second
  write is timed. This keeps that set-up at the run's first save, not at later ones.
  """
  if not how.experimental_enable_async_checkpoint:
    started = time.perf_counter()
    save(how)
    return time.perf_counter() - started
  save_at_low_priority(save, how)
  checkpoint.sync()
  save_at_low_priority(save, how)
  returned = time.perf_counter()
  checkpoint.sync()
  return time.perf_counter() - returned


class SaveSchedule:
  """When a run saves: a backup every `backup_steps` steps, an epoch checkpoint every
  `checkpoint_epochs` epochs and after the last.

  Both start at their least (--backup_every_steps; every epoch). The run waits for
  its first save of each kind and times its write; with the seconds per step
  measured from the end of the run's first call (which traces), the interval widens
  until that kind of save costs at most half of `share` of training time (both kinds
  together: at most `share`). Every worker takes the largest interval proposed (all
  make the same saves at the same steps). Saves are written in the background at low
  priority (Keras 3 models: in the foreground).

  Example (a loop of calls of 10 steps):
    schedule = SaveSchedule(strategy, least_backup_steps=50, share=0.01, steps_per_epoch=62)
    schedule.steps_done(10)                           # after each call
    schedule.save_backup(lambda how: manager.save(options=how), manager.checkpoint)
    if schedule.checkpoint_due(last=epoch + 1 == epochs):
      schedule.save_checkpoint(lambda how: checkpoint.write(path, options=how), checkpoint)
  """

  def __init__(self, strategy: tf.distribute.Strategy, least_backup_steps: int, share: float,
               steps_per_epoch: int, background: tf.train.CheckpointOptions = IN_BACKGROUND):
    self.strategy = strategy
    self.least_backup_steps = least_backup_steps
    self.share = share
    self.kind_share = share / 2  # backups and epoch checkpoints: together at most `share`
    self.steps_per_epoch = steps_per_epoch
    self.background = background
    self.backup_steps = least_backup_steps
    self.checkpoint_epochs = 1
    self._timed = {"backup", "checkpoint"} if share <= 0 else set()  # 0: nothing to widen
    self._epochs_since_checkpoint = 0
    self._clock_start: Optional[float] = None
    self._clock_end = 0.0
    self._clock_steps = 0

  def steps_done(self, count: int) -> None:
    """After each call of `count` training steps."""
    now = time.perf_counter()
    if self._clock_start is None:
      self._clock_start = now  # the first call traces: the clock starts after it
    else:
      self._clock_steps += count
      self._clock_end = now

  @property
  def seconds_per_step(self) -> Optional[float]:
    if not self._clock_steps:
      return None
    return (self._clock_end - self._clock_start) / self._clock_steps

  def save_backup(self, save: Save, checkpoint: tf.train.Checkpoint) -> None:
    """Runs a due backup (`save` writes `checkpoint`); the run's first sets `backup_steps`."""
    first = self._save("backup", save, checkpoint)
    if first is None:
      return
    seconds, step = first
    proposal = (backup_interval(seconds, step, self.least_backup_steps, self.kind_share)
                if step else self.least_backup_steps)
    self.backup_steps = collective.agree_on_max(self.strategy, proposal)
    logging.info("Backups every %d steps: a save takes %.0f ms and a step %.1f ms, so backups "
                 "cost at most %g%% of training time (half of --save_share=%g; "
                 "--backup_every_steps=%d is the least)", self.backup_steps, seconds * 1000,
                 (step or 0) * 1000, self.kind_share * 100, self.share, self.least_backup_steps)

  def checkpoint_due(self, last: bool) -> bool:
    """At an epoch's end: whether it gets an epoch checkpoint (the last always does)."""
    if self._clock_steps:  # the epoch's steps are done (under a coordinator, not when scheduled)
      self._clock_end = time.perf_counter()
    self._epochs_since_checkpoint += 1
    due = last or self._epochs_since_checkpoint >= self.checkpoint_epochs
    if due:
      self._epochs_since_checkpoint = 0
    return due

  def save_checkpoint(self, save: Save, checkpoint: tf.train.Checkpoint) -> None:
    """Writes a due epoch checkpoint (`save` writes `checkpoint`); the run's first sets
    `checkpoint_epochs`."""
    first = self._save("checkpoint", save, checkpoint)
    if first is None:
      return
    seconds, step = first
    epoch_seconds = (step or 0) * self.steps_per_epoch
    proposal = checkpoint_interval(seconds, epoch_seconds, self.kind_share) if step else 1
    self.checkpoint_epochs = collective.agree_on_max(self.strategy, proposal)
    every = ("after every epoch" if self.checkpoint_epochs == 1
             else f"every {self.checkpoint_epochs} epochs and after the last")
    logging.info("Epoch checkpoints %s: a save takes %.0f ms and an epoch %.1f s, so they cost "
                 "at most %g%% of training time (half of --save_share=%g)", every,
                 seconds * 1000, epoch_seconds, self.kind_share * 100, self.share)

  def _save(self, kind: str, save: Save,
            checkpoint: tf.train.Checkpoint) -> Optional[tuple[float, Optional[float]]]:
    """The run's first save of `kind` is waited for and timed: returns (seconds its write
    takes, seconds per step so far). Later ones are left to the background: None."""
    if kind in self._timed:
      save_at_low_priority(save, self.background)
      return None
    self._timed.add(kind)
    return _first_write_seconds(save, checkpoint, self.background), self.seconds_per_step
