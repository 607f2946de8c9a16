"""A SLURM job step as a cluster: `srun tfdist train` with no TF_CONFIG.

SLURM tells each task of a step where it runs: the step's nodes
(`SLURM_STEP_NODELIST`, e.g. `n[1-3,7],gpu[01-02]`), how many tasks each node
runs (`SLURM_STEP_TASKS_PER_NODE`, e.g. `2(x3),1`), the step's task count and
this task's rank (`SLURM_PROCID`). With SLURM's default block distribution,
ranks fill the nodes in node-list order. Each task listens on a base port plus
its offset on its node; ranks take roles in the order of the layout
(default: all workers).

Unlike TensorFlow's SlurmClusterResolver, nodes keep SLURM's own order (which
ranks follow), so `n9` comes before `n10`, and malformed values are one-line
errors that name the variable.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Optional

from tfdist.cluster.spec import (CHIEF, EVALUATOR, PS, TASK_TYPES, WORKER, ClusterSpec,
                                 ClusterSpecError, TaskId)
from tfdist.cluster.tf_config import TaskConfig

NODELIST = "SLURM_STEP_NODELIST"
TASKS_PER_NODE = "SLURM_STEP_TASKS_PER_NODE"
NUM_TASKS = "SLURM_STEP_NUM_TASKS"
PROCID = "SLURM_PROCID"
STEP_VARS = (PROCID, NODELIST, TASKS_PER_NODE, NUM_TASKS)
# Set by SLURM on each task; checked against what block distribution predicts.
LOCALID = "SLURM_LOCALID"
NODENAME = "SLURMD_NODENAME"
GPUS_PER_TASK = "SLURM_GPUS_PER_TASK"

DEFAULT_BASE_PORT = 28800
_LAYOUT_ORDER = (CHIEF, WORKER, PS, EVALUATOR)  # ranks take roles in this order
_PART = re.compile(r"^([^\[\],]*)(?:\[([^\[\]]+)\])?([^\[\],]*)$")
_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")
_TASKS = re.compile(r"^([0-9]+)(?:\(x([0-9]+)\))?$")
_MAX_NODES = 100_000


def in_step(environ: Mapping[str, str]) -> bool:
  """True inside a SLURM job step (the variables `srun` sets for each task)."""
  return all(environ.get(name) for name in STEP_VARS)


def expand_nodelist(text: str, field: str = NODELIST) -> list[str]:
  """SLURM's compressed host list, in its order.

  Example:
    expand_nodelist("n[1-3,7],gpu[01-02]")  # ['n1', 'n2', 'n3', 'n7', 'gpu01', 'gpu02']

  Raises:
    ClusterSpecError: naming `field` and the part that is malformed.
  """
  hosts: list[str] = []
  for part in _split_outside_brackets(text, field):
    match = _PART.match(part)
    if not match or not (match.group(1) or match.group(2)):
      raise ClusterSpecError(f"{field}: {part!r} in {text!r} is not a host or host[ranges]")
    prefix, ranges, suffix = match.groups()
    if ranges is None:
      hosts.append(prefix + suffix)
      continue
    for item in ranges.split(","):
      bounds = _RANGE.match(item)
      if not bounds:
        raise ClusterSpecError(f"{field}: {item!r} in {text!r} is not N or N-M")
      first, last = bounds.group(1), bounds.group(2) or bounds.group(1)
      if int(last) < int(first) or int(last) - int(first) > _MAX_NODES:
        raise ClusterSpecError(f"{field}: range {item!r} in {text!r} is empty or too large")
      width = len(first)  # n[01-10] -> n01..n10; n[8-10] -> n8..n10
      hosts.extend(f"{prefix}{i:0{width}d}{suffix}" for i in range(int(first), int(last) + 1))
  return hosts


def _split_outside_brackets(text: str, field: str) -> list[str]:
  parts, depth, current = [], 0, ""
  for char in text:
    if char == "[":
      depth += 1
    elif char == "]":
      depth -= 1
    if depth not in (0, 1):
      raise ClusterSpecError(f"{field}: unbalanced brackets in {text!r}")
    if char == "," and depth == 0:
      parts.append(current)
      current = ""
    else:
      current += char
  if depth:
    raise ClusterSpecError(f"{field}: unbalanced brackets in {text!r}")
  parts.append(current)
  if not all(parts):
    raise ClusterSpecError(f"{field}: empty host in {text!r}")
  return parts


def expand_tasks_per_node(text: str, field: str = TASKS_PER_NODE) -> list[int]:
  """SLURM's tasks-per-node list, e.g. `2(x3),1` -> [2, 2, 2, 1].

  Raises:
    ClusterSpecError: naming `field` and the part that is malformed.
  """
  counts: list[int] = []
  for part in text.split(","):
    match = _TASKS.match(part.strip())
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
      raise ClusterSpecError(f"{field}: {part!r} in {text!r} is not N or N(xM) with N, M >= 1")
    counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    if len(counts) > _MAX_NODES:
      raise ClusterSpecError(f"{field}: {text!r} lists more than {_MAX_NODES} nodes")
  return counts


def parse_layout(text: str, field: str = "--slurm_tasks") -> dict[str, int]:
  """`chief:1,ps:1,worker:2` -> task counts by type ('' means every task a worker).

  Raises:
    ClusterSpecError: an unknown type, a count that is not a positive integer, a repeat.
  """
  layout: dict[str, int] = {}
  for item in filter(None, (p.strip() for p in text.split(","))):
    task_type, sep, count = item.partition(":")
    if not sep or task_type not in TASK_TYPES or not (count.isascii() and count.isdigit()):
      raise ClusterSpecError(
          f"{field}: {item!r} must be TYPE:COUNT with TYPE one of {', '.join(TASK_TYPES)}, "
          "e.g. chief:1,worker:2,ps:1")
    if task_type in layout or int(count) < 1:
      raise ClusterSpecError(f"{field}: {item!r}: each type once, with a count of at least 1")
    layout[task_type] = int(count)
  if layout.get(CHIEF, 0) > 1 or layout.get(EVALUATOR, 0) > 1:
    raise ClusterSpecError(f"{field}: at most one chief and one evaluator")
  return layout


@dataclasses.dataclass(frozen=True)
class SlurmStep:
  """One SLURM step as tfdist sees it: nodes, tasks on each, this task's rank."""

  nodes: tuple[str, ...]
  tasks_per_node: tuple[int, ...]
  rank: int

  @classmethod
  def from_environment(cls, environ: Mapping[str, str]) -> "SlurmStep":
    """Raises ClusterSpecError naming the variable that is missing or malformed."""
    missing = [name for name in STEP_VARS if not environ.get(name)]
    if missing:
      raise ClusterSpecError(f"{missing[0]}: not set; not inside a SLURM job step "
                             "(run through srun)")
    nodes = expand_nodelist(environ[NODELIST])
    per_node = expand_tasks_per_node(environ[TASKS_PER_NODE])
    if len(per_node) != len(nodes):
      raise ClusterSpecError(
          f"{TASKS_PER_NODE}: {environ[TASKS_PER_NODE]!r} gives {len(per_node)} node(s) but "
          f"{NODELIST} lists {len(nodes)}")
    total = _integer(environ, NUM_TASKS)
    if total != sum(per_node):
      raise ClusterSpecError(f"{NUM_TASKS}: {total} tasks, but {TASKS_PER_NODE} adds up to "
                             f"{sum(per_node)}")
    rank = _integer(environ, PROCID)
    if not 0 <= rank < total:
      raise ClusterSpecError(f"{PROCID}: {rank} is not a rank of the step's {total} tasks")
    step = cls(tuple(nodes), tuple(per_node), rank)
    step._check_block_distribution(environ)
    return step

  @property
  def num_tasks(self) -> int:
    return sum(self.tasks_per_node)

  def placement(self, rank: int) -> tuple[str, int]:
    """(node, offset on the node) of `rank` under block distribution."""
    for node, count in zip(self.nodes, self.tasks_per_node):
      if rank < count:
        return node, rank
      rank -= count
    raise AssertionError("rank out of range")

  def _check_block_distribution(self, environ: Mapping[str, str]) -> None:
    node, local = self.placement(self.rank)
    seen_node, seen_local = environ.get(NODENAME), environ.get(LOCALID)
    if (seen_node and seen_node != node) or (seen_local and seen_local != str(local)):
      raise ClusterSpecError(
          f"{PROCID}: rank {self.rank} runs on {seen_node} as local task {seen_local}, but "
          f"tfdist needs ranks to fill nodes in order (srun --distribution=block, the default)")


def _integer(environ: Mapping[str, str], name: str) -> int:
  value = environ[name].strip()
  if not (value.isascii() and value.isdigit()):
    raise ClusterSpecError(f"{name}: {value!r} is not a non-negative integer")
  return int(value)


def task_config(environ: Mapping[str, str], layout: str = "",
                base_port: int = DEFAULT_BASE_PORT) -> TaskConfig:
  """This task's place in the cluster the SLURM step forms.

  Example (inside `srun -n 4 ...` on 2 nodes, with SLURM_PROCID=2):
    task_config(os.environ, "chief:1,worker:2,ps:1").task  # TaskId("worker", 1)

  Raises:
    ClusterSpecError: the step's variables or the layout are malformed, or do not match.
  """
  step = SlurmStep.from_environment(environ)
  counts = parse_layout(layout) or {WORKER: step.num_tasks}
  if sum(counts.values()) != step.num_tasks:
    raise ClusterSpecError(
        f"--slurm_tasks: {layout!r} names {sum(counts.values())} tasks, but the SLURM step has "
        f"{step.num_tasks} (srun -n {sum(counts.values())})")
  if not 1 <= base_port <= 65535 - max(step.tasks_per_node):
    raise ClusterSpecError(f"--slurm_base_port: {base_port} leaves no room for "
                           f"{max(step.tasks_per_node)} port(s) per node")
  roles = [TaskId(t, i) for t in _LAYOUT_ORDER for i in range(counts.get(t, 0))]
  jobs: dict[str, list[str]] = {}
  for rank, task in enumerate(roles):
    if task.type != EVALUATOR:
      node, offset = step.placement(rank)
      jobs.setdefault(task.type, []).append(f"{node}:{base_port + offset}")
  if not jobs:
    raise ClusterSpecError("--slurm_tasks: the layout has no training task (chief or worker)")
  cluster = ClusterSpec.from_dict(jobs, counts.get(EVALUATOR, 0), field="--slurm_tasks")
  task = roles[step.rank]
  nodes = len(step.nodes)
  origin = (f"SLURM step: {step.num_tasks} task{'s' if step.num_tasks != 1 else ''} on {nodes} "
            f"node{'s' if nodes != 1 else ''}")
  return TaskConfig(cluster, task, origin=origin)


def gpus_for_task(visible: Optional[str], environ: Mapping[str, str]) -> Optional[str]:
  """The CUDA_VISIBLE_DEVICES this task should have, or None to leave it as it is.

  The node's visible GPUs are split evenly among the step's tasks on the node;
  nothing changes when SLURM already bound GPUs per task (`--gpus-per-task`),
  when no GPU is visible, or outside a step.

  Example: 4 visible GPUs "0,1,2,3", 2 tasks on the node, local task 1 -> "2,3".
  """
  if not visible or not in_step(environ) or environ.get(GPUS_PER_TASK):
    return None
  try:
    step = SlurmStep.from_environment(environ)
  except ClusterSpecError:
    return None  # task_config reports the error with the whole context
  node, local = step.placement(step.rank)
  tasks_here = step.tasks_per_node[step.nodes.index(node)]
  gpus = [g for g in visible.split(",") if g.strip()]
  share = len(gpus) // tasks_here
  if tasks_here == 1 or share == 0:
    return None
  return ",".join(gpus[local * share:(local + 1) * share])
