"""Callbacks tfdist adds to every run: backups (any strategy), speed, resume point."""

from __future__ import annotations

import signal
import sys
import time
from typing import Any, Callable, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.cluster import EXIT_PREEMPTED
from tfdist.train.outputs import CHECKPOINT_TEMPLATE, ModelDir


def log_resume(epoch: int, step: int) -> None:
  """The one line every loop logs when it restored a backup (epoch counts from 1)."""
  logging.info("Resumed from backup at epoch %d after step %d (not from the start)", epoch, step)


def save_on_sigterm(strategy: tf.distribute.Strategy, manager: tf.train.CheckpointManager,
                    position: Callable[[], tuple[int, int]],
                    before_save: Optional[Callable[[], Any]] = None) -> Optional[Any]:
  """Makes a SIGTERM to any task save `manager`'s checkpoint on every task at the next step
  boundary, then exit with EXIT_PREEMPTED. Returns the handler (None where it cannot run:
  ParameterServerStrategy). Call `handler.save_checkpoint_if_preempted()` after each step, or
  let tf_keras's BackupAndRestore do it.

  TensorFlow's PreemptionCheckpointHandler does the agreeing between workers;
  `position()` gives (epoch from 1, steps done in it) for the one line it logs;
  `before_save()` runs just before that save (e.g. to record the step in the checkpoint).
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
    manager.save(*args, **kwargs)

  multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
  return tf.distribute.experimental.PreemptionCheckpointHandler(
      strategy.cluster_resolver if multi_worker else None, manager,
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
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._supported_strategies = (*self._supported_strategies, tf.distribute.OneDeviceStrategy)
    self._last_step = -1
    self._handler = None  # the preemption handler; None under ParameterServerStrategy

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    state = self._training_state
    handler = self._handler = save_on_sigterm(
        self.model.distribute_strategy, state.write_checkpoint_manager,
        lambda: (self._current_epoch + 1, self._last_step + 1))
    if handler:  # What tf_keras does with save_before_preemption=True, where it allows it.
      # pylint: disable-next=protected-access
      handler._read_checkpoint_manager = state.read_checkpoint_manager
      state.preemption_handler = handler
      state._enable_save_before_preemption = True  # pylint: disable=protected-access

  def on_train_batch_end(self, batch, logs=None):
    # `batch` is the last step of this call: a backup made now includes it.
    self._last_step = batch
    if self._handler:  # (tf_keras counts no steps under ParameterServerStrategy)
      self._training_state._ckpt_saved_batch.assign(batch)  # pylint: disable=protected-access
    super().on_train_batch_end(batch, logs)

  def on_epoch_end(self, epoch, logs=None):
    super().on_epoch_end(epoch, logs)
    if self.save_freq != "epoch" and epoch + 1 == self.params.get("epochs"):
      # Saved "at the last step of the epoch": tf_keras then resumes at the next epoch.
      state = self._training_state
      state._ckpt_saved_batch.assign(self.params["steps"] - 1)  # pylint: disable=protected-access
      self._backup(epoch=epoch)

  def on_train_end(self, logs=None):
    if self._handler:
      stop_saving_on_sigterm()
    super().on_train_end(logs)


class RecordCheckpoint(keras.callbacks.Callback):
  """Adds each epoch's checkpoint to the run record (run.json) that the sidecar evaluator reads."""

  def __init__(self, model_dir: ModelDir):
    super().__init__()
    self._supports_tf_logs = True  # never reads `logs`
    self.model_dir = model_dir

  def on_epoch_end(self, epoch, logs=None):
    self.model_dir.add_checkpoint(CHECKPOINT_TEMPLATE.format(epoch=epoch + 1))


class RunMeter(keras.callbacks.Callback):
  """Measures examples/s per epoch and notices where a restored run resumed.

  BackupAndRestore restores before the first epoch begins, so the first epoch
  and step this callback sees are the resume point.
  """

  def __init__(self, global_batch_size: int, started: Optional[float] = None,
               initial_epoch: int = 0):
    super().__init__()
    # It never reads `logs`, so Keras may run it under ParameterServerStrategy, where batch
    # hooks fire as steps are scheduled (epoch ends still wait for the steps to finish).
    self._supports_tf_logs = True
    self.global_batch_size = global_batch_size
    self.resumed_from: Optional[dict] = None
    self.epoch_rates: list[float] = []
    self.epochs_completed = 0
    self.first_step_seconds: Optional[float] = None
    self._started = started  # time.perf_counter() at the job's start, if known
    self._initial_epoch = initial_epoch  # where fit starts when there is no backup
    self._first_seen = False
    self._epoch_start = 0.0
    self._epoch_first_step: Optional[int] = None
    self._last_step = -1

  def on_train_begin(self, logs=None):
    if self._started is None:
      self._started = time.perf_counter()

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch
    self._epoch_first_step = None
    self._epoch_start = time.perf_counter()

  def on_train_batch_begin(self, batch, logs=None):
    if self._epoch_first_step is None:
      self._epoch_first_step = batch
      self._epoch_start = time.perf_counter()
    if not self._first_seen:
      self._first_seen = True
      if self._epoch != self._initial_epoch or batch:
        # As Keras prints it: epoch counts from 1; `step` steps of it were already done.
        self.resumed_from = {"epoch": int(self._epoch) + 1, "step": int(batch)}
        log_resume(**self.resumed_from)

  def on_train_batch_end(self, batch, logs=None):
    self._last_step = batch
    if self.first_step_seconds is None:
      self.first_step_seconds = time.perf_counter() - self._started

  def on_epoch_end(self, epoch, logs=None):
    self.epochs_completed = epoch + 1
    steps = self._last_step - (self._epoch_first_step or 0) + 1
    seconds = time.perf_counter() - self._epoch_start
    if steps > 0 and seconds > 0:
      self.epoch_rates.append(steps * self.global_batch_size / seconds)

  @property
  def examples_per_sec(self) -> Optional[float]:
    """Mean over epochs after the first (which pays for tracing), or the only epoch."""
    rates = self.epoch_rates[1:] or self.epoch_rates
    return sum(rates) / len(rates) if rates else None
