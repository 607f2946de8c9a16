"""Training through Keras `model.fit` under any strategy, with tfdist's outputs."""

from __future__ import annotations

import sys
from typing import Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.checkpoint.backup import BackupAndRestore, backed_up_step
from tfdist.checkpoint.epoch_checkpoints import EpochCheckpointCallback
from tfdist.checkpoint.schedule import SaveSchedule, save_options
from tfdist.models import generations
from tfdist.strategy import kinds
from tfdist.train.callbacks import EpochTensorBoard, RunMeter, StepsEnded
from tfdist.train.custom_loop import ModelStepLoop, build_step_state, steps_per_execution
from tfdist.train.options import TrainOptions
from tfdist.train.trainer import Trainer, TrainHistory


def backup_frequency(strategy: tf.distribute.Strategy, options: TrainOptions,
                     model_steps_per_execution: int):
  """BackupAndRestore's `save_freq` for `backup_every_steps`.

  tf_keras counts its batch hooks, which run once per execution of
  `model_steps_per_execution` steps (the model's own setting, which a user who
  compiled the model chose), so the interval is converted and rounded down to
  whole executions. It backs up ParameterServerStrategy only at epoch ends.
  """
  if not options.backup_every_steps:
    return "epoch"
  if kinds.uses_coordinator(strategy):
    logging.info("Backups at epoch ends: tf_keras cannot back up parameter-server training "
                 "mid-epoch (--backup_every_steps=%d applies to the other strategies)",
                 options.backup_every_steps)
    return "epoch"
  return max(1, options.backup_every_steps // model_steps_per_execution)


def output_callbacks(trainer: Trainer, model: keras.Model) -> list[keras.callbacks.Callback]:
  """The callbacks that write a run's backups, checkpoints and TensorBoard logs.

  They come before the RunMeter, so an epoch's time includes its saves. (Backups
  restore in on_train_begin, before fit picks the first epoch and step the meter sees.)
  """
  model_dir = trainer.model_dir
  per_call = steps_per_execution(model)
  save_freq = backup_frequency(trainer.strategy, trainer.options, per_call)
  schedule = SaveSchedule(trainer.strategy, least_backup_steps=(
      save_freq * per_call if isinstance(save_freq, int) else 0),
                          share=trainer.options.save_share,
                          steps_per_epoch=trainer.steps_per_epoch, background=save_options(model))
  return [
      # Kept after training: `Trainer.finish` removes it once every output is written.
      BackupAndRestore(model_dir.backup, save_freq=save_freq, delete_checkpoint=False,
                       schedule=schedule, steps_per_execution=per_call),
      EpochCheckpointCallback(model_dir, schedule),
      EpochTensorBoard(model_dir.tensorboard),
  ]


def train_with_fit(trainer: Trainer, callbacks: Sequence = ()) -> tuple[keras.Model, dict]:
  """Builds the model in the strategy's scope, fits it, then exports, evaluates and writes
  metrics.json (`trainer.finish`).

  Every task of a multi-worker job calls this; only the chief (the strategy's
  `should_checkpoint`) writes into the model dir. Most callers want `tfdist.run`,
  which also builds the strategy for where it runs. A tf_keras model trains through
  its `fit`; a Keras 3 model through custom_loop.ModelStepLoop (its own `train_step`
  in tfdist's loop: Keras 3's `fit` fails under multi-worker strategies).

  Args:
    callbacks: the user's Keras callbacks of the model's Keras (with Keras 3, their
      epoch hooks run).

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  strategy, options = trainer.strategy, trainer.options
  with strategy.scope():
    model = trainer.build_model()
    keras3 = generations.generation(model) == generations.KERAS3
    if keras3:
      build_step_state(trainer, model)
    trainer.begin(model)
  if trainer.starting_point.done:
    return model, trainer.metrics_of_finished_run()
  if keras3:
    logging.info("Keras 3 model: fit runs its train_step in tfdist's loop, %d step(s) per call",
                 steps_per_execution(model))
    return model, trainer.finish(model, ModelStepLoop(trainer, model, callbacks).train())
  data = keras.utils.experimental.DatasetCreator(trainer.train_input_fn(
      # The input starts after the steps trained: a backup's (read now: tf_keras restores it
      # only once fit runs, after the input is made), or a finished run's.
      start_step=backed_up_step(trainer.model_dir.backup, trainer.steps_per_epoch)
      or trainer.first_step))

  first_epoch = trainer.starting_point.epoch
  meter = RunMeter(trainer.global_batch_size, started=trainer.start_time,
                   initial_epoch=first_epoch)
  history = model.fit(data, epochs=options.epochs, initial_epoch=first_epoch,
                      steps_per_epoch=trainer.steps_per_epoch,
                      callbacks=[StepsEnded(meter.clock), *output_callbacks(trainer, model),
                                 *callbacks, meter],
                      verbose=1 if sys.stdout.isatty() else 2)
  result = TrainHistory(
      losses=history.history.get("loss", []), accuracies=history.history.get("accuracy", []),
      epochs_completed=meter.epochs_completed, first_step_seconds=meter.first_step_seconds,
      resumed_from=meter.resumed_from).timed_by(meter.clock)
  if not history.epoch:
    # fit ran no epoch, so its backup held them all: the run ended after training, before its
    # outputs were written (e.g. a crash while exporting). Only the outputs remain to write.
    result = trainer.resumed_after_training()
  return model, trainer.finish(model, result)
