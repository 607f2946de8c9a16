"""A Kubernetes pod of an Indexed Job as a task: its TF_CONFIG, computed when it starts.

The manifests of `tfdist cluster k8s` give every pod the same cluster (its tasks'
stable DNS names, `<job>-<index>.<service>`, and ports) in `TFDIST_K8S_CLUSTER`,
shaped as a spec file, and its task type in `TFDIST_K8S_TASK_TYPE`; Kubernetes
gives each pod of an Indexed Job its index in `JOB_COMPLETION_INDEX`.
"""

from __future__ import annotations

import json
from typing import Mapping

from tfdist.cluster import files
from tfdist.cluster.spec import EVALUATOR, TASK_TYPES, ClusterSpecError, TaskId
from tfdist.cluster.tf_config import TaskConfig

CLUSTER_VAR = "TFDIST_K8S_CLUSTER"
TASK_TYPE_VAR = "TFDIST_K8S_TASK_TYPE"
INDEX_VAR = "JOB_COMPLETION_INDEX"
POD_NAME_VAR = "TFDIST_K8S_POD"  # for the log line (the downward API's metadata.name)


def in_pod(environ: Mapping[str, str]) -> bool:
  """True in a pod that a tfdist manifest started."""
  return bool(environ.get(CLUSTER_VAR))


def task_config(environ: Mapping[str, str]) -> TaskConfig:
  """This pod's task, from what its manifest and Kubernetes set.

  Example (a pod of the `mnist-worker` Indexed Job with JOB_COMPLETION_INDEX=1):
    task_config(os.environ).task  # TaskId("worker", 1)

  Raises:
    ClusterSpecError: a variable missing or malformed, naming it.
  """
  try:
    content = json.loads(environ.get(CLUSTER_VAR, ""))
  except (ValueError, RecursionError):
    raise ClusterSpecError(f"{CLUSTER_VAR}: not valid JSON") from None
  # Shaped as a spec file; TF_CONFIG-style lists only (TensorFlow reads what it becomes).
  cluster = files.from_content(content, CLUSTER_VAR, single_address_as_list=False)
  task_type = environ.get(TASK_TYPE_VAR, "")
  if task_type not in TASK_TYPES:
    raise ClusterSpecError(f"{TASK_TYPE_VAR}: {task_type!r} is not one of {', '.join(TASK_TYPES)}")
  index = environ.get(INDEX_VAR, "")
  if not (index.isascii() and index.isdigit()):
    raise ClusterSpecError(f"{INDEX_VAR}: {index!r} is not a pod index (an Indexed Job sets it)")
  task = TaskId(task_type, int(index))
  cluster.check_task(task, field=TASK_TYPE_VAR if task.type == EVALUATOR else "pod task")
  pod = environ.get(POD_NAME_VAR) or f"{task.type} pod {task.index}"
  return TaskConfig(cluster, task, origin=f"Kubernetes pod {pod}")
