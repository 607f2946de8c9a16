"""`tfdist.run`: one call, unchanged on every task of any cluster.

It reads where it runs (TF_CONFIG, a Kubernetes pod, a SLURM step, or nothing:
one machine), and becomes what this task is: a parameter-server or worker
server, a sidecar evaluator, or a trainer under the right strategy. As in Orbit,
the trainer's outer loop is tfdist's; the pieces a user brings are small: the
model function, the data function, optionally the step loss of a custom loop.

    import tfdist

    def my_model(input_shape, num_classes): ...          # a Keras model, compiled or not
    def my_data(split): ...                              # a tf.data.Dataset of (features, label)

    metrics = tfdist.run({"train": {"epochs": 5, "model_dir": "/tmp/run"}},
                         model_fn=my_model, data_fn=my_data)
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Mapping, Optional, Sequence, Union

from absl import logging

import tfdist
from tfdist import config as config_lib
from tfdist.checkpoint import ModelDir, resume
from tfdist.checkpoint.model_dir import check_model_dir
from tfdist.cluster import EXIT_OK, TaskConfig, environments
from tfdist.data import load_source, per_replica_batch_size
from tfdist.models import BUILTIN_MODELS, ModelFn, generations, resolve, with_known_arguments
from tfdist.strategy import ROLE_EVALUATOR, ROLE_SERVER, devices, factory, parameter_server
from tfdist.strategy.options import PARAMETER_SERVER
from tfdist.strategy.startup import StartupWatchdog
from tfdist.train import precision
from tfdist.train.options import no_determinism_under_parameter_servers

Config = Union[config_lib.ExperimentConfig, Mapping, str, None]
# `Job(task_config=DETECT)`: find where this process runs (environments.detect).
DETECT = object()


def run(config: Config = None, *, model_fn: Optional[ModelFn] = None,
        data_fn: Optional[Callable] = None, step_loss: Optional[Callable] = None,
        optimizer=None, callbacks: Sequence = ()) -> Optional[dict]:
  """Runs this task's part of the job; returns the trainer's metrics (metrics.json).

  Args:
    config: an ExperimentConfig, {section: {key: value}} over the defaults, a YAML
      file's path, or None (the defaults). See tfdist/config.py.
    model_fn: a function returning a Keras model, compiled or not, taking what it needs of
      `input_shape`, `num_classes`, `features_spec`, `labels_spec` (models/registry.py;
      default: the config's `model.name`).
    data_fn: `fn(split)` or `fn(split, input_context)` returning a tf.data.Dataset of
      unbatched (features, label[, sample_weight]) (default: the config's `data.dataset`;
      see data/examples.py).
    step_loss: with `train.loop=custom`, `fn(model, features, labels)` returning
      (per-example losses, predictions) (default: the model's compiled loss and metrics).
    optimizer: with `train.loop=custom`, the optimizer (default: the model's, else Adam).
    callbacks: Keras callbacks of the model's Keras, run by `fit` (tf_keras: all hooks;
      Keras 3 and the custom loop: the train and epoch hooks, with the epoch's figures).

  Returns:
    On trainers, the run's metrics (the same on every trainer of a synchronous job);
    None on a sidecar evaluator. A parameter-server or worker server serves until
    the run is finished and then ends the process (TensorFlow's server cannot stop).

  Raises:
    The layers' one-line errors (ConfigError, ClusterSpecError, DataSourceError,
    ModelError, StrategyError, TrainOptionsError, CheckpointError, BatchError), before
    any cluster start-up; a data function's own, once the strategy is built (see
    `Job.prepare`).
  """
  return Job(config, model_fn=model_fn, data_fn=data_fn, step_loss=step_loss,
             optimizer=optimizer, callbacks=callbacks).run()


class Job:
  """This task's part of a job, checked when built, run by `run()`.

  Building it does every check that needs no peer and no TensorFlow runtime (config,
  cluster, model dir, model module, dataset, batch split), so that bad input fails
  before start-up; `prepare()` then builds the strategy and reads the data first.

  Args:
    task_config: where this task runs, if the caller detected it already (the CLI does,
      once); by default `environments.detect` finds it (TF_CONFIG, a pod, a SLURM step).

  Example (what the CLI does: quiet until the checks are done):
    job = tfdist.Job({"train": {"epochs": 3}})
    job.prepare()
    metrics = job.run()
  """

  def __init__(self, config: Config = None, *, model_fn: Optional[ModelFn] = None,
               data_fn: Optional[Callable] = None, step_loss: Optional[Callable] = None,
               optimizer=None, callbacks: Sequence = (), task_config=DETECT):
    self.start_time = time.perf_counter()
    self.config = config = config_lib.as_config(config)
    if (step_loss is not None or optimizer is not None) and config.train.loop != "custom":
      raise config_lib.ConfigError(
          f"`{'step_loss' if step_loss is not None else 'optimizer'}` is for the custom loop; "
          "set train.loop=custom (a model for fit brings its own by being compiled)")
    self.loop_extras = {k: v for k, v in (("step_loss", step_loss), ("optimizer", optimizer))
                        if v is not None}
    self.callbacks = list(callbacks)
    self.task_config: Optional[TaskConfig] = (
        environments.detect(config.cluster) if task_config is DETECT else task_config)
    check_model_dir(config.train.model_dir)
    if config.train.init_checkpoint:  # a model dir's or checkpoint dir's: its checkpoint
      self.config = config = dataclasses.replace(config, train=dataclasses.replace(
          config.train, init_checkpoint=resume.resolve_checkpoint(config.train.init_checkpoint)))
    self.choice = factory.choose_for_this_machine(config.strategy, self.task_config)
    if config.train.deterministic and self.choice.name == PARAMETER_SERVER:
      raise no_determinism_under_parameter_servers()  # on every task, before start-up
    devices.configure_host(cpu_replicas=config.strategy.cpu_replicas,
                           intra_op_threads=config.strategy.intra_op_threads,
                           inter_op_threads=config.strategy.inter_op_threads)
    self.builtin_model = model_fn is None and config.model.name in BUILTIN_MODELS
    self.prepared = False
    if self.choice.role != ROLE_SERVER:  # Servers run no Python model or input.
      self.model_fn = (with_known_arguments(model_fn) if model_fn is not None
                       else resolve(config.model.name))
      self.source = load_source(config.data, data_fn)
      per_replica_batch_size(config.data.global_batch_size, factory.expected_replicas(
          self.choice, config.strategy, self.task_config))

  @property
  def is_chief(self) -> bool:
    """This task writes the run's outputs."""
    return self.task_config is None or self.task_config.is_chief

  @property
  def run_id(self) -> Optional[str]:
    """What every task of this job calls the run (None on one machine: the trainer draws one)."""
    return self.task_config.run_id if self.task_config else None

  def prepare(self) -> None:
    """A trainer builds its strategy (a multi-worker job's rendezvous); then the data is
    read for the first time, which TensorFlow allows only once the strategy has set up
    its runtime. Logs nothing: a user error found here is still the only line printed.
    """
    if self.choice.role == ROLE_SERVER or self.prepared:
      return
    if self.choice.role != ROLE_EVALUATOR:
      self.strategy = self._make_strategy()
    self.source.prepare()
    self.model_fn.check(**self.source.model_arguments())  # still quiet: the only line printed
    self.prepared = True

  def run(self) -> Optional[dict]:
    """Serves, evaluates or trains, as this task's role is."""
    config = self.config
    if self.choice.role == ROLE_SERVER:
      self._serve()
    self.prepare()
    logging.info(self.choice.log_line())
    if self.choice.role == ROLE_EVALUATOR:
      # pylint: disable-next=import-outside-toplevel
      from tfdist.evaluation import run_sidecar_evaluator
      run_sidecar_evaluator(source=self.source, model_fn=self.model_fn,
                            model_dir=config.train.model_dir, run_id=self.run_id)
      return None
    policy, reason = precision.choose_policy(
        config.train.mixed_precision, builtin_model=self.builtin_model,
        gpu=devices.num_gpus() > 0, native_bfloat16=precision.cpu_has_native_bfloat16())
    logging.info("Mixed precision: %s (%s)", policy, reason)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                   mixed_precision=policy))
    params_yaml = config_lib.to_yaml(
        config, header=f"{versions_line()}\n# Run again: tfdist train --config=<this file>")
    # pylint: disable-next=import-outside-toplevel
    from tfdist.train import Trainer, train_with_custom_loop, train_with_fit
    trainer = Trainer(strategy=self.strategy, source=self.source, model_fn=self.model_fn,
                      options=config.train, global_batch_size=config.data.global_batch_size,
                      task_config=self.task_config, start_time=self.start_time,
                      params_yaml=params_yaml, allreduce_dtype=config.strategy.allreduce_dtype)
    if config.train.loop == "custom":
      _, metrics = train_with_custom_loop(trainer, callbacks=self.callbacks, **self.loop_extras)
    else:
      _, metrics = train_with_fit(trainer, callbacks=self.callbacks)
    return metrics

  def _serve(self) -> None:
    logging.info(self.choice.log_line())
    # Serves until the chief records the run finished, so that job systems see every task end.
    model_dir = ModelDir(self.config.train.model_dir, is_chief=False)
    parameter_server.serve(self.task_config,
                           stop_when=lambda: model_dir.run_finished(self.run_id))
    logging.flush()
    os._exit(EXIT_OK)  # pylint: disable=protected-access  (TF's server has no clean shutdown)

  def _make_strategy(self):
    options, task_config = self.config.strategy, self.task_config
    if task_config is not None and len(list(task_config.cluster.tasks())) > 1:
      # Creating a multi-worker strategy is the rendezvous: it returns once every peer is up.
      # The deadline covers only that; building, restoring and tracing may take what they take.
      with StartupWatchdog(task_config, options.startup_timeout_s):
        return factory.make_strategy(options, task_config, self.choice, log=False)
    return factory.make_strategy(options, task_config, self.choice, log=False)


def versions_line() -> str:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  return (f"# tfdist {tfdist.__version__}, TensorFlow {tf.__version__}, "
          f"tf_keras {tf_keras.__version__}, {generations.keras3_version()}")
