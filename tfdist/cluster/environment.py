"""Where this process runs: TF_CONFIG, else a tfdist Kubernetes pod, else a SLURM step.

Whatever the source, TF_CONFIG ends up in the environment (TensorFlow reads it).
"""

from __future__ import annotations

import os
from typing import MutableMapping, Optional

from tfdist.cluster import kubernetes, slurm, tf_config
from tfdist.cluster.options import ClusterOptions
from tfdist.cluster.tf_config import TaskConfig


def detect(options: ClusterOptions = ClusterOptions(),
           environ: MutableMapping[str, str] = os.environ) -> Optional[TaskConfig]:
  """This process's task and cluster, or None on a single machine.

  Raises:
    ClusterSpecError: a malformed TF_CONFIG, pod or SLURM description (one line).
  """
  if environ.get(tf_config.ENV_VAR) in _DETECTED:  # ours: keep saying where it came from
    return _DETECTED[environ[tf_config.ENV_VAR]]
  config = tf_config.from_environment(environ)
  if config is None and kubernetes.in_pod(environ):
    config = kubernetes.task_config(environ)
    environ[tf_config.ENV_VAR] = tf_config.emit(config.cluster, config.task)
  elif config is None and slurm.in_step(environ):
    config = slurm.task_config(environ, options.slurm_tasks, options.slurm_base_port)
    environ[tf_config.ENV_VAR] = tf_config.emit(config.cluster, config.task)
    # One run id for the whole step (a requeued job resumes the same run).
    environ.setdefault(tf_config.RUN_ID_VAR, "slurm-{}.{}".format(
        environ.get("SLURM_JOB_ID", "0"), environ.get("SLURM_STEP_ID", "0")))
    gpus = slurm.gpus_for_task(environ.get("CUDA_VISIBLE_DEVICES"), environ)
    if gpus is not None:  # Before TensorFlow starts: each task sees only its own GPUs.
      environ["CUDA_VISIBLE_DEVICES"] = gpus
  if config is not None and config.origin != "TF_CONFIG":
    _DETECTED[environ[tf_config.ENV_VAR]] = config
  return config


# The TF_CONFIG values this process wrote for a pod or a SLURM step, and what they came from.
_DETECTED: dict[str, TaskConfig] = {}
