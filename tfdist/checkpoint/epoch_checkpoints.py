"""The weights after an epoch (`checkpoints/ckpt-NNNN`), written in the background and listed in
the run record once written: for the custom loop (EpochCheckpointWriter) and for `fit`
(EpochCheckpointCallback)."""

from __future__ import annotations

import os
from typing import Optional

import tf_keras as keras

from tfdist.checkpoint.model_dir import CHECKPOINT_TEMPLATE, CHECKPOINTS, ModelDir
from tfdist.checkpoint.schedule import SaveSchedule
from tfdist.models import generations


class EpochCheckpointWriter:
  """The weights after an epoch (`checkpoints/ckpt-NNNN`), when `schedule` says it is due
  (every `checkpoint_epochs` epochs and after the last), written in the background.

  Each is added to the run record (run.json, which the sidecar evaluator follows)
  once written: at the next save, or at `close`. Under MultiWorkerMirrored every
  worker saves (a save may need them all); the others into a temporary dir.

  Example:
    saves = EpochCheckpointWriter(model, run.model_dir, schedule)
    saves.epoch_ended(1, last=False); ...; saves.close()
  """

  def __init__(self, model, model_dir: ModelDir, schedule: SaveSchedule):
    self.model_dir = model_dir
    self.schedule = schedule
    self.checkpoint = generations.weights_checkpoint(model)
    self.folder = model_dir.task_dir(CHECKPOINTS)
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
    self.model_dir.release(self.folder)

  def _record_pending(self) -> None:
    self.checkpoint.sync()
    if self._pending is not None:
      self.model_dir.add_checkpoint(self._pending)
      self._pending = None


class EpochCheckpointCallback(keras.callbacks.Callback):
  """EpochCheckpointWriter for `fit`, which also clocks the steps for `schedule`. (Keras's
  ModelCheckpoint writes in the foreground and, on a non-chief, removes its temporary
  dir right after, which a background write forbids.)"""

  def __init__(self, model_dir: ModelDir, schedule: SaveSchedule):
    super().__init__()
    self._supports_tf_logs = True  # never reads `logs`
    self.model_dir = model_dir
    self.schedule = schedule
    self.saves: Optional[EpochCheckpointWriter] = None
    self._last_batch = -1

  def on_train_begin(self, logs=None):
    self.saves = EpochCheckpointWriter(self.model, self.model_dir, self.schedule)

  def on_epoch_begin(self, epoch, logs=None):
    self._last_batch = -1

  def on_train_batch_end(self, batch, logs=None):
    self.schedule.steps_done(batch - self._last_batch)  # `batch`: the call's last step
    self._last_batch = batch

  def on_epoch_end(self, epoch, logs=None):
    self.saves.epoch_ended(epoch + 1, last=epoch + 1 == self.params.get("epochs"))

  def on_train_end(self, logs=None):
    self.saves.close()
