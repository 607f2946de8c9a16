"""Training through Keras `model.fit` under any strategy, with tfdist's outputs."""

from __future__ import annotations

import os
import sys
from typing import Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.data import DatasetSource
from tfdist.models import ModelFn, outputs_probabilities
from tfdist.train.callbacks import BackupAndRestore, RecordCheckpoint, RunMeter
from tfdist.train.options import TrainOptions
from tfdist.train.outputs import CHECKPOINT_TEMPLATE
from tfdist.train.run import Run, TrainHistory, uses_coordinator


def compile_if_needed(model: keras.Model, options: TrainOptions) -> keras.Model:
  """Compiles an uncompiled model with Adam and sparse cross-entropy on logits."""
  if model.optimizer is None or not model._is_compiled:  # pylint: disable=protected-access
    model.compile(
        optimizer=keras.optimizers.Adam(options.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)),
        metrics=["accuracy"],
        steps_per_execution=options.steps_per_execution)
  return model


def steps_per_execution(model: keras.Model) -> int:
  """The steps per `fit` call the model was compiled with (by tfdist or by the user)."""
  value = getattr(model, "_steps_per_execution", None)  # tf_keras keeps it as a variable
  return max(1, int(value.numpy())) if value is not None else 1


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
  if uses_coordinator(strategy):
    logging.info("Backups at epoch ends: tf_keras cannot back up parameter-server training "
                 "mid-epoch (--backup_every_steps=%d applies to the other strategies)",
                 options.backup_every_steps)
    return "epoch"
  return max(1, options.backup_every_steps // model_steps_per_execution)


def output_callbacks(run: Run, model: keras.Model) -> list[keras.callbacks.Callback]:
  """The callbacks that write a run's backups, checkpoints and TensorBoard logs.

  They come after the RunMeter, so an epoch's time ends before its saves. (Backups
  restore in on_train_begin, before fit picks the first epoch and step the meter sees.)
  """
  model_dir = run.model_dir
  return [
      # Kept after training: `Run.finish` removes it once every output is written.
      BackupAndRestore(model_dir.backup, save_freq=backup_frequency(
          run.strategy, run.options, steps_per_execution(model)), delete_checkpoint=False),
      keras.callbacks.ModelCheckpoint(
          os.path.join(model_dir.checkpoints, CHECKPOINT_TEMPLATE), save_weights_only=True),
      RecordCheckpoint(model_dir),  # after ModelCheckpoint: records what it has written
      keras.callbacks.TensorBoard(model_dir.tensorboard, update_freq="epoch"),
  ]


def train_with_fit(*, strategy: tf.distribute.Strategy, source: DatasetSource,
                   model_fn: ModelFn, options: TrainOptions, global_batch_size: int,
                   started: Optional[float] = None,
                   params_yaml: Optional[str] = None) -> tuple[keras.Model, dict]:
  """Builds the model in `strategy.scope()`, fits it, evaluates and saves.

  Every task of a multi-worker job calls this; only the chief (the strategy's
  `should_checkpoint`) writes into `options.model_dir`. Most callers want
  `tfdist.run`, which also builds the strategy for where it runs.

  Args:
    started: `time.perf_counter()` when the job started, for `wall_seconds` (default: now).
    params_yaml: the resolved config, written to the model dir as params.yaml.

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  run = Run(strategy=strategy, source=source, options=options,
            global_batch_size=global_batch_size, started=started, params_yaml=params_yaml)
  with strategy.scope():
    model = compile_if_needed(model_fn(source.input_shape, source.num_classes), options)
    run.begin(model)
  if run.start.done:
    return model, run.metrics_of_finished_run()
  data = keras.utils.experimental.DatasetCreator(source.train_input_fn(
      global_batch_size, seed=options.seed, per_worker=uses_coordinator(strategy)))

  meter = RunMeter(global_batch_size, started=run.started, initial_epoch=run.start.epoch)
  callbacks = [meter, *output_callbacks(run, model)]
  history = model.fit(data, epochs=options.epochs, initial_epoch=run.start.epoch,
                      steps_per_epoch=run.steps_per_epoch, callbacks=callbacks,
                      verbose=1 if sys.stdout.isatty() else 2)
  result = TrainHistory(
      losses=history.history.get("loss", []), accuracies=history.history.get("accuracy", []),
      epochs_completed=meter.epochs_completed, examples_per_sec=meter.examples_per_sec,
      first_step_seconds=meter.first_step_seconds, resumed_from=meter.resumed_from)
  if not history.epoch:
    # fit ran no epoch, so its backup held them all: the run ended after training, before its
    # outputs were written (e.g. a crash while exporting). Only the outputs remain to write.
    result = run.resumed_after_training()
  return model, run.finish(model, result)
