"""Cluster options: how to read a cluster that no TF_CONFIG describes (no TensorFlow import)."""

from __future__ import annotations

import dataclasses

from tfdist.cluster.slurm_step import DEFAULT_BASE_PORT, parse_layout
from tfdist.cluster.spec import ClusterSpecError


@dataclasses.dataclass(frozen=True)
class ClusterOptions:
  """Attributes:
    slurm_tasks: inside a SLURM step, the roles its ranks take, e.g. `chief:1,worker:2,ps:1`
      (ranks in that order: chief, workers, ps, evaluator); '' makes every task a worker.
    slurm_base_port: inside a SLURM step, the port of each node's first task (the next
      tasks on the node take the ports after it).
  """

  slurm_tasks: str = ""
  slurm_base_port: int = DEFAULT_BASE_PORT

  def __post_init__(self):
    parse_layout(self.slurm_tasks, field="`cluster.slurm_tasks`")
    if isinstance(self.slurm_base_port, bool) or not isinstance(self.slurm_base_port, int) \
        or not 1024 <= self.slurm_base_port <= 65000:
      raise ClusterSpecError(
          f"`cluster.slurm_base_port` ({self.slurm_base_port!r}) must be a port from 1024 to 65000")
