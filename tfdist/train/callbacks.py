"""Keras callbacks tfdist adds to every `fit`: TensorBoard without per-step work, and the meter
(speed, CPU per step, where a restored run resumed)."""

from __future__ import annotations

import time
from typing import Optional

import tf_keras as keras

from tfdist.checkpoint.resume import log_resume
from tfdist.train.clock import EpochClock, seconds_until_done


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


class StepsEnded(keras.callbacks.Callback):
  """Marks on `clock` when an epoch's steps are done: put it before the saving callbacks.
  (fit waits for a parameter-server epoch's steps before its epoch-end hooks.)"""

  def __init__(self, clock: EpochClock):
    super().__init__()
    self._supports_tf_logs = True  # reads no logs
    self.clock = clock

  def on_epoch_end(self, epoch, logs=None):
    self.clock.steps_ended()


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
