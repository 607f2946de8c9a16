"""ClusterSpec: the machines of a training job, validated once, then trusted.

A cluster is a mapping from task type to an ordered list of `host:port`
addresses, as in TF_CONFIG. Training tasks are `chief`, `worker` and `ps`.
An `evaluator` is never part of the training cluster (TF's own convention):
it is counted separately in `ClusterSpec.evaluators` and has no address.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Mapping

from tfdist._input import short as _short

CHIEF = "chief"
WORKER = "worker"
PS = "ps"
EVALUATOR = "evaluator"
TRAINING_TASK_TYPES = (CHIEF, WORKER, PS)
TASK_TYPES = TRAINING_TASK_TYPES + (EVALUATOR,)

# A port written as `auto` is picked free by the local launcher.
AUTO_PORT = "auto"

_HOST_RE = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.\-]+)$")
_TASK_RE = re.compile(r"^([a-z]+):([0-9]{1,6})$")


class ClusterSpecError(ValueError):
  """A cluster spec, TF_CONFIG or task name is invalid; the message names the field."""


@dataclasses.dataclass(frozen=True)
class TaskId:
  """One task of a cluster, e.g. `TaskId("worker", 1)`."""

  type: str
  index: int

  def __str__(self) -> str:
    return f"{self.type}:{self.index}"

  @classmethod
  def parse(cls, text: str, field: str = "--task") -> "TaskId":
    """Parses `TYPE:INDEX`, e.g. `TaskId.parse("worker:1")`."""
    match = _TASK_RE.match(str(text))
    if not match or match.group(1) not in TASK_TYPES:
      raise ClusterSpecError(
          f"`{field}` ({text!r}) must be TYPE:INDEX with TYPE one of "
          f"{', '.join(TASK_TYPES)}, e.g. worker:0")
    return cls(match.group(1), int(match.group(2)))


def split_address(address: str, field: str) -> tuple[str, str]:
  """Splits `host:port` and checks both; the port may be `auto`."""
  if not isinstance(address, str):
    raise ClusterSpecError(f"{field}: expected a 'host:port' string, got {_short(address)}")
  host, sep, port = address.rpartition(":")
  if not sep or not host or not _HOST_RE.match(host):
    raise ClusterSpecError(f"{field}: {_short(address)} is not 'host:port'")
  if port == AUTO_PORT:
    return host, port
  if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
    raise ClusterSpecError(
        f"{field}: port {_short(port)} in {_short(address)} must be a number from 1 to 65535 "
        "or 'auto'")
  return host, port


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
  """A validated training cluster.

  Example:
    spec = ClusterSpec.from_dict({"worker": ["127.0.0.1:2222", "127.0.0.1:2223"]})
    spec.num_workers  # 2
  """

  jobs: Mapping[str, tuple[str, ...]]
  evaluators: int = 0

  @classmethod
  def from_dict(cls, cluster: object, evaluators: int = 0, field: str = "cluster",
                single_address_as_list: bool = True) -> "ClusterSpec":
    """Builds and validates a spec from a TF_CONFIG-style `cluster` mapping.

    `single_address_as_list`: accept `worker: host:port` for a one-task list (spec files);
    TF_CONFIG passes False, since TensorFlow itself reads it and wants lists.

    Raises:
      ClusterSpecError: naming the offending field and what was expected.
    """
    if not isinstance(cluster, Mapping):
      raise ClusterSpecError(
          f"{field}: expected a mapping of task type to address list, got {_short(cluster)}")
    jobs: dict[str, tuple[str, ...]] = {}
    for task_type, addresses in cluster.items():
      where = f"{field}.{task_type if isinstance(task_type, str) else _short(task_type)}"
      if task_type == EVALUATOR:
        raise ClusterSpecError(
            f"{where}: the evaluator is not a training task and must not be listed in the "
            "cluster; give it its own task type (spec files: top-level `evaluator: 1`)")
      if task_type not in TRAINING_TASK_TYPES:
        raise ClusterSpecError(
            f"{where}: unknown task type {_short(task_type)}; expected one of "
            f"{', '.join(TRAINING_TASK_TYPES)}")
      if isinstance(addresses, str) and single_address_as_list:
        addresses = [addresses]
      if not isinstance(addresses, (list, tuple)) or not addresses:
        raise ClusterSpecError(f"{where}: expected a non-empty list of 'host:port' addresses, "
                               f"got {_short(addresses)}")
      jobs[task_type] = tuple(addresses)
    spec = cls(jobs=jobs, evaluators=evaluators)
    spec._validate(field)
    return spec

  def _validate(self, field: str) -> None:
    if not self.jobs:
      raise ClusterSpecError(f"{field}: the cluster is empty; expected at least one worker or chief")
    seen: dict[str, str] = {}
    for task_type, addresses in self.jobs.items():
      for index, address in enumerate(addresses):
        where = f"{field}.{task_type}[{index}]"
        host, port = split_address(address, where)
        if port != AUTO_PORT:
          if address in seen:
            raise ClusterSpecError(f"{where}: address {address} is also used by {seen[address]}")
          seen[address] = where
    if len(self.jobs.get(CHIEF, ())) > 1:
      raise ClusterSpecError(
          f"{field}.{CHIEF}: {len(self.jobs[CHIEF])} chiefs listed; at most one is allowed")
    if PS in self.jobs and WORKER not in self.jobs:
      raise ClusterSpecError(
          f"{field}.{WORKER}: a cluster with `ps` tasks needs at least one worker to compute")
    if not isinstance(self.evaluators, int) or not 0 <= self.evaluators <= 1:
      raise ClusterSpecError(f"evaluator: expected 0 or 1 evaluator tasks, got {self.evaluators!r}")

  # --- Questions the rest of tfdist asks. ---

  @property
  def num_workers(self) -> int:
    """Tasks that compute under MWMS: the chief plus the workers."""
    return len(self.jobs.get(CHIEF, ())) + len(self.jobs.get(WORKER, ()))

  @property
  def num_compute_workers(self) -> int:
    """Tasks that run training steps: chief + workers, or only the workers when ps tasks
    hold the variables (the chief then coordinates)."""
    return len(self.jobs.get(WORKER, ())) if self.num_ps else self.num_workers

  @property
  def num_ps(self) -> int:
    return len(self.jobs.get(PS, ()))

  @property
  def has_auto_ports(self) -> bool:
    return any(a.endswith(":" + AUTO_PORT) for addrs in self.jobs.values() for a in addrs)

  def tasks(self) -> Iterator[TaskId]:
    """Every task, training tasks first (chief, worker, ps), then the evaluator."""
    for task_type in TRAINING_TASK_TYPES:
      for index in range(len(self.jobs.get(task_type, ()))):
        yield TaskId(task_type, index)
    for index in range(self.evaluators):
      yield TaskId(EVALUATOR, index)

  def check_task(self, task: TaskId, field: str = "task") -> None:
    """Raises ClusterSpecError unless `task` exists in this cluster."""
    count = self.evaluators if task.type == EVALUATOR else len(self.jobs.get(task.type, ()))
    if task.type not in TASK_TYPES:
      raise ClusterSpecError(
          f"{field}.type: unknown task type {_short(task.type)}; expected one of "
          f"{', '.join(TASK_TYPES)}")
    if count == 0:
      raise ClusterSpecError(f"{field}.type: the cluster has no {task.type!r} task")
    if not 0 <= task.index < count:
      raise ClusterSpecError(
          f"{field}.index: {task.index} is out of range for {task.type!r} "
          f"({count} task{'s' if count != 1 else ''}: valid 0..{count - 1})")

  def address(self, task: TaskId) -> str:
    return self.jobs[task.type][task.index]

  def is_chief(self, task: TaskId) -> bool:
    """The chief, or worker 0 when the cluster has no chief (TF's rule)."""
    if CHIEF in self.jobs:
      return task.type == CHIEF
    return task == TaskId(WORKER, 0)

  def with_ports(self, ports: Mapping[TaskId, int]) -> "ClusterSpec":
    """A copy with the `auto` ports of the given tasks replaced."""
    return self._rewritten(lambda task, host, port: (
        host, str(ports[task]) if port == AUTO_PORT else port))

  def with_hosts(self, hosts: Mapping[TaskId, str]) -> "ClusterSpec":
    """A copy with the hosts of the given tasks replaced (their ports kept)."""
    return self._rewritten(lambda task, host, port: (hosts.get(task, host), port))

  def without(self, task: TaskId) -> "ClusterSpec":
    """A copy without `task`; the later tasks of its type move down one index.

    Example:
      spec.without(TaskId("worker", 1))  # worker: [a, b, c] -> [a, c]
    """
    self.check_task(task)
    jobs = dict(self.jobs)
    jobs[task.type] = tuple(a for i, a in enumerate(jobs[task.type]) if i != task.index)
    if not jobs[task.type]:
      del jobs[task.type]
    return ClusterSpec.from_dict(jobs, self.evaluators)

  def _rewritten(self, rewrite) -> "ClusterSpec":
    jobs = {}
    for task_type, addresses in self.jobs.items():
      new = []
      for index, address in enumerate(addresses):
        host, port = rewrite(TaskId(task_type, index), *address.rsplit(":", 1))
        new.append(f"{host}:{port}")
      jobs[task_type] = tuple(new)
    return ClusterSpec.from_dict(jobs, self.evaluators)

  def as_dict(self) -> dict[str, list[str]]:
    return {task_type: list(addrs) for task_type, addrs in self.jobs.items()}
