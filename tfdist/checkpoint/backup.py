"""Backups of `fit`'s training state: tf_keras's BackupAndRestore, made to lose no work.

(The custom loop backs up with a CheckpointManager of its own layout: tf_keras keeps the
epoch and step it resumes at in private training-state variables that its `fit` reads, so
sharing one layout would mean writing tf_keras's privates from the custom loop.)
"""

from __future__ import annotations

import math
import os

import tensorflow as tf
import tf_keras as keras
from tf_keras.src.distribute import distributed_file_utils

from tfdist.checkpoint.preemption import save_on_sigterm, stop_saving_on_sigterm
from tfdist.checkpoint.schedule import SaveSchedule, save_at_low_priority
from tfdist.strategy import kinds


def backed_up_step(backup_dir: str, steps_per_epoch: int) -> int:
  """The steps a `fit` backup in `backup_dir` holds (0: none), from its epoch and step
  variables, read as tf_keras reads them (a step saved last in its epoch, or an epoch-end
  backup, starts the next epoch). `fit` needs it before it starts, to start the input there;
  tf_keras restores the backup itself only once `fit` runs.

  Example (62 steps an epoch; saved after step 9 of the third epoch):
    backed_up_step(model_dir.backup, 62)  # 134
  """
  # tf_keras's BackupAndRestore keeps its backups in a `chief` folder of the backup dir.
  latest = tf.train.latest_checkpoint(os.path.join(backup_dir, "chief"))
  if latest is None:
    return 0
  reader = tf.train.load_checkpoint(latest)
  epoch, step = (int(reader.get_tensor(f"{name}/.ATTRIBUTES/VARIABLE_VALUE"))
                 for name in ("ckpt_saved_epoch", "ckpt_saved_batch"))
  if epoch < 0:
    return 0
  if step < 0 or step == steps_per_epoch - 1:
    return (epoch + 1) * steps_per_epoch
  return epoch * steps_per_epoch + step + 1


class BackupAndRestore(keras.callbacks.BackupAndRestore):
  """tf_keras's BackupAndRestore, made to lose no work.

  - It also runs under OneDeviceStrategy: tf_keras refuses it only by a list of
    supported classes; one device on one worker backs up as no strategy does.
  - A backup records the last step it includes (tf_keras records the first step
    of the last `steps_per_execution` call, so a resumed run redid the others).
  - With a step interval, it also backs up when training ends, so a run that fails
    while writing its outputs restarts with its training done.
  - A SIGTERM to any task (Mirrored, OneDevice, MultiWorkerMirrored) makes every
    task save at the next step boundary and exit with EXIT_PREEMPTED: the
    restarted job resumes at that step. TensorFlow's PreemptionCheckpointHandler
    does the agreeing; tf_keras switches it on only on GCP.
  - Backups are written in the background at low priority, and the step is recorded
    when one is written, not on every step (tf_keras assigns a variable per step).
  - With a step interval, `schedule` (saving.SaveSchedule) times the run's first
    backup and widens the interval until backups cost at most its share of training
    time (agreed by all workers; `steps_per_execution` steps per `save_freq`).
  """

  def __init__(self, *args, schedule: SaveSchedule, steps_per_execution: int = 1, **kwargs):
    super().__init__(*args, **kwargs)
    self._supported_strategies = (*self._supported_strategies, tf.distribute.OneDeviceStrategy)
    self._last_step = -1
    self._handler = None  # the preemption handler; None under ParameterServerStrategy
    self._schedule = schedule
    self._steps_per_execution = steps_per_execution

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    state = self._training_state
    self._counts_steps = not kinds.uses_coordinator(self.model.distribute_strategy)
    handler = self._handler = save_on_sigterm(
        self.model.distribute_strategy, state.write_checkpoint_manager,
        lambda: (self._current_epoch + 1, self._last_step + 1),
        before_save=lambda: self._record_step(self._last_step),
        restore_from=state.read_checkpoint_manager)
    if handler:  # What tf_keras does with save_before_preemption=True, where it allows it.
      state.preemption_handler = handler
      state._enable_save_before_preemption = True  # pylint: disable=protected-access

  def on_train_batch_begin(self, batch, logs=None):
    """Nothing: the step is recorded when a backup is written (_backup), not on every step."""

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the last step of this call: a backup made now includes it.
    self._last_step = batch
    super().on_train_batch_end(batch, logs)

  def on_epoch_end(self, epoch, logs=None):
    if self.save_freq == "epoch" or (epoch + 1 == self.params.get("epochs")
                                     and self._batches_count):
      # With a step interval, the last epoch's backup keeps a run that fails later from
      # training again (unless the interval's backup just took its last step). "After the
      # epoch's last step": a resumed run starts the next.
      self._backup(epoch=epoch, batch=self.params["steps"] - 1, by_interval=False)

  def _record_step(self, batch: int) -> None:
    if self._counts_steps:  # (tf_keras counts no steps under ParameterServerStrategy)
      self._training_state._ckpt_saved_batch.assign(batch)  # pylint: disable=protected-access

  def _backup(self, epoch, batch=0, by_interval=True):
    # tf_keras's `back_up` would remove a non-chief's temporary backup dir right after the
    # save returns, while it is still being written: that dir goes in on_train_end.
    self._record_step(batch)
    manager = self._training_state.write_checkpoint_manager
    save = lambda options: manager.save(options=options)  # noqa: E731
    if not by_interval:
      save_at_low_priority(save, self._schedule.background)
      return
    self._schedule.save_backup(save, manager.checkpoint)
    self.save_freq = max(1, math.ceil(self._schedule.backup_steps / self._steps_per_execution))

  def on_train_end(self, logs=None):
    if self._handler:
      stop_saving_on_sigterm()
    manager = self._training_state.write_checkpoint_manager
    manager.checkpoint.sync()
    distributed_file_utils.remove_temp_dirpath(manager.directory, self.model.distribute_strategy)
    super().on_train_end(logs)
