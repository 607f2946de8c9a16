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

from typing import Callable, Optional, Sequence

import tensorflow as tf
import tf_keras as keras
from absl import logging

from tfdist.checkpoint.epoch_checkpoints import EpochCheckpointWriter
from tfdist.checkpoint.resume import log_resume
from tfdist.checkpoint.schedule import SaveSchedule, save_options
from tfdist.models import ModelFn, generations, outputs_probabilities
from tfdist.strategy import kinds
from tfdist.train import keras3_upstream, loop_actions
from tfdist.train.clock import EpochClock, seconds_until_done
from tfdist.train.loop_actions import TrainingPosition
from tfdist.train.trainer import Trainer, TrainHistory

# (model, features, labels) -> (per-example losses [batch], predictions [batch, classes])
StepLoss = Callable[[keras.Model, tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def cross_entropy_step(model: keras.Model, features: tf.Tensor,
                       labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The default step loss: sparse cross-entropy on the model's logits (or probabilities)."""
  predictions = model(features, training=True)
  losses = keras.losses.sparse_categorical_crossentropy(
      labels, predictions, from_logits=not outputs_probabilities(model))
  return losses, predictions


def replica_loss(per_example_loss: tf.Tensor, model_losses: list, num_replicas: int,
                 sample_weight: Optional[tf.Tensor] = None) -> tf.Tensor:
  """This replica's share of the global mean loss (call in replica context), each example's
  loss weighted by its `sample_weight` if given.

  The denominator is the number of examples in the whole step, summed over
  replicas, so a partial last batch is weighted by its true size.
  """
  local = tf.shape(per_example_loss, out_type=tf.int64)[0]
  context = tf.distribute.get_replica_context()
  total = (context.all_reduce(tf.distribute.ReduceOp.SUM, local)
           if num_replicas > 1 and context is not None else local)
  loss = tf.nn.compute_average_loss(per_example_loss, sample_weight=sample_weight,
                                    global_batch_size=tf.maximum(total, tf.constant(1, tf.int64)))
  if model_losses:
    loss += tf.nn.scale_regularization_loss(tf.add_n(model_losses))
  return loss


class CustomLoop:
  """The outer loop: epochs of `steps_per_epoch` steps, `steps_per_execution` per call, with
  the run's saves and reports as actions after each call (see loop_actions.py).

  Example:
    loop = CustomLoop(trainer, model, keras.optimizers.Adam(1e-3))
    history = loop.train()
  """

  def __init__(self, trainer: Trainer, model: keras.Model,
               optimizer: Optional[keras.optimizers.Optimizer],
               step_loss: Optional[StepLoss] = cross_entropy_step, callbacks: Sequence = ()):
    self.trainer = trainer
    self.steps_per_call = trainer.options.steps_per_execution
    # Epoch-level hooks only: steps run inside tf.function calls.
    self.callbacks = generations.keras_of(generations.generation(model)).callbacks.CallbackList(
        list(callbacks), model=model)
    self.strategy = trainer.strategy
    self.model = model
    self.optimizer = optimizer
    self.step_loss = step_loss
    self.coordinator = (tf.distribute.experimental.coordinator.ClusterCoordinator(self.strategy)
                        if kinds.uses_coordinator(self.strategy) else None)
    with self.strategy.scope():
      # The run's one step counter (backed up; the epoch is derived from it).
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self._train_steps = tf.function(self._steps)

  # --- The inner loop, traced once. ---

  def _replica_step(self, element):
    features, labels, *weight = element
    with tf.GradientTape() as tape:
      per_example, predictions = self.step_loss(self.model, features, labels)
      loss = replica_loss(per_example, self.model.losses, self.strategy.num_replicas_in_sync,
                          sample_weight=weight[0] if weight else None)
    gradients = tape.gradient(loss, self.model.trainable_variables)
    self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables))
    examples = tf.cast(tf.shape(per_example)[0], tf.float32)
    if not self.trainer.source.example_spec.class_ids:
      return loss, tf.constant(0.0), examples
    correct = tf.reduce_sum(tf.cast(tf.equal(
        tf.argmax(predictions, axis=-1, output_type=tf.int64), tf.cast(labels, tf.int64)),
        tf.float32))
    return loss, correct, examples

  def _steps(self, iterator, num_steps):
    """Runs `num_steps` steps; returns summed (loss, correct, examples) over them."""
    totals = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
    for _ in tf.range(num_steps):
      per_replica = self.strategy.run(self._replica_step, args=(next(iterator),))
      if per_replica is None:  # the step keeps its own figures (the model's metrics)
        continue
      step = [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
              for v in per_replica]
      totals = tuple(t + s for t, s in zip(totals, step))
    return totals

  def _epoch_begin(self) -> None:
    """Before an epoch's first step (e.g. resetting metrics)."""

  def _epoch_logs(self, totals: list, steps_done: int) -> dict:
    """The epoch's figures from the summed (loss, correct, examples) of its steps (accuracy
    where the labels are class ids)."""
    logs = {"loss": totals[0] / max(steps_done, 1)}
    if self.trainer.source.example_spec.class_ids:
      logs["accuracy"] = totals[1] / max(totals[2], 1.0)
    return logs

  # --- The outer loop. ---

  def _iterator(self, start_step: int):
    """The input from the batch the uninterrupted run reads after `start_step` steps."""
    input_fn = self.trainer.train_input_fn(start_step)
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
    trainer, options = self.trainer, self.trainer.options
    history = TrainHistory()
    backup = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer, step=self.step)
    position = self._restore(backup, history)
    if position.epoch >= options.epochs:
      return trainer.resumed_after_training()  # Trained; only the outputs are left to write.
    schedule = SaveSchedule(self.strategy, options.backup_every_steps, options.save_share,
                            trainer.steps_per_epoch, background=save_options(self.model))
    clock = EpochClock(trainer.global_batch_size)
    actions = self._actions(backup, position, schedule, clock)
    iterator = self._iterator(position.step)
    self.callbacks.on_train_begin()
    try:
      while position.epoch < options.epochs:
        self._epoch(iterator, position, actions, history)
      self.callbacks.on_train_end()
    finally:
      loop_actions.close_all(actions)
    return history.timed_by(clock)

  def _restore(self, backup: tf.train.Checkpoint, history: TrainHistory) -> TrainingPosition:
    """Where training starts: the backup's step if there is one, else the first step after
    the epochs the starting point has (a finished run trained further)."""
    steps_per_epoch = self.trainer.steps_per_epoch
    position = TrainingPosition(self.step, steps_per_epoch, start=self.trainer.first_step)
    if loop_actions.read_latest_backup(backup, self.trainer.model_dir.backup):
      position.load()
      if position.epoch < self.trainer.options.epochs:
        history.resumed_from = position.describe()
        log_resume(**history.resumed_from)
    return position

  def _actions(self, backup: tf.train.Checkpoint, position: TrainingPosition,
               schedule: SaveSchedule, clock: EpochClock) -> list[loop_actions.LoopAction]:
    """In the order they run: the end of the epoch's steps on the clock, SIGTERM save, epoch
    checkpoint, backup, then the report (its epoch time includes the saves)."""
    trainer, options = self.trainer, self.trainer.options
    by_interval = bool(options.backup_every_steps) and self.coordinator is None
    backups = loop_actions.Backups(backup, trainer.model_dir, schedule, by_interval,
                                   options.epochs)
    return [
        loop_actions.StepsEnded(clock),
        loop_actions.ScheduleClock(schedule),
        loop_actions.PreemptionSave(self.strategy, backups.manager, position),
        loop_actions.EpochCheckpoints(
            EpochCheckpointWriter(self.model, trainer.model_dir, schedule), options.epochs),
        backups,
        loop_actions.EpochReport(clock, options.epochs,
                                 trainer.model_dir.tensorboard if trainer.is_chief else None,
                                 self.callbacks),
    ]

  def _epoch(self, iterator, position: TrainingPosition, actions, history: TrainHistory) -> None:
    """Runs the rest of the epoch under way: calls of `steps_per_call` steps, the actions
    after each, the epoch's figures, and the actions after the epoch."""
    self._epoch_begin()
    loop_actions.run_before_epoch(actions, position)
    first, results = position.step_in_epoch, []
    while True:
      count = min(self.steps_per_call, position.steps_per_epoch - position.step_in_epoch)
      result = self._call(iterator, count)
      # RemoteValues under a coordinator: fetched once the epoch's steps are done.
      results.append(result if self.coordinator else [float(v) for v in result])
      position.advance(count)
      if history.first_step_seconds is None:
        history.first_step_seconds = seconds_until_done(self.trainer.start_time, result)
      loop_actions.run_after_inner_loop(actions, position, count)
      if position.step_in_epoch == 0:
        break
    if self.coordinator is not None:
      self.coordinator.join()
      results = [[float(v) for v in r.fetch()] for r in results]
    logs = self._epoch_logs([sum(column) for column in zip(*results)],
                            position.steps_per_epoch - first)
    history.losses.append(logs.get("loss"))
    history.accuracies.append(logs.get("accuracy"))
    history.epochs_completed = position.epoch
    loop_actions.run_after_epoch(actions, position, logs)


class ModelStepLoop(CustomLoop):
  """The model's own `train_step` on each replica, `steps_per_execution` (the model's) steps per
  call: its compiled loss (loss scaling across replicas as `train_step` does it), optimizer
  and metrics, whatever they are. The custom loop without a step loss, and `fit` for Keras 3
  models (whose own `fit` fails under multi-worker strategies: keras3_upstream.py), with the
  same saves, progress lines and TensorBoard figures as the custom loop's.

  Example:
    history = ModelStepLoop(trainer, compiled_model).train()
  """

  def __init__(self, trainer: Trainer, model, callbacks: Sequence = ()):
    super().__init__(trainer, model, model.optimizer, step_loss=None, callbacks=callbacks)
    self.steps_per_call = max(1, steps_per_execution(model))

  def _replica_step(self, element):
    self.model.train_step(element)
    return None  # no sums to all-reduce each step: the model's metrics say it all

  def _epoch_begin(self) -> None:
    self.model.reset_metrics()

  def _epoch_logs(self, totals: list, steps_done: int) -> dict:
    if generations.generation(self.model) == generations.KERAS3:
      results = self.model.get_metrics_result()
    else:
      results = {metric.name: metric.result() for metric in self.model.metrics}
    return {name: float(value) for name, value in results.items()}


def steps_per_execution(model) -> int:
  """The steps per `fit` call the model was compiled with (by tfdist or by the user)."""
  value = getattr(model, "_steps_per_execution", None)  # tf_keras keeps it as a variable
  if value is None:
    return max(1, int(getattr(model, "steps_per_execution", 1) or 1))  # Keras 3: an int
  return max(1, int(value.numpy()))


def build_step_state(trainer: Trainer, model) -> None:
  """Builds what a compiled model's `train_step` creates on its first call (metrics, the
  optimizer's state), in the strategy's scope: under ParameterServerStrategy no variable may
  be made by a scheduled step. Keras 3 needs its compiled state built from the data's shapes
  (keras3_upstream.py)."""
  if generations.generation(model) == generations.KERAS3:
    keras3_upstream.build_compiled_state(
        model, trainer.source.example_spec.element(),
        trainer.global_batch_size // trainer.strategy.num_replicas_in_sync)
  elif getattr(model.optimizer, "build", None) is not None:
    model.optimizer.build(model.trainable_variables)


def train_with_custom_loop(trainer: Trainer, *, step_loss: Optional[StepLoss] = None,
                           optimizer: Optional[keras.optimizers.Optimizer] = None,
                           callbacks: Sequence = ()) -> tuple[keras.Model, dict]:
  """Builds the model in the strategy's scope and trains it with tfdist's custom loop: by
  `step_loss`, or without one by the model's compiled loss and metrics (its own
  `train_step`; tfdist compiles an uncompiled classifier); then exports, evaluates and writes
  metrics.json (`trainer.finish`).

  Example (label smoothing as a custom step):
    def smoothed(model, x, y):
      logits = model(x, training=True)
      onehot = tf.one_hot(y, 10)
      return keras.losses.categorical_crossentropy(onehot, logits, from_logits=True,
                                                   label_smoothing=0.1), logits
    train_with_custom_loop(trainer, step_loss=smoothed)

  Returns:
    (the trained model, the metrics written to metrics.json).
  """
  options, strategy = trainer.options, trainer.strategy
  with strategy.scope():
    model = trainer.build_model(compile_model=step_loss is None)
    if step_loss is None:
      build_step_state(trainer, model)
    else:
      optimizer = optimizer or getattr(model, "optimizer", None) or generations.keras_of(
          generations.generation(model)).optimizers.Adam(options.learning_rate)
      optimizer.build(model.trainable_variables)
      trainer.set_up_optimizer(model, optimizer)
    trainer.begin(model)
  if trainer.starting_point.done:
    return model, trainer.metrics_of_finished_run()
  if step_loss is None:
    loop = ModelStepLoop(trainer, model, callbacks)
  else:
    loop = CustomLoop(trainer, model, optimizer, step_loss, callbacks)
  logging.info("Custom loop (%s): %d steps per epoch, %d per tf.function call",
               "your step loss" if step_loss else "the model's compiled loss",
               trainer.steps_per_epoch, loop.steps_per_call)
  return model, trainer.finish(model, loop.train())
