"""TF_CONFIG: parse it strictly, emit it for one task.

Unlike TF's TFConfigClusterResolver, bad input is an error that names the
field: `{}`, invalid JSON, a task outside the cluster.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping, Optional

from tfdist.cluster.spec import (EVALUATOR, ClusterSpec, ClusterSpecError, TaskId)

ENV_VAR = "TF_CONFIG"
# One id for every task of one job (and its restarts), set by `tfdist launch`; a job system
# may set it too (e.g. to its job id). Without it, a job is known by its cluster.
RUN_ID_VAR = "TFDIST_RUN_ID"
_CLUSTER_KEY = "cluster"
_TASK_KEY = "task"
_TYPE_KEY = "type"
_INDEX_KEY = "index"
_RPC_LAYER_KEY = "rpc_layer"
_ENVIRONMENT_KEY = "environment"
_KNOWN_KEYS = (_CLUSTER_KEY, _TASK_KEY, _RPC_LAYER_KEY, _ENVIRONMENT_KEY)


@dataclasses.dataclass(frozen=True)
class TaskConfig:
  """The cluster and this process's place in it.

  `origin` says where it came from, for the strategy's one log line
  (e.g. "TF_CONFIG", or "SLURM step: 4 tasks on 2 nodes").
  """

  cluster: ClusterSpec
  task: TaskId
  origin: str = ENV_VAR
  run_id: Optional[str] = None  # what every task of the job calls it (environments.detect)

  @property
  def is_chief(self) -> bool:
    return self.cluster.is_chief(self.task)


def parse(text: str, field: str = ENV_VAR) -> TaskConfig:
  """Parses a TF_CONFIG JSON string.

  Example:
    parse('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 0}}')

  Raises:
    ClusterSpecError: naming the field and what was expected.
  """
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise ClusterSpecError(f"{field}: not valid JSON ({e.msg} at char {e.pos})") from None
  except RecursionError:
    raise ClusterSpecError(f"{field}: nested too deeply to be a TF_CONFIG") from None
  if not isinstance(config, dict):
    raise ClusterSpecError(f"{field}: expected a JSON object with 'cluster' and 'task'")
  unknown = sorted(set(config) - set(_KNOWN_KEYS))
  if unknown:
    raise ClusterSpecError(
        f"{field}.{unknown[0][:40]}: unknown key; expected only {', '.join(_KNOWN_KEYS)}")
  for key in (_RPC_LAYER_KEY, _ENVIRONMENT_KEY):  # TensorFlow reads these itself.
    if key in config and not isinstance(config[key], str):
      raise ClusterSpecError(f"{field}.{key}: expected a string (e.g. \"grpc\"), "
                             f"got {type(config[key]).__name__}")
  if _CLUSTER_KEY not in config:
    raise ClusterSpecError(
        f"{field}.cluster: missing; expected {{\"cluster\": {{\"worker\": [\"host:port\", ...]}}, "
        "\"task\": {\"type\": \"worker\", \"index\": 0}}")
  task_dict = config.get(_TASK_KEY)
  if not isinstance(task_dict, dict):
    raise ClusterSpecError(
        f"{field}.task: missing or not an object; expected {{\"type\": TYPE, \"index\": N}}")
  task_type = task_dict.get(_TYPE_KEY)
  index = task_dict.get(_INDEX_KEY, 0)
  if not isinstance(task_type, str):
    raise ClusterSpecError(f"{field}.task.type: missing or not a string; "
                           "expected chief, worker, ps or evaluator")
  if isinstance(index, bool) or not isinstance(index, int):
    raise ClusterSpecError(f"{field}.task.index: expected a non-negative integer, got {index!r}")
  task = TaskId(task_type, index)
  evaluators = 1 if task_type == EVALUATOR else 0
  # TensorFlow reads TF_CONFIG too, and only lists: no `"worker": "host:port"` shorthand here.
  cluster = ClusterSpec.from_dict(config[_CLUSTER_KEY], evaluators, field=f"{field}.cluster",
                                  single_address_as_list=False)
  if cluster.has_auto_ports:
    raise ClusterSpecError(
        f"{field}.cluster: 'auto' ports are only resolved by `tfdist launch`; give real ports")
  cluster.check_task(task, field=f"{field}.task")
  return TaskConfig(cluster, task)


def from_environment(environ: Optional[Mapping[str, str]] = None) -> Optional[TaskConfig]:
  """The TF_CONFIG of this process, or None when it is unset or empty."""
  environ = os.environ if environ is None else environ
  text = environ.get(ENV_VAR, "")
  if not text.strip():
    return None
  return parse(text)


def emit(cluster: ClusterSpec, task: TaskId) -> str:
  """The TF_CONFIG JSON for `task` in `cluster`.

  Raises:
    ClusterSpecError: if the task is not in the cluster or ports are still `auto`.
  """
  if cluster.has_auto_ports:
    raise ClusterSpecError(
        "cluster: 'auto' ports have no fixed value; `tfdist launch` picks them, or write real ports")
  cluster.check_task(task, field="--task")
  return json.dumps({
      _CLUSTER_KEY: cluster.as_dict(),
      _TASK_KEY: {_TYPE_KEY: task.type, _INDEX_KEY: task.index},
  }, sort_keys=True)
