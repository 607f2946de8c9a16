"""Training through Keras `model.fit` under any strategy, with tfdist's outputs."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.data import DatasetSource
from tfdist.models import ModelFn, generations, outputs_probabilities
from tfdist.train.callbacks import (BackupAndRestore, EpochCheckpoint, EpochTensorBoard,
                                    RunMeter)
from tfdist.train.saving import SaveSchedule, save_options
from tfdist.train import keras3_upstream
from tfdist.train.keras3_fit import Keras3FitLoop
from tfdist.train.options import TrainOptions
from tfdist.train.run import Run, TrainHistory, uses_coordinator


def compile_if_needed(model, options: TrainOptions):
  """Compiles an uncompiled model (either Keras) with Adam and sparse cross-entropy on logits."""
  gen = generations.generation(model)
  compiled = (model.compiled if gen == generations.KERAS3
              else model._is_compiled)  # pylint: disable=protected-access
  if getattr(model, "optimizer", None) is None or not compiled:
    library = generations.keras_of(gen)
    model.compile(
        optimizer=library.optimizers.Adam(options.learning_rate),
        loss=library.losses.SparseCategoricalCrossentropy(
            from_logits=not outputs_probabilities(model)),
        metrics=["accuracy"],
        steps_per_execution=options.steps_per_execution)
  return model


def steps_per_execution(model) -> int:
  """The steps per `fit` call the model was compiled with (by tfdist or by the user)."""
  value = getattr(model, "_steps_per_execution", None)  # tf_keras keeps it as a variable
  if value is None:
    return max(1, int(getattr(model, "steps_per_execution", 1) or 1))  # Keras 3: an int
  return max(1, int(value.numpy()))


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

  They come before the RunMeter, so an epoch's time includes its saves. (Backups
  restore in on_train_begin, before fit picks the first epoch and step the meter sees.)
  """
  model_dir = run.model_dir
  per_call = steps_per_execution(model)
  save_freq = backup_frequency(run.strategy, run.options, per_call)
  schedule = SaveSchedule(run.strategy, least_backup_steps=(
      save_freq * per_call if isinstance(save_freq, int) else 0), share=run.options.save_share,
                          steps_per_epoch=run.steps_per_epoch, background=save_options(model))
  return [
      # Kept after training: `Run.finish` removes it once every output is written.
      BackupAndRestore(model_dir.backup, save_freq=save_freq, delete_checkpoint=False,
                       schedule=schedule, steps_per_execution=per_call),
      EpochCheckpoint(model_dir, schedule),
      EpochTensorBoard(model_dir.tensorboard),
  ]


def train_with_fit(*, strategy: tf.distribute.Strategy, source: DatasetSource,
                   model_fn: ModelFn, options: TrainOptions, global_batch_size: int,
                   started: Optional[float] = None, params_yaml: Optional[str] = None,
                   callbacks: Sequence = ()) -> tuple[keras.Model, dict]:
  """Builds the model in `strategy.scope()`, fits it, evaluates and saves.

  Every task of a multi-worker job calls this; only the chief (the strategy's
  `should_checkpoint`) writes into `options.model_dir`. Most callers want
  `tfdist.run`, which also builds the strategy for where it runs. A tf_keras model
  trains through its `fit`; a Keras 3 model through keras3_fit.Keras3FitLoop (its
  own `train_step` in tfdist's loop: Keras 3's `fit` fails under multi-worker
  strategies).

  Args:
    callbacks: the user's Keras callbacks of the model's Keras (with Keras 3, their
      epoch hooks run).
    started: `time.perf_counter()` when the job started, for `wall_seconds` (default: now).
    params_yaml: the resolved config, written to the model dir as params.yaml.

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  run = Run(strategy=strategy, source=source, options=options,
            global_batch_size=global_batch_size, started=started, params_yaml=params_yaml)
  with strategy.scope():
    model = compile_if_needed(model_fn(source.input_shape, source.num_classes), options)
    keras3 = generations.generation(model) == generations.KERAS3
    if keras3:
      keras3_upstream.build_compiled_state(
          model, source.input_shape, global_batch_size // strategy.num_replicas_in_sync)
    run.begin(model)
  if run.start.done:
    return model, run.metrics_of_finished_run()
  if keras3:
    logging.info("Keras 3 model: fit runs its train_step in tfdist's loop, %d step(s) per call",
                 steps_per_execution(model))
    return model, run.finish(model, Keras3FitLoop(run, model, callbacks).train())
  data = keras.utils.experimental.DatasetCreator(source.train_input_fn(
      global_batch_size, seed=options.seed, per_worker=uses_coordinator(strategy)))

  meter = RunMeter(global_batch_size, started=run.started, initial_epoch=run.start.epoch)
  history = model.fit(data, epochs=options.epochs, initial_epoch=run.start.epoch,
                      steps_per_epoch=run.steps_per_epoch,
                      callbacks=[*output_callbacks(run, model), *callbacks, meter],
                      verbose=1 if sys.stdout.isatty() else 2)
  result = TrainHistory(
      losses=history.history.get("loss", []), accuracies=history.history.get("accuracy", []),
      epochs_completed=meter.epochs_completed, examples_per_sec=meter.clock.examples_per_sec,
      cpu_ms_per_step=meter.clock.cpu_ms_per_step, first_step_seconds=meter.first_step_seconds,
      resumed_from=meter.resumed_from)
  if not history.epoch:
    # fit ran no epoch, so its backup held them all: the run ended after training, before its
    # outputs were written (e.g. a crash while exporting). Only the outputs remain to write.
    result = run.resumed_after_training()
  return model, run.finish(model, result)
