"""Strategy options, checked once when built."""

from __future__ import annotations

import dataclasses

AUTO = "auto"
ONE_DEVICE = "one_device"
MIRRORED = "mirrored"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
PARAMETER_SERVER = "parameter_server"
STRATEGY_NAMES = (AUTO, ONE_DEVICE, MIRRORED, MULTI_WORKER_MIRRORED, PARAMETER_SERVER)

CROSS_DEVICE_OPS = ("auto", "nccl", "hierarchical_copy", "reduction_to_one_device")
COMMUNICATIONS = ("auto", "ring", "nccl")
# The dtype gradients are all-reduced in (models/gradient_compression.py casts them).
ALLREDUCE_DTYPES = ("float32", "bfloat16", "float16")


class StrategyError(ValueError):
  """The requested strategy cannot run here; the message names the option."""


@dataclasses.dataclass(frozen=True)
class StrategyOptions:
  """How to build the strategy.

  Attributes:
    name: one of STRATEGY_NAMES; `auto` decides from the cluster (see choice.py).
    cpu_replicas: split the CPU into this many logical devices (0: leave it whole).
      Only used by `mirrored` when there is no GPU.
    cross_device_ops: all-reduce for MirroredStrategy.
    communication: collective implementation for MultiWorkerMirroredStrategy.
    startup_timeout_s: how long a multi-worker start may wait for its peers.
    bytes_per_pack: MWMS gradient packing (0: TF's default, no packing).
    allreduce_dtype: the dtype dense gradients are summed across replicas in (Mirrored,
      MultiWorkerMirrored): bfloat16 or float16 halve the bytes exchanged. Refused under
      ParameterServerStrategy, which all-reduces nothing.
    ps_shard_min_bytes: under ParameterServerStrategy with several ps tasks, split
      variables of at least this size across them (0: never split).
    intra_op_threads, inter_op_threads: TensorFlow's thread pools (0: its default).
  """

  name: str = AUTO
  cpu_replicas: int = 0
  cross_device_ops: str = "auto"
  communication: str = "auto"
  startup_timeout_s: float = 60.0
  bytes_per_pack: int = 0
  allreduce_dtype: str = "float32"
  ps_shard_min_bytes: int = 256 << 10
  intra_op_threads: int = 0
  inter_op_threads: int = 0

  def __post_init__(self):
    _check_choice("strategy.name", self.name, STRATEGY_NAMES)
    _check_choice("strategy.cross_device_ops", self.cross_device_ops, CROSS_DEVICE_OPS)
    _check_choice("strategy.communication", self.communication, COMMUNICATIONS)
    _check_choice("strategy.allreduce_dtype", self.allreduce_dtype, ALLREDUCE_DTYPES)
    if not isinstance(self.cpu_replicas, int) or self.cpu_replicas < 0:
      raise StrategyError(
          f"`strategy.cpu_replicas` ({self.cpu_replicas!r}) must be a non-negative integer")
    if not self.startup_timeout_s > 0:
      raise StrategyError(
          f"`strategy.startup_timeout_s` ({self.startup_timeout_s!r}) must be positive")
    for field in ("bytes_per_pack", "ps_shard_min_bytes", "intra_op_threads",
                  "inter_op_threads"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StrategyError(f"`strategy.{field}` ({value!r}) must be a non-negative integer")


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
  if value not in allowed:
    raise StrategyError(f"`{field}` ({value!r}) must be one of {', '.join(allowed)}")
