"""The trainer: what every training loop shares, the run's setup and its ending (export, eval,
metrics.json). The loops (fit.py, custom_loop.py) take a Trainer and train its model."""

from __future__ import annotations

import dataclasses
import os
import random
import time
import uuid
from typing import Any, Optional

import tensorflow as tf
import tf_keras as keras
from absl import logging

import tfdist

from tfdist.checkpoint import resume
from tfdist.checkpoint.model_dir import (CHECKPOINTS, EXPORT, METRICS, PARAMS, RUN_RECORD,
                                         ModelDir, ModelDirError, latest_checkpoint, read_json)
from tfdist.checkpoint.resume import log_resume
from tfdist.cluster import EVALUATOR, TaskConfig, network
from tfdist.data import DataSourceError, DatasetSource, InputFn, stream
from tfdist.evaluation.evaluator import CheckpointEvaluator
from tfdist.models import ModelFn, compiling, generations, gradient_compression, row_updates
from tfdist.strategy import collective, kinds
from tfdist.train import communication
from tfdist.train.clock import EpochClock
from tfdist.train.options import (TrainOptions, TrainOptionsError,
                                  no_determinism_under_parameter_servers)


@dataclasses.dataclass
class TrainHistory:
  """What a loop reports about its training."""

  losses: list = dataclasses.field(default_factory=list)       # per epoch
  accuracies: list = dataclasses.field(default_factory=list)   # per epoch
  epochs_completed: int = 0
  examples_per_sec: Optional[float] = None
  cpu_ms_per_step: Optional[float] = None
  step_ms: Optional[float] = None  # wall time per step, saves excluded
  first_step_seconds: Optional[float] = None
  resumed_from: Optional[dict] = None
  wire_bytes_per_step: Optional[dict] = None  # on a link of its own: {"sent", "received"}

  def timed_by(self, clock: EpochClock) -> "TrainHistory":
    """Takes the clock's figures: speed, CPU and wall time per step, bytes on the link."""
    self.examples_per_sec = clock.examples_per_sec
    self.cpu_ms_per_step = clock.cpu_ms_per_step
    self.step_ms = clock.step_ms
    self.wire_bytes_per_step = clock.wire_bytes_per_step
    return self


@dataclasses.dataclass
class Trainer:
  """One task's training run: where it writes, how many steps it takes, where it starts.

  Who writes is the strategy's answer (`should_checkpoint`: the chief); the cluster and
  the run id are the task config's (None: one machine, a fresh local run id).

  Example:
    trainer = Trainer(strategy=strategy, source=source.prepare(), model_fn=resolve("cnn"),
                      options=TrainOptions(), global_batch_size=64)
    model, metrics = fit.train_with_fit(trainer)
  """

  strategy: tf.distribute.Strategy
  source: DatasetSource
  model_fn: ModelFn  # takes what it needs of the data's model arguments (models/registry.py)
  options: TrainOptions
  global_batch_size: int
  task_config: Optional[TaskConfig] = None
  start_time: Optional[float] = None  # time.perf_counter() when the job began (default: now)
  params_yaml: Optional[str] = None  # the resolved config, written as params.yaml by `begin`
  allreduce_dtype: str = "float32"  # `strategy.allreduce_dtype`: gradients' dtype on the wire

  def __post_init__(self):
    self.start_time = time.perf_counter() if self.start_time is None else self.start_time
    self.is_chief = bool(self.strategy.extended.should_checkpoint)
    self.num_workers = (self.task_config.cluster.num_compute_workers
                        if self.task_config and kinds.spans_machines(self.strategy) else 1)
    self.steps_per_epoch = (self.options.steps_per_epoch
                            or self.source.steps_per_epoch(self.global_batch_size))
    self.model_dir = ModelDir(self.options.model_dir, self.is_chief)
    # Every task reads what the model dir holds before the chief records this run.
    record, has_backup = self.model_dir.read_run(), self.model_dir.has_backup()
    self.starting_point = resume.starting_point(record, has_backup, self.model_dir,
                                                self.options.epochs,
                                                self.options.init_checkpoint)
    logging.info("Run start: %s", self.starting_point.reason)
    # The input pipelines each part of the run had (data/stream.py), when this run goes on.
    self._input_layout = ((record or {}).get("input_layout") or []
                          if self.starting_point.epoch or has_backup else [])
    # (Also a barrier: every task has read the model dir before the chief records this run.)
    self.input_seed = collective.agree_on_max(self.strategy,
                                              self._input_seed(record, has_backup))
    if self.options.deterministic:
      self._make_deterministic()
    if self.options.seed is not None:
      generations.set_random_seed(self.options.seed)
    # Before any model is built: layers take the global policy when created.
    generations.set_mixed_precision(self.options.mixed_precision)
    self.run_id = ((self.task_config and self.task_config.run_id)
                   or f"local-{uuid.uuid4().hex[:12]}")

  @property
  def first_step(self) -> int:
    """The steps the starting point has trained (a finished run's epochs; a backup's steps are
    the loop's to read)."""
    return self.starting_point.epoch * self.steps_per_epoch

  def train_input_fn(self, start_step: int) -> InputFn:
    """The train input from the batch the uninterrupted run reads after `start_step` steps,
    also when the run had another number of workers before (the layout is then recorded)."""
    per_worker = kinds.uses_coordinator(self.strategy)
    layout = () if per_worker else stream.layout_at(self._input_layout, start_step,
                                                      self.num_workers)
    if len(layout) > 1 and layout[-1].step == start_step:
      logging.info("Input: this run has %d worker(s), the run it goes on with had %d: the "
                   "examples left of its passes are dealt out first (%s)", self.num_workers,
                   layout[-2].pipelines, stream.describe(layout))
    if stream.to_record(layout) != self._input_layout:  # (run.json has the layout `begin` wrote)
      self._input_layout = stream.to_record(layout)
      self.model_dir.update_run(input_layout=self._input_layout)
    return self.source.train_input_fn(self.global_batch_size, seed=self.input_seed,
                                      per_worker=per_worker, start_step=start_step,
                                      layout=layout)

  def _input_seed(self, record: Optional[dict], has_backup: bool) -> int:
    """`seed`; unseeded, the one the run being resumed or continued drew, else a new one
    (the workers then agree on the largest draw)."""
    if self.options.seed is not None:
      return self.options.seed
    recorded = (record or {}).get("input_seed")
    if self.starting_point.epoch or has_backup:
      if isinstance(recorded, int):
        logging.info("Input order: seed %d, drawn by the run this one goes on with", recorded)
        return recorded
      logging.warning("Input order: no seed recorded in run.json; this part of the run reads "
                      "its examples in a new order")
    drawn = random.SystemRandom().getrandbits(31)
    logging.info("Input order: seed %d drawn (train.seed is unset), recorded in run.json", drawn)
    return drawn

  def _make_deterministic(self) -> None:
    """Raises TrainOptionsError under ParameterServerStrategy."""
    if kinds.uses_coordinator(self.strategy):
      raise no_determinism_under_parameter_servers()
    tf.config.experimental.enable_op_determinism()
    keras.backend.experimental.enable_tf_random_generator()
    logging.info("Deterministic: op determinism on, input in a fixed order (seed %d)",
                 self.input_seed)

  def build_model(self, compile_model: bool = True) -> keras.Model:
    """The model, built by `model_fn` (call in the strategy's scope); compiled by tfdist if it
    came uncompiled and the labels are class ids (`compile_model`: for the loops that train
    by the model's own loss).

    Raises:
      ModelError: an uncompiled model for labels that are not class ids.
      DataSourceError: the labels' keys are not the model's outputs.
    """
    model = self.model_fn(**self.source.model_arguments())
    spec = self.source.example_spec
    if compile_model:
      model = compiling.compile_if_needed(
          model, learning_rate=self.options.learning_rate, class_ids=spec.class_ids,
          steps_per_execution=self.options.steps_per_execution)
    if kinds.uses_coordinator(self.strategy):
      generations.check_whole_variables(model)
    if self.options.deterministic:
      logging.info("Deterministic: %d random layer(s) keep their draws in backups",
                   generations.checkpoint_random_state(model))
    if compile_model:  # else the custom loop's step loss brings its own optimizer
      self.set_up_optimizer(model, model.optimizer)
    if isinstance(spec.labels, dict):
      outputs = sorted(model.output_names)
      if sorted(spec.labels) != outputs:
        raise DataSourceError(
            f"`data.dataset` ({self.source.name}): the label keys {sorted(spec.labels)} are not "
            f"the model's outputs {outputs}; name each output (its layer) as its label's key")
    return model

  def set_up_optimizer(self, model: keras.Model, optimizer: Any) -> None:
    """Sets how `model`'s embeddings are read and updated (`_read_and_update_rows`), and
    the dtype `optimizer` all-reduces its gradients in."""
    self._read_and_update_rows(model, optimizer)
    replicas = self.strategy.num_replicas_in_sync
    if self.allreduce_dtype == "float32":
      return
    if replicas == 1:
      logging.info("All-reduce: nothing to compress (--allreduce_dtype=%s): one replica "
                   "exchanges no gradients", self.allreduce_dtype)
    elif gradient_compression.compress_all_reduce(optimizer, self.allreduce_dtype):
      logging.info("All-reduce: dense gradients summed over %d replicas as %s, half the bytes "
                   "of float32 (sparse gradients keep their dtype)", replicas,
                   self.allreduce_dtype)
    else:
      raise TrainOptionsError(
          f"`strategy.allreduce_dtype` ({self.allreduce_dtype!r}): {type(optimizer).__name__} "
          "is not a Keras optimizer, whose gradient all-reduce tfdist knows; use float32")

  def _read_and_update_rows(self, model: keras.Model, optimizer: Any) -> None:
    """With `sparse_updates` deciding rows: the model's embeddings read only their rows and
    `optimizer` (when it has a row rule) updates only them; says so in one log line."""
    choice = self.options.sparse_updates
    if row_updates.decide(choice, kinds.uses_coordinator(self.strategy)) != row_updates.ROWS:
      return
    embeddings = row_updates.read_rows_only(model)
    rule = row_updates.update_rows_sparsely(optimizer)
    logging.info("Sparse updates: rows (--sparse_updates=%s%s): %s%s", choice,
                 ", parameter servers" if choice == row_updates.AUTO else "",
                 rule or f"{type(optimizer).__name__} has no row rule, its own rule applies",
                 f"; {embeddings} Keras 3 Embedding layer(s) read only their rows"
                 if embeddings else "")

  def begin(self, model: keras.Model) -> None:
    """Loads the starting weights into `model` (built in the strategy's scope), then
    records the run in the model dir. Nothing is written before the weights loaded.
    """
    self._load_starting_weights(model)
    if self.starting_point.done:
      return
    if self.params_yaml is not None:  # `--config=MODEL_DIR/params.yaml` runs it again
      self.model_dir.write_text(PARAMS, self.params_yaml)
    # The sidecar evaluator builds its model with the same precision as the trainers; the
    # nonce tells this start of the run from any earlier one (see check_shared_model_dir).
    self.model_dir.start_run(self.run_id, keep_checkpoints=self.starting_point.epoch > 0 or None,
                             mixed_precision=_policy_name(self.options.mixed_precision),
                             input_seed=self.input_seed, input_layout=self._input_layout,
                             nonce=uuid.uuid4().hex)
    check_shared_model_dir(self.strategy, self.task_config, self.model_dir, self.run_id)

  def _load_starting_weights(self, model: keras.Model) -> None:
    """Raises TrainOptionsError when the checkpoint does not hold this model's weights."""
    weights = self.starting_point.weights
    if weights is None:
      return
    try:
      status = generations.load_weights(model, weights)
      status.assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
      raise TrainOptionsError(
          f"`train.init_checkpoint`: {weights} does not hold this model's weights "
          f"({str(e).splitlines()[0][:160]})") from None
    status.expect_partial()

  def metrics_of_finished_run(self) -> dict:
    """A finished run's metrics, when there was nothing left to train."""
    return read_json(self.model_dir.path(METRICS)) or {}

  def resumed_after_training(self) -> TrainHistory:
    """The history of a run restarted after all its epochs were backed up (nothing to train)."""
    history = TrainHistory(epochs_completed=self.options.epochs,
                           resumed_from={"epoch": self.options.epochs,
                                         "step": self.steps_per_epoch})
    log_resume(**history.resumed_from)
    return history

  def finish(self, model: keras.Model, history: TrainHistory) -> dict:
    """Exports, evaluates (chief) and writes metrics.json; returns the metrics.

    The backup goes last: a run that fails before everything is written restarts
    from it, with its training done, instead of from scratch.
    """
    if self.options.export:  # Every worker saves (MWMS may need them all); the chief keeps it.
      with self.model_dir.write_dir(EXPORT) as path:
        generations.export(model, path)
    figures = self._evaluate() if self.is_chief else {
        "eval_loss": None, "eval_metrics": {}, "eval_accuracy": None, "eval_examples": 0}
    losses = [_float(x) for x in history.losses]
    num_replicas = self.strategy.num_replicas_in_sync
    metrics = {
        "strategy": kinds.class_name(self.strategy),
        "loop": self.options.loop,
        "mixed_precision": _policy_name(self.options.mixed_precision),
        "num_workers": self.num_workers,
        "num_replicas": num_replicas,
        "global_batch_size": self.global_batch_size,
        "per_replica_batch_size": self.global_batch_size // num_replicas,
        "steps_per_epoch": self.steps_per_epoch,
        "epochs_completed": history.epochs_completed,
        "train_loss": losses[-1] if losses else None,
        "train_loss_history": losses,
        "train_accuracy": _float(history.accuracies[-1]) if history.accuracies else None,
        **figures,
        "examples_per_sec": history.examples_per_sec,
        "cpu_ms_per_step": history.cpu_ms_per_step,
        "step_ms": history.step_ms,
        "seconds_to_first_step": history.first_step_seconds,
        "wall_seconds": time.perf_counter() - self.start_time,
        "resumed_from": history.resumed_from,
        "weights_sha256": generations.weights_sha256(model),
        "communication": self.communication(model, history.wire_bytes_per_step),
        "input_seed": self.input_seed,
        "started_from": {"epoch": self.starting_point.epoch,
                         "weights": self.starting_point.weights,
                         "reason": self.starting_point.reason},
        "dataset": self.source.name,
        "model_dir": self.model_dir.root,
        "keras": generations.generation(model),
        "versions": {"tfdist": tfdist.__version__, "tensorflow": tf.__version__,
                     "keras": generations.describe(generations.generation(model))},
        "checkpoint_dir": os.path.join(self.model_dir.root, CHECKPOINTS),
    }
    self.model_dir.write_metrics(metrics)
    self.model_dir.finish_run()
    self.model_dir.remove_backup()
    return metrics

  def communication(self, model: keras.Model, measured: Optional[dict] = None) -> dict:
    """What one worker's step exchanges (communication.py): bytes each way, computed; and
    measured on this task's own link (`tfdist launch --link`), if it has one."""
    coordinated = kinds.uses_coordinator(self.strategy)
    replicas = self.strategy.num_replicas_in_sync
    figures = communication.bytes_per_step(
        kinds.kind(self.strategy), communication.model_weights(model),
        workers=self.num_workers, replicas=replicas,
        # A parameter-server step reads the global batch on one worker.
        worker_batch=self.global_batch_size if coordinated
        else self.global_batch_size // self.num_workers,
        allreduce_bytes=tf.as_dtype(self.allreduce_dtype).size)
    if measured is not None and coordinated:
      # The workers are servers, with no loop to count steps: what is measured here is the
      # chief's traffic, which schedules steps (small), not a worker's.
      figures.update(coordinator_wire_bytes_per_step=measured["sent"],
                     link=os.environ.get(network.LINK_RATE_VAR))
    elif measured is not None:
      figures.update(wire_bytes_per_step=measured["sent"],
                     wire_received_bytes_per_step=measured["received"],
                     link=os.environ.get(network.LINK_RATE_VAR))
    return figures

  def _evaluate(self) -> dict:
    """The final checkpoint's figures on the eval split, as the sidecar evaluator and
    `tfdist evaluate` compute them (a model built outside the strategy: one process)."""
    final = self.model_dir.recorded_checkpoint() or latest_checkpoint(self.model_dir.root)
    evaluator = CheckpointEvaluator(self.source, self.model_fn, self.options.mixed_precision)
    result = evaluator.evaluate(final)
    return {k: result[k] for k in ("eval_loss", "eval_metrics", "eval_accuracy",
                                   "eval_examples")}


def check_shared_model_dir(strategy: tf.distribute.Strategy, task_config: Optional[TaskConfig],
                           model_dir: ModelDir, run_id: str) -> None:
  """Under MultiWorkerMirroredStrategy, fails unless every task sees the chief's run record.

  Every task restores the chief's backup from its own --model_dir: if those are not the
  same shared storage, a restarted job restores the chief alone and replicas diverge.
  The chief has just written run.json with a fresh nonce; after a barrier, every task
  reads it and all compare what they read.

  Raises:
    ModelDirError: naming the first task that does not see the chief's record, and its path.
  """
  if task_config is None or not kinds.spans_processes(strategy):
    return
  cluster = task_config.cluster
  tasks = [t for t in cluster.tasks() if t.type != EVALUATOR]
  collective.gather_across_workers(strategy, [0, 0])  # barrier: the chief has written run.json
  record = model_dir.read_run() or {}
  seen = (int(record["nonce"][:15], 16) if record.get("run_id") == run_id
          and isinstance(record.get("nonce"), str) else 0)
  values = dict(collective.gather_across_workers(strategy, [tasks.index(task_config.task), seen]))
  chief = next(i for i, t in enumerate(tasks) if cluster.is_chief(t))
  blind = [tasks[i] for i in sorted(values) if values[i] != values[chief] or not values[i]]
  if blind:
    where = (model_dir.path(RUN_RECORD) if blind[0] == task_config.task
             else f"its --model_dir (the chief's is {model_dir.root})")
    raise ModelDirError(
        f"--model_dir: task {blind[0]} does not see the chief's run record ({where}); every "
        "task of a multi-worker job needs the same --model_dir on storage they all share")


def _policy_name(policy: str) -> str:
  return "off" if policy == "auto" else policy  # library calls treat `auto` as off


def _float(x) -> Optional[float]:
  return None if x is None else float(x)
