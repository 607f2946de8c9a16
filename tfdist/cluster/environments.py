"""Where this process runs, as one interface: TF_CONFIG, a tfdist Kubernetes pod, a SLURM step,
or one machine. They are tried in that order (Lightning's ClusterEnvironment is the model).

Each environment says whether it applies, this task's place in the cluster, the run id every
task of the job shares, and the device settings a task needs before TensorFlow starts.
`detect` applies the first that fits, once per process: it sets TF_CONFIG (TensorFlow reads it)
and returns the TaskConfig that is passed down from then on.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
from typing import MutableMapping, Optional

from tfdist.cluster import kubernetes_pod, slurm_step, tf_config
from tfdist.cluster.options import ClusterOptions
from tfdist.cluster.tf_config import RUN_ID_VAR, TaskConfig


class ClusterEnvironment(abc.ABC):
  """One source of a task's cluster."""

  writes_tf_config = True  # detect sets TF_CONFIG from the task config (TF_CONFIG itself: kept)

  @abc.abstractmethod
  def applies(self, environ: MutableMapping[str, str]) -> bool:
    """Whether this process runs in this kind of environment."""

  @abc.abstractmethod
  def task_config(self, environ: MutableMapping[str, str],
                  options: ClusterOptions) -> Optional[TaskConfig]:
    """This task's cluster and place in it (None: one machine).

    Raises:
      ClusterSpecError: a malformed description, naming the variable.
    """

  def run_id(self, environ: MutableMapping[str, str], config: TaskConfig) -> str:
    """What every task of the job calls it: TFDIST_RUN_ID, else a digest of the cluster (the
    same on every task, the evaluator's included)."""
    if environ.get(RUN_ID_VAR, "").strip():
      return environ[RUN_ID_VAR].strip()
    canonical = json.dumps(config.cluster.as_dict(), sort_keys=True)
    return "cluster-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

  def device_environment(self, environ: MutableMapping[str, str]) -> dict[str, str]:
    """Variables to set before TensorFlow starts (e.g. which GPUs this task sees)."""
    del environ
    return {}


class TfConfigEnvironment(ClusterEnvironment):
  """TF_CONFIG, set by the user, `tfdist launch`, `--cluster_spec` or a job system."""

  writes_tf_config = False  # as given, with its `rpc_layer` and `environment`

  def applies(self, environ):
    return bool(environ.get(tf_config.ENV_VAR, "").strip())

  def task_config(self, environ, options):
    return tf_config.from_environment(environ)


class KubernetesPodEnvironment(ClusterEnvironment):
  """A pod of an Indexed Job from `tfdist cluster k8s` (see kubernetes_pod.py)."""

  def applies(self, environ):
    return kubernetes_pod.in_pod(environ)

  def task_config(self, environ, options):
    return kubernetes_pod.task_config(environ)


class SlurmStepEnvironment(ClusterEnvironment):
  """`srun tfdist train` inside a SLURM job step (see slurm_step.py)."""

  def applies(self, environ):
    return slurm_step.in_step(environ)

  def task_config(self, environ, options):
    return slurm_step.task_config(environ, options.slurm_tasks, options.slurm_base_port)

  def run_id(self, environ, config):
    # One id for the whole step: a requeued job resumes the same run.
    return environ.get(RUN_ID_VAR, "").strip() or "slurm-{}.{}".format(
        environ.get("SLURM_JOB_ID", "0"), environ.get("SLURM_STEP_ID", "0"))

  def device_environment(self, environ):
    gpus = slurm_step.gpus_for_task(environ.get("CUDA_VISIBLE_DEVICES"), environ)
    return {} if gpus is None else {"CUDA_VISIBLE_DEVICES": gpus}


class LocalEnvironment(ClusterEnvironment):
  """One machine, no cluster: always applies, last."""

  def applies(self, environ):
    return True

  def task_config(self, environ, options):
    return None


ENVIRONMENTS: tuple[ClusterEnvironment, ...] = (
    TfConfigEnvironment(), KubernetesPodEnvironment(), SlurmStepEnvironment(), LocalEnvironment())


def find(environ: MutableMapping[str, str]) -> ClusterEnvironment:
  """The first environment of ENVIRONMENTS that applies."""
  return next(env for env in ENVIRONMENTS if env.applies(environ))


def detect(options: ClusterOptions = ClusterOptions(),
           environ: MutableMapping[str, str] = os.environ) -> Optional[TaskConfig]:
  """This process's task and cluster, or None on one machine. Call once per process: it sets
  TF_CONFIG (and a SLURM task's GPUs) for TensorFlow, which must not have started yet.

  Example:
    task_config = detect(ClusterOptions(slurm_tasks="chief:1,worker:2"))

  Raises:
    ClusterSpecError: a malformed TF_CONFIG, pod or SLURM description (one line).
  """
  environment = find(environ)
  config = environment.task_config(environ, options)
  if config is None:
    return None
  config = dataclasses.replace(config, run_id=environment.run_id(environ, config))
  if environment.writes_tf_config:
    environ[tf_config.ENV_VAR] = tf_config.emit(config.cluster, config.task)
  environ.update(environment.device_environment(environ))
  return config
