"""A custom training loop, correct under Mirrored, MultiWorkerMirrored and ParameterServer strategies.

As in Orbit, the user owns the inner step (what loss a batch gives) and the
loop owns everything around it: distribution, several steps per tf.function
call, progress, TensorBoard, checkpoints, backups and resume, metrics.json.

Loss scaling is right by construction: each replica divides its summed
per-example loss by the number of examples in the *global* step (all replicas,
a partial last batch counted at its true size) through
`tf.nn.compute_average_loss`, and regularization losses by the number of
replicas (`tf.nn.scale_regularization_loss`). Summing the replicas' gradients
(what the strategy's all-reduce does) then gives the gradient of the mean loss
over the global batch: each replica weighted by its share of the examples.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Optional, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.data import DatasetSource
from tfdist.models import ModelFn, generations, outputs_probabilities
from tfdist.train.callbacks import (EpochCheckpoints, log_resume, save_on_sigterm,
                                    stop_saving_on_sigterm)
from tfdist.train.clock import EpochClock, seconds_until_done
from tfdist.train.options import TrainOptions
from tfdist.train.run import Run, TrainHistory, uses_coordinator
from tfdist.train.saving import SaveSchedule, save_at_low_priority, save_options

# (model, features, labels) -> (per-example losses [batch], predictions [batch, classes])
StepLoss = Callable[[keras.Model, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def cross_entropy_step(model: keras.Model, features: tf.Tensor,
                       labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The default step loss: sparse cross-entropy on the model's logits (or probabilities)."""
  predictions = model(features, training=True)
  losses = keras.losses.sparse_categorical_crossentropy(
      labels, predictions, from_logits=not outputs_probabilities(model))
  return losses, predictions


def replica_loss(per_example_loss: tf.Tensor, model_losses: list,
                 num_replicas: int) -> tf.Tensor:
  """This replica's share of the global mean loss (call in replica context).

  The denominator is the number of examples in the whole step, summed over
  replicas, so a partial last batch is weighted by its true size.
  """
  local = tf.shape(per_example_loss, out_type=tf.int64)[0]
  context = tf.distribute.get_replica_context()
  total = (context.all_reduce(tf.distribute.ReduceOp.SUM, local)
           if num_replicas > 1 and context is not None else local)
  loss = tf.nn.compute_average_loss(per_example_loss,
                                    global_batch_size=tf.maximum(total, tf.constant(1, tf.int64)))
  if model_losses:
    loss += tf.nn.scale_regularization_loss(tf.add_n(model_losses))
  return loss


class CustomLoop:
  """The outer loop: epochs of `steps_per_epoch` steps, `steps_per_loop` per call.

  Example:
    loop = CustomLoop(run, model, keras.optimizers.Adam(1e-3))
    history = loop.train()
  """

  def __init__(self, run: Run, model: keras.Model, optimizer: keras.optimizers.Optimizer,
               step_loss: StepLoss = cross_entropy_step, callbacks: Sequence = ()):
    self.run = run
    self.steps_per_call = run.options.steps_per_loop
    # Epoch-level hooks only: steps run inside tf.function calls.
    self.callbacks = generations.keras_of(generations.generation(model)).callbacks.CallbackList(
        list(callbacks), model=model)
    self.strategy = run.strategy
    self.model = model
    self.optimizer = optimizer
    self.step_loss = step_loss
    self.coordinator = (tf.distribute.experimental.coordinator.ClusterCoordinator(self.strategy)
                        if uses_coordinator(self.strategy) else None)
    with self.strategy.scope():
      self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
      self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
    self._train_steps = tf.function(self._steps)

  # --- The inner loop, traced once. ---

  def _replica_step(self, features, labels):
    with tf.GradientTape() as tape:
      per_example, predictions = self.step_loss(self.model, features, labels)
      loss = replica_loss(per_example, self.model.losses, self.strategy.num_replicas_in_sync)
    gradients = tape.gradient(loss, self.model.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    correct = tf.reduce_sum(tf.cast(tf.equal(
        tf.argmax(predictions, axis=-1, output_type=tf.int64), tf.cast(labels, tf.int64)),
        tf.float32))
    return loss, correct, tf.cast(tf.shape(labels)[0], tf.float32)

  def _steps(self, iterator, num_steps):
    """Runs `num_steps` steps; returns summed (loss, correct, examples) over them."""
    totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
    for _ in tf.range(num_steps):
      features, labels = next(iterator)
      per_replica = self.strategy.run(self._replica_step, args=(features, labels))
      if per_replica is None:  # the step keeps its own figures (e.g. Keras 3 metrics)
        continue
      step = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for v in per_replica]
      totals = tuple(t + s for t, s in zip(totals, step))
    return totals

  def _epoch_begin(self) -> None:
    """Before an epoch's first step (e.g. resetting metrics)."""

  def _epoch_logs(self, totals: list, steps_done: int) -> dict:
    """The epoch's figures from the summed (loss, correct, examples) of its steps."""
    return {"loss": totals[0] / max(steps_done, 1), "accuracy": totals[1] / max(totals[2], 1.0)}

  # --- The outer loop. ---

  def _iterator(self):
    input_fn = self.run.source.train_input_fn(self.run.global_batch_size,
                                              seed=self.run.options.seed,
                                              per_worker=self.coordinator is not None)
    if self.coordinator is None:
      return iter(self.strategy.distribute_datasets_from_function(input_fn))

    def per_worker_dataset():
      return self.strategy.distribute_datasets_from_function(input_fn)

    return iter(self.coordinator.create_per_worker_dataset(per_worker_dataset))

  def _call(self, iterator, num_steps):
    if self.coordinator is None:
      return self._train_steps(iterator, tf.constant(num_steps, tf.int64))
    return self.coordinator.schedule(self._train_steps,
                                     args=(iterator, tf.constant(num_steps, tf.int64)))

  def train(self) -> TrainHistory:
    options, model_dir = self.run.options, self.run.model_dir
    steps_per_epoch = self.run.steps_per_epoch
    backup = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, epoch=self.epoch,
                                 step_in_epoch=self.step_in_epoch)
    history = TrainHistory()
    self.epoch.assign(self.run.start.epoch)  # a finished run trained further
    latest = tf.train.latest_checkpoint(model_dir.backup)
    if latest:
      backup.read(latest).expect_partial()
      if int(self.epoch.numpy()) >= options.epochs:
        return self.run.resumed_after_training()  # Trained; only the outputs are left to write.
      history.resumed_from = {"epoch": int(self.epoch.numpy()) + 1,
                              "step": int(self.step_in_epoch.numpy())}
      log_resume(**history.resumed_from)
    # MWMS: every worker saves; only the chief's backup is in the model dir.
    backup_dir = model_dir.backup if self.run.is_chief else tempfile.mkdtemp(prefix="tfdist-backup-")
    manager = tf.train.CheckpointManager(backup, backup_dir, max_to_keep=1)
    position = {"epoch": int(self.epoch.numpy()), "step": int(self.step_in_epoch.numpy())}
    preemption = save_on_sigterm(self.strategy, manager,
                                 lambda: (position["epoch"] + 1, position["step"]),
                                 before_save=lambda: self.step_in_epoch.assign(position["step"]))
    writer = (tf.summary.create_file_writer(os.path.join(model_dir.tensorboard, "train"))
              if self.run.is_chief else None)
    # Backups every `schedule.backup_steps` steps (counted across epochs) and after the last
    # epoch; under a coordinator, which cannot save mid-epoch, after every epoch.
    by_interval = bool(options.backup_every_steps) and self.coordinator is None
    schedule = SaveSchedule(self.strategy, options.backup_every_steps, options.save_share,
                            steps_per_epoch, background=save_options(self.model))
    save_backup = lambda how: manager.save(options=how)  # noqa: E731
    weights = EpochCheckpoints(self.model, model_dir, schedule)
    iterator = self._iterator()
    clock = EpochClock(self.run.global_batch_size)
    since_backup = 0
    self.callbacks.on_train_begin()
    try:
      for epoch in range(int(self.epoch.numpy()), options.epochs):
        self.epoch.assign(epoch)
        self.callbacks.on_epoch_begin(epoch)
        self._epoch_begin()
        first = int(self.step_in_epoch.numpy())
        clock.start()
        totals, step = [0.0, 0.0, 0.0], first
        pending = []
        while step < steps_per_epoch:
          count = min(self.steps_per_call, steps_per_epoch - step)
          result = self._call(iterator, count)
          if self.coordinator is None:
            totals = [t + float(v) for t, v in zip(totals, result)]
          else:
            pending.append(result)  # RemoteValues, fetched once the epoch's steps are done
          step += count
          since_backup += count
          schedule.steps_done(count)
          if history.first_step_seconds is None:
            history.first_step_seconds = seconds_until_done(self.run.started, result)
          if preemption is not None:  # A SIGTERM anywhere: all save here, and exit.
            position.update(epoch=epoch, step=step)
            preemption.save_checkpoint_if_preempted()
          if by_interval and since_backup >= schedule.backup_steps and step < steps_per_epoch:
            self.step_in_epoch.assign(step)
            schedule.save_backup(save_backup, backup)
            since_backup = 0
        if self.coordinator is not None:
          self.coordinator.join()
          for result in pending:
            totals = [t + float(v) for t, v in zip(totals, result.fetch())]
        steps_done = step - first
        logs = self._epoch_logs(totals, steps_done)
        history.losses.append(logs.get("loss"))
        history.accuracies.append(logs.get("accuracy"))
        history.epochs_completed = epoch + 1
        self.step_in_epoch.assign(0)
        self.epoch.assign(epoch + 1)
        last = epoch + 1 == options.epochs
        weights.epoch_ended(epoch + 1, last=last)
        if by_interval and since_backup >= schedule.backup_steps:
          schedule.save_backup(save_backup, backup)
          since_backup = 0
        elif last or not by_interval:
          save_at_low_priority(save_backup, schedule.background)
        rate = clock.stop(steps_done) or 0.0  # the epoch's saves included
        seconds = clock.last_seconds
        self._write_summaries(writer, epoch + 1, logs, rate)
        if self.run.is_chief:
          figures = "".join(f" - {k}: {v:.4f}" for k, v in logs.items())
          print(f"Epoch {epoch + 1}/{options.epochs}: {steps_done} steps{figures} - "
                f"{seconds:.1f}s ({rate:,.0f} examples/s)", flush=True)
        self.callbacks.on_epoch_end(epoch, dict(logs))
      self.callbacks.on_train_end()
    finally:
      if preemption is not None:
        stop_saving_on_sigterm()
      weights.close()
      backup.sync()
      if not self.run.is_chief:
        shutil.rmtree(backup_dir, ignore_errors=True)
    history.examples_per_sec = clock.examples_per_sec
    history.cpu_ms_per_step = clock.cpu_ms_per_step
    return history

  @staticmethod
  def _write_summaries(writer, epoch: int, logs: dict, rate: float) -> None:
    if writer is not None:
      with writer.as_default():
        for name, value in logs.items():
          tf.summary.scalar(f"epoch_{name}", value, step=epoch)
        tf.summary.scalar("examples_per_sec", rate, step=epoch)
      writer.flush()


def train_with_custom_loop(*, strategy: tf.distribute.Strategy, source: DatasetSource,
                           model_fn: ModelFn, options: TrainOptions, global_batch_size: int,
                           step_loss: StepLoss = cross_entropy_step,
                           optimizer: Optional[keras.optimizers.Optimizer] = None,
                           started: Optional[float] = None,
                           params_yaml: Optional[str] = None,
                           callbacks: Sequence = ()) -> tuple[keras.Model, dict]:
  """`train_with_fit`'s twin with tfdist's custom loop and a user-defined step loss.

  Example (label smoothing as a custom step):
    def smoothed(model, x, y):
      logits = model(x, training=True)
      onehot = tf.one_hot(y, 10)
      return keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                   label_smoothing=0.1), logits
    train_with_custom_loop(strategy=s, source=src, model_fn=resolve("cnn"),
                           options=TrainOptions(loop="custom"), global_batch_size=64,
                           step_loss=smoothed)

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  run = Run(strategy=strategy, source=source, options=options,
            global_batch_size=global_batch_size, started=started, params_yaml=params_yaml)
  with strategy.scope():
    model = model_fn(source.input_shape, source.num_classes)
    optimizer = optimizer or getattr(model, "optimizer", None) or generations.keras_of(
        generations.generation(model)).optimizers.Adam(options.learning_rate)
    optimizer.build(model.trainable_variables)
    run.begin(model)
  if run.start.done:
    return model, run.metrics_of_finished_run()
  logging.info("Custom loop: %d steps per epoch, %d per tf.function call",
               run.steps_per_epoch, options.steps_per_loop)
  history = CustomLoop(run, model, optimizer, step_loss, callbacks).train()
  return model, run.finish(model, history)
