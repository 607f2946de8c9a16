"""Which strategy to build, and why: pure decision logic, no TensorFlow."""

from __future__ import annotations

import dataclasses
from typing import Optional

from tfdist.cluster import CHIEF, EVALUATOR, PS, WORKER, TaskConfig
from tfdist.strategy.options import (MIRRORED, MULTI_WORKER_MIRRORED, ONE_DEVICE,
                                     PARAMETER_SERVER, StrategyError, StrategyOptions)

CLASS_NAMES = {
    ONE_DEVICE: "OneDeviceStrategy",
    MIRRORED: "MirroredStrategy",
    MULTI_WORKER_MIRRORED: "MultiWorkerMirroredStrategy",
    PARAMETER_SERVER: "ParameterServerStrategy",
}

# What a process does under its strategy.
ROLE_TRAINER = "trainer"      # builds the strategy and trains (every MWMS task, the PSS chief)
ROLE_SERVER = "server"        # a PSS worker or ps: runs a tf.distribute.Server until the job ends
ROLE_EVALUATOR = "evaluator"  # the sidecar evaluator, outside the training cluster


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
  name: str
  reason: str
  role: str = ROLE_TRAINER

  @property
  def class_name(self) -> str:
    return CLASS_NAMES[self.name]

  def log_line(self) -> str:
    if self.role == ROLE_SERVER:
      return f"Server for {self.class_name} training ({self.reason})"
    if self.role == ROLE_EVALUATOR:
      return f"Sidecar evaluator for {self.class_name} training ({self.reason})"
    return f"Strategy: {self.class_name} ({self.reason})"


def _origin(config: TaskConfig) -> str:
  """'TF_CONFIG has' 2 workers; 'SLURM step: 2 tasks on 1 node ->' 2 workers."""
  return f"{config.origin} has" if config.origin == "TF_CONFIG" else f"{config.origin} ->"


def _describe(config: TaskConfig) -> str:
  jobs = config.cluster.jobs
  parts = [f"{len(jobs[t])} {t}{'s' if len(jobs[t]) != 1 and t != PS else ''}"
           for t in jobs]
  return ", ".join(parts)


def choose(options: StrategyOptions, config: Optional[TaskConfig], num_gpus: int) -> StrategyChoice:
  """Decides the strategy from the options and the cluster this process is in.

  Rules for `auto`: no cluster, or a one-task cluster -> MirroredStrategy over the
  local devices; a cluster of chief/workers only -> MultiWorkerMirroredStrategy;
  any `ps` task -> ParameterServerStrategy. The role (trainer, server, evaluator)
  follows from the task whatever the name: an evaluator never trains.

  Raises:
    StrategyError: an explicit name that cannot run on this cluster.
  """
  name, reason = _strategy(options, config, num_gpus)
  if name == PARAMETER_SERVER and CHIEF not in config.cluster.jobs:
    raise StrategyError(
        "cluster.chief: parameter-server training needs a `chief` task to coordinate the workers")
  if name == PARAMETER_SERVER and options.allreduce_dtype != "float32":
    raise StrategyError(
        f"`strategy.allreduce_dtype` ({options.allreduce_dtype!r}): ParameterServerStrategy "
        "all-reduces nothing (workers push gradients to the ps tasks in the variables' dtype); "
        "use float32, or MultiWorkerMirroredStrategy")
  if config is None:
    return StrategyChoice(name, reason)
  return StrategyChoice(name, f"{reason}; this is task {config.task}", _role(name, config))


def _role(name: str, config: TaskConfig) -> str:
  if config.task.type == EVALUATOR:
    return ROLE_EVALUATOR
  if name == PARAMETER_SERVER and config.task.type in (WORKER, PS):
    return ROLE_SERVER
  return ROLE_TRAINER


def _strategy(options: StrategyOptions, config: Optional[TaskConfig],
              num_gpus: int) -> tuple[str, str]:
  """(strategy name, why) for the training cluster; the evaluator gets the trainers' answer."""
  devices = (f"{num_gpus} GPU{'s' if num_gpus != 1 else ''}" if num_gpus else
             f"{options.cpu_replicas} logical CPUs" if options.cpu_replicas > 1 else "the CPU")
  multi_task = config is not None and (config.cluster.num_workers > 1 or config.cluster.num_ps > 0)
  has_ps = config is not None and config.cluster.num_ps > 0
  name = options.name
  if name == "auto":
    if not multi_task:
      source = "no TF_CONFIG" if config is None else f"{_origin(config)} a single training task"
      return MIRRORED, f"{source} -> MirroredStrategy over {devices}"
    name = PARAMETER_SERVER if has_ps else MULTI_WORKER_MIRRORED
    return name, (f"{_origin(config)} {_describe(config)} -> " +
                  ("ps tasks present" if has_ps else "no ps") + f" -> {CLASS_NAMES[name]}")
  reason = f"--strategy={name}"
  if name in (ONE_DEVICE, MIRRORED) and multi_task:
    raise StrategyError(
        f"`strategy.name` ({name!r}) trains on one machine, but {config.origin} describes "
        f"{_describe(config)}; use auto, multi_worker_mirrored or parameter_server")
  if name == MULTI_WORKER_MIRRORED and has_ps:
    raise StrategyError(
        "`strategy.name` ('multi_worker_mirrored') cannot use the cluster's ps tasks; "
        "use parameter_server or remove ps from the cluster")
  if name == PARAMETER_SERVER and not has_ps:
    raise StrategyError(
        "`strategy.name` ('parameter_server') needs a cluster with `ps` and `worker` tasks "
        "(TF_CONFIG or --cluster_spec)")
  if name in (ONE_DEVICE, MIRRORED):
    reason += f" over {'one device' if name == ONE_DEVICE else devices}"
  return name, reason
