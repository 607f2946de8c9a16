"""Callbacks tfdist adds to every run: backups (any strategy), speed, resume point."""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any, Callable, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging
from tf_keras.src.distribute import distributed_file_utils

from tfdist.cluster import EXIT_PREEMPTED
from tfdist.models import generations
from tfdist.train.clock import EpochClock, seconds_until_done
from tfdist.train.outputs import CHECKPOINT_TEMPLATE, ModelDir
from tfdist.train.saving import SaveSchedule, save_at_low_priority

def log_resume(epoch: int, step: int) -> None:
  """The one line every loop logs when it restored a backup (epoch counts from 1)."""
  logging.info("Resumed from backup at epoch %d after step %d (not from the start)", epoch, step)


def save_on_sigterm(strategy: tf.distribute.Strategy, manager: tf.train.CheckpointManager,
                    position: Callable[[], tuple[int, int]],
                    before_save: Optional[Callable[[], Any]] = None,
                    restore_from: Optional[tf.train.CheckpointManager] = None) -> Optional[Any]:
  """Makes a SIGTERM to any task save `manager`'s checkpoint on every task at the next step
  boundary, then exit with EXIT_PREEMPTED. Returns the handler (None where it cannot run:
  ParameterServerStrategy). Call `handler.save_checkpoint_if_preempted()` after each step, or
  let tf_keras's BackupAndRestore do it.

  TensorFlow's PreemptionCheckpointHandler does the agreeing between workers;
  `position()` gives (epoch from 1, steps done in it) for the one line it logs;
  `before_save()` runs just before that save (e.g. to record the step in the checkpoint).
  The handler restores the latest checkpoint of `restore_from` (default `manager`) when
  created: a non-chief worker, which writes into a directory of its own, must restore the
  chief's (its own may hold an older backup, e.g. one a kill cut short).
  """
  if isinstance(strategy, tf.distribute.ParameterServerStrategy):
    return None

  def exit_preempted() -> None:
    epoch, step = position()
    logging.info("Preempted: training state saved at epoch %d after step %d; exiting with "
                 "status %d (restart me: the job resumes there)", epoch, step, EXIT_PREEMPTED)
    logging.flush()
    sys.stdout.flush()
    sys.exit(EXIT_PREEMPTED)

  def save(*args, **kwargs) -> None:
    if before_save is not None:
      before_save()
    manager.checkpoint.sync()  # a backup still being written in the background comes first
    manager.save(*args, **kwargs)  # in the foreground: the process exits right after

  multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  return tf.distribute.experimental.PreemptionCheckpointHandler(
      strategy.cluster_resolver if multi_worker else None, restore_from or manager,
      termination_config=tf.distribute.experimental.TerminationConfig(exit_fn=exit_preempted,
                                                                       save_fn=save))


def stop_saving_on_sigterm() -> None:
  """After training, SIGTERM ends the process again (the handler's watch is over)."""
  signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    self._counts_steps = not isinstance(self.model.distribute_strategy,
                                        tf.distribute.ParameterServerStrategy)
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


class EpochCheckpoints:
  """The weights after an epoch (`checkpoints/ckpt-NNNN`), when `schedule` says it is due
  (every `checkpoint_epochs` epochs and after the last), written in the background.

  Each is added to the run record (run.json, which the sidecar evaluator follows)
  once written: at the next save, or at `close`. Under MultiWorkerMirrored every
  worker saves (a save may need them all); the others into a temporary dir.

  Example:
    saves = EpochCheckpoints(model, run.model_dir, schedule)
    saves.epoch_ended(1, last=False); ...; saves.close()
  """

  def __init__(self, model, model_dir: ModelDir, schedule: SaveSchedule):
    self.model_dir = model_dir
    self.schedule = schedule
    self.checkpoint = generations.weights_checkpoint(model)
    self.folder = model_dir.checkpoints if model_dir.is_chief else tempfile.mkdtemp(
        prefix="tfdist-checkpoints-")
    self._pending: Optional[str] = None

  def epoch_ended(self, epoch: int, last: bool) -> None:
    """After epoch `epoch` (from 1): starts writing `ckpt-{epoch}` if due; records the
    previous one (long written by now)."""
    if not self.schedule.checkpoint_due(last):
      return
    self._record_pending()
    name = CHECKPOINT_TEMPLATE.format(epoch=epoch)
    path = os.path.join(self.folder, name)
    self.schedule.save_checkpoint(lambda how: self.checkpoint.write(path, options=how),
                                  self.checkpoint)
    self._pending = name

  def close(self) -> None:
    """Waits for the last write and records it; removes a non-chief's temporary dir."""
    self._record_pending()
    if not self.model_dir.is_chief:
      shutil.rmtree(self.folder, ignore_errors=True)

  def _record_pending(self) -> None:
    self.checkpoint.sync()
    if self._pending is not None:
      self.model_dir.add_checkpoint(self._pending)
      self._pending = None


class EpochCheckpoint(keras.callbacks.Callback):
  """EpochCheckpoints for `fit`, which also clocks the steps for `schedule`. (Keras's
  ModelCheckpoint writes in the foreground and, on a non-chief, removes its temporary
  dir right after, which a background write forbids.)"""

  def __init__(self, model_dir: ModelDir, schedule: SaveSchedule):
    super().__init__()
    self._supports_tf_logs = True  # never reads `logs`
    self.model_dir = model_dir
    self.schedule = schedule
    self.saves: Optional[EpochCheckpoints] = None
    self._last_batch = -1

  def on_train_begin(self, logs=None):
    self.saves = EpochCheckpoints(self.model, self.model_dir, self.schedule)

  def on_epoch_begin(self, epoch, logs=None):
    self._last_batch = -1

  def on_train_batch_end(self, batch, logs=None):
    self.schedule.steps_done(batch - self._last_batch)  # `batch`: the call's last step
    self._last_batch = batch

  def on_epoch_end(self, epoch, logs=None):
    self.saves.epoch_ended(epoch + 1, last=epoch + 1 == self.params.get("epochs"))

  def on_train_end(self, logs=None):
    self.saves.close()


class EpochTensorBoard(keras.callbacks.TensorBoard):
  """Keras's TensorBoard with epoch summaries and no per-step work.

  Keras calls every callback's batch hooks once any callback has them (tfdist's do);
  TensorBoard's then build `batch_*` summaries that no writer records in
  `update_freq="epoch"` mode, reading the step variable for each: measured at about
  6% of a step of 15 ms. Here they run only until the model's graph is written (on
  the first batch).
  """

  def __init__(self, log_dir: str):
    super().__init__(log_dir, update_freq="epoch")
    self._graph_written = False

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._graph_written = False

  def on_train_batch_begin(self, batch, logs=None):
    if not self._graph_written:
      super().on_train_batch_begin(batch, logs)

  def on_train_batch_end(self, batch, logs=None):
    if not self._graph_written:
      super().on_train_batch_end(batch, logs)
      self._graph_written = True


class RunMeter(keras.callbacks.Callback):
  """Clocks each epoch (examples/s, CPU time per step) and notices where a restored run
  resumed.

  BackupAndRestore restores before the first epoch begins, so the first epoch
  and step this callback sees are the resume point.
  """

  def __init__(self, global_batch_size: int, started: Optional[float] = None,
               initial_epoch: int = 0):
    super().__init__()
    # It never reads `logs`, so Keras may run it under ParameterServerStrategy, where batch
    # hooks fire as steps are scheduled (epoch ends still wait for the steps to finish).
    self._supports_tf_logs = True
    self.resumed_from: Optional[dict] = None
    self.clock = EpochClock(global_batch_size)
    self.epochs_completed = 0
    self.first_step_seconds: Optional[float] = None
    self._started = started  # time.perf_counter() at the job's start, if known
    self._initial_epoch = initial_epoch  # where fit starts when there is no backup
    self._first_seen = False
    self._epoch_first_step: Optional[int] = None
    self._last_step = -1

  def on_train_begin(self, logs=None):
    if self._started is None:
      self._started = time.perf_counter()

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._epoch_first_step = None
    self.clock.start()

  def on_train_batch_begin(self, batch, logs=None):
    if self._epoch_first_step is None:
      self._epoch_first_step = batch
      self.clock.start()
    if not self._first_seen:
      self._first_seen = True
      if self._epoch != self._initial_epoch or batch:
        # As Keras prints it: epoch counts from 1; `step` steps of it were already done.
        self.resumed_from = {"epoch": int(self._epoch) + 1, "step": int(batch)}
        log_resume(**self.resumed_from)

  def on_train_batch_end(self, batch, logs=None):
    self._last_step = batch
    if self.first_step_seconds is None:  # `logs`: the step's RemoteValue under PSS
      self.first_step_seconds = seconds_until_done(self._started, logs)

  def on_epoch_end(self, epoch, logs=None):
    self.epochs_completed = epoch + 1
    self.clock.stop(self._last_step - (self._epoch_first_step or 0) + 1)
