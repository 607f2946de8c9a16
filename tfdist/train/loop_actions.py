"""What tfdist's own loops do around the steps, as actions run after each inner loop (a
`tf.function` call of several steps) and after each epoch, in the order given: SIGTERM saves,
backups, epoch checkpoints, and the epoch's report. Orbit's Controller, which runs its actions
after each inner loop, is the model.

Every action reads one TrainingPosition: the run's step counter, from which the epoch and
the step in it are derived.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import tensorflow as tf

from tfdist.checkpoint.epoch_checkpoints import EpochCheckpointWriter
from tfdist.checkpoint.model_dir import BACKUP, ModelDir
from tfdist.checkpoint.preemption import save_on_sigterm, stop_saving_on_sigterm
from tfdist.checkpoint.schedule import SaveSchedule, save_at_low_priority
from tfdist.train.clock import EpochClock


class TrainingPosition:
  """Where a run is: the steps done since it began (one counter, kept in `variable` for
  backups); the epoch and the step in it are derived.

  Example (62 steps an epoch):
    position = TrainingPosition(tf.Variable(0, dtype=tf.int64), 62, start=124)
    position.epoch, position.step_in_epoch  # (2, 0): two epochs done
  """

  def __init__(self, variable: tf.Variable, steps_per_epoch: int, start: int = 0):
    self.variable = variable
    self.steps_per_epoch = steps_per_epoch
    self.step = start

  @property
  def epoch(self) -> int:
    """Epochs completed (the index of the epoch under way)."""
    return self.step // self.steps_per_epoch

  @property
  def step_in_epoch(self) -> int:
    return self.step % self.steps_per_epoch

  def advance(self, steps: int) -> None:
    self.step += steps

  def save(self) -> None:
    """Into `variable`, before a backup is written."""
    self.variable.assign(self.step)

  def load(self) -> None:
    """From `variable`, after a backup was read."""
    self.step = int(self.variable.numpy())

  def describe(self) -> dict:
    """As Keras prints it: the epoch counts from 1, `step` steps of it are done."""
    return {"epoch": self.epoch + 1, "step": self.step_in_epoch}


class LoopAction:
  """Something a loop does between its calls; each hook may do nothing."""

  def before_epoch(self, position: TrainingPosition) -> None:
    """Before an epoch's first step (or its first step after a resume)."""

  def after_inner_loop(self, position: TrainingPosition, steps: int) -> None:
    """After a call of `steps` steps (all done, or scheduled under a coordinator)."""

  def after_epoch(self, position: TrainingPosition, logs: dict) -> None:
    """After an epoch's steps are done; `logs` holds its figures."""

  def close(self) -> None:
    """When training ends, however it ends."""


class ScheduleClock(LoopAction):
  """Tells the save schedule how long steps take (it spaces saves by what they cost)."""

  def __init__(self, schedule: SaveSchedule):
    self.schedule = schedule

  def after_inner_loop(self, position, steps):
    self.schedule.steps_done(steps)


class StepsEnded(LoopAction):
  """Marks on `clock` when an epoch's steps are done, before any action saves."""

  def __init__(self, clock: EpochClock):
    self.clock = clock

  def after_epoch(self, position, logs):
    self.clock.steps_ended()


class PreemptionSave(LoopAction):
  """A SIGTERM to any task: all save the backup at the next inner loop's end, and exit 75.
  (Not under ParameterServerStrategy, which TensorFlow's handler does not support.)"""

  def __init__(self, strategy: tf.distribute.Strategy, manager: tf.train.CheckpointManager,
               position: TrainingPosition):
    self.handler = save_on_sigterm(strategy, manager,
                                   lambda: (position.epoch + 1, position.step_in_epoch),
                                   before_save=position.save)

  def after_inner_loop(self, position, steps):
    if self.handler is not None:
      self.handler.save_checkpoint_if_preempted()

  def close(self):
    if self.handler is not None:
      stop_saving_on_sigterm()


def read_latest_backup(checkpoint: tf.train.Checkpoint, backup_dir: str) -> bool:
  """Reads the latest backup in `backup_dir` into `checkpoint`; False if there is none.

  Its save counter is read now too. `Checkpoint.read` leaves the counter to the first
  save, which then opens the backup's files again: by that time a non-chief's first save
  may find them gone, the chief having replaced that backup with its next one.
  """
  latest = tf.train.latest_checkpoint(backup_dir)
  if not latest:
    return False
  checkpoint.restore(latest).expect_partial()  # restore, not read: it creates the counter
  return True


class Backups(LoopAction):
  """Backups every `schedule.backup_steps` steps (counted across epochs) and after the last
  epoch; with `by_interval` False (no interval, or a coordinator, which cannot save
  mid-epoch), after every epoch. A non-chief writes into a temporary dir of its own."""

  def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: ModelDir,
               schedule: SaveSchedule, by_interval: bool, epochs: int):
    self.checkpoint = checkpoint
    self.model_dir = model_dir
    self.folder = model_dir.task_dir(BACKUP)
    self.manager = tf.train.CheckpointManager(checkpoint, self.folder, max_to_keep=1)
    self.schedule = schedule
    self.by_interval = by_interval
    self.epochs = epochs
    self.since_backup = 0

  def _save(self, how: tf.train.CheckpointOptions):
    return self.manager.save(options=how)

  def after_inner_loop(self, position, steps):
    self.since_backup += steps
    if (self.by_interval and self.since_backup >= self.schedule.backup_steps
        and position.step_in_epoch):  # an epoch's last backup is after_epoch's
      position.save()
      self.schedule.save_backup(self._save, self.checkpoint)
      self.since_backup = 0

  def after_epoch(self, position, logs):
    position.save()
    if self.by_interval and self.since_backup >= self.schedule.backup_steps:
      self.schedule.save_backup(self._save, self.checkpoint)
      self.since_backup = 0
    elif position.epoch == self.epochs or not self.by_interval:
      save_at_low_priority(self._save, self.schedule.background)

  def close(self):
    self.checkpoint.sync()
    self.model_dir.release(self.folder)


class EpochCheckpoints(LoopAction):
  """The weights after an epoch, when the schedule says it is due (the last always is)."""

  def __init__(self, writer: EpochCheckpointWriter, epochs: int):
    self.writer = writer
    self.epochs = epochs

  def after_epoch(self, position, logs):
    self.writer.epoch_ended(position.epoch, last=position.epoch == self.epochs)

  def close(self):
    self.writer.close()


class EpochReport(LoopAction):
  """The epoch's speed (its saves included: run it after them), its TensorBoard scalars and
  progress line (on the chief: `tensorboard_dir` given), and the user's epoch callbacks."""

  def __init__(self, clock: EpochClock, epochs: int, tensorboard_dir: Optional[str],
               callbacks, say: Callable[..., None] = print):
    self.clock = clock
    self.epochs = epochs
    self.writer = (tf.summary.create_file_writer(os.path.join(tensorboard_dir, "train"))
                   if tensorboard_dir else None)
    self.callbacks = callbacks
    self.say = say
    self.steps_done = 0

  def before_epoch(self, position):
    self.callbacks.on_epoch_begin(position.epoch)
    self.clock.start()

  def after_inner_loop(self, position, steps):
    self.steps_done += steps

  def after_epoch(self, position, logs):
    rate = self.clock.stop(self.steps_done) or 0.0
    if self.writer is not None:
      with self.writer.as_default():
        for name, value in logs.items():
          tf.summary.scalar(f"epoch_{name}", value, step=position.epoch)
        tf.summary.scalar("examples_per_sec", rate, step=position.epoch)
      self.writer.flush()
      figures = "".join(f" - {k}: {v:.4f}" for k, v in logs.items())
      self.say(f"Epoch {position.epoch}/{self.epochs}: {self.steps_done} steps{figures} - "
               f"{self.clock.last_seconds:.1f}s ({rate:,.0f} examples/s)", flush=True)
    self.callbacks.on_epoch_end(position.epoch - 1, dict(logs))
    self.steps_done = 0


def run_before_epoch(actions: Sequence[LoopAction], position: TrainingPosition) -> None:
  for action in actions:
    action.before_epoch(position)


def run_after_inner_loop(actions: Sequence[LoopAction], position: TrainingPosition,
                         steps: int) -> None:
  for action in actions:
    action.after_inner_loop(position, steps)


def run_after_epoch(actions: Sequence[LoopAction], position: TrainingPosition,
                    logs: dict) -> None:
  for action in actions:
    action.after_epoch(position, logs)


def close_all(actions: Sequence[LoopAction]) -> None:
  for action in actions:
    action.close()
