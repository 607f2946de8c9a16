"""Training through Keras `model.fit` under any strategy, with tfdist's outputs."""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.data import DatasetSource, per_replica_batch_size
from tfdist.models import ModelFn
from tfdist.train import evaluate
from tfdist.train.callbacks import RunMeter
from tfdist.train.options import TrainOptions
from tfdist.train.outputs import CHECKPOINTS, EXPORT, ModelDir


def compile_if_needed(model: keras.Model, options: TrainOptions) -> keras.Model:
  """Compiles an uncompiled model with Adam and sparse cross-entropy on logits."""
  if model.optimizer is None or not model._is_compiled:  # pylint: disable=protected-access
    outputs_probabilities = getattr(model.layers[-1], "activation", None) is keras.activations.softmax
    model.compile(
        optimizer=keras.optimizers.Adam(options.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=not outputs_probabilities),
        metrics=["accuracy"],
        steps_per_execution=options.steps_per_execution)
  return model


def backup_frequency(strategy: tf.distribute.Strategy, options: TrainOptions):
  """Steps between backups; tf_keras backs up ParameterServerStrategy only at epoch ends."""
  if isinstance(strategy, tf.distribute.ParameterServerStrategy) and options.backup_every_steps:
    logging.info("Backups at epoch ends: tf_keras cannot back up parameter-server training "
                 "mid-epoch (--backup_every_steps=%d applies to the other strategies)",
                 options.backup_every_steps)
    return "epoch"
  return options.backup_every_steps or "epoch"


def train_with_fit(*, strategy: tf.distribute.Strategy, source: DatasetSource,
                   model_fn: ModelFn, options: TrainOptions, global_batch_size: int,
                   is_chief: bool = True, num_workers: int = 1,
                   started: Optional[float] = None,
                   on_first_step: Optional[Callable[[], None]] = None) -> tuple[keras.Model, dict]:
  """Builds the model in `strategy.scope()`, fits it, evaluates and saves.

  Every task of a multi-worker job calls this; only the chief writes into
  `options.model_dir`.

  Args:
    started: `time.perf_counter()` at process start, for `wall_seconds` (default: now).

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  started = time.perf_counter() if started is None else started
  per_replica_batch_size(global_batch_size, strategy.num_replicas_in_sync)  # Fails early.
  steps_per_epoch = options.steps_per_epoch or source.steps_per_epoch(global_batch_size)
  if options.seed is not None:
    keras.utils.set_random_seed(options.seed)
  model_dir = ModelDir(options.model_dir, is_chief)

  with strategy.scope():
    model = compile_if_needed(model_fn(source.input_shape, source.num_classes), options)
  data = keras.utils.experimental.DatasetCreator(
      source.train_input_fn(global_batch_size, seed=options.seed))

  meter = RunMeter(global_batch_size, on_first_step)
  callbacks = [
      # Backup first: it restores before the meter sees the first step.
      keras.callbacks.BackupAndRestore(
          model_dir.backup, save_freq=backup_frequency(strategy, options), delete_checkpoint=True),
      meter,
      keras.callbacks.ModelCheckpoint(
          os.path.join(model_dir.checkpoints, "ckpt-{epoch:04d}"), save_weights_only=True),
      keras.callbacks.TensorBoard(model_dir.tensorboard, update_freq="epoch"),
  ]
  history = model.fit(data, epochs=options.epochs, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
  model_dir.remove_backup()

  if options.export:  # Every worker saves (MWMS may need them all); only the chief keeps it.
    with model_dir.write_dir(EXPORT) as path:
      model.save(path)
  eval_accuracy, eval_examples = (evaluate.accuracy(model, source.eval_dataset(256))
                                  if is_chief else (None, 0))
  losses = history.history.get("loss") or [None]
  metrics = {
      "strategy": strategy_class_name(strategy),
      "num_workers": num_workers,
      "num_replicas": strategy.num_replicas_in_sync,
      "global_batch_size": global_batch_size,
      "per_replica_batch_size": global_batch_size // strategy.num_replicas_in_sync,
      "steps_per_epoch": steps_per_epoch,
      "epochs_completed": meter.epochs_completed,
      "train_loss": _float(losses[-1]),
      "train_loss_history": [_float(x) for x in losses],
      "train_accuracy": _float((history.history.get("accuracy") or [None])[-1]),
      "eval_accuracy": eval_accuracy,
      "eval_examples": eval_examples,
      "examples_per_sec": meter.examples_per_sec,
      "seconds_to_first_step": meter.first_step_seconds,
      "wall_seconds": time.perf_counter() - started,
      "resumed_from": meter.resumed_from,
      "dataset": source.name,
      "model_dir": model_dir.root,
      "checkpoint_dir": os.path.join(model_dir.root, CHECKPOINTS),
  }
  model_dir.write_metrics(metrics)
  return model, metrics


# The public names of strategies whose classes are aliases.
_PUBLIC_NAMES = {"CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
                 "ParameterServerStrategyV2": "ParameterServerStrategy"}


def strategy_class_name(strategy: tf.distribute.Strategy) -> str:
  name = type(strategy).__name__
  return _PUBLIC_NAMES.get(name, name)


def _float(x) -> Optional[float]:
  return None if x is None else float(x)
