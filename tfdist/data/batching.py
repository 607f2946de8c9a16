"""Global batch vs per-replica batch, and how input is split across pipelines."""

from __future__ import annotations

import dataclasses

FILE = "FILE"
DATA = "DATA"
OFF = "OFF"


class BatchError(ValueError):
  """The global batch does not fit the replicas; the message names the field."""


def per_replica_batch_size(global_batch_size: int, num_replicas: int) -> int:
  """The batch each replica computes on; the global batch must divide evenly.

  Example:
    per_replica_batch_size(128, 4)  # 32
  """
  if global_batch_size < 1:
    raise BatchError(
        f"`data.global_batch_size` ({global_batch_size}) must be a positive integer")
  if global_batch_size % num_replicas:
    raise BatchError(
        f"`data.global_batch_size` ({global_batch_size}) must be divisible by the number of "
        f"replicas ({num_replicas}); e.g. {max(1, global_batch_size // num_replicas) * num_replicas}")
  return global_batch_size // num_replicas


@dataclasses.dataclass(frozen=True)
class ShardPolicy:
  policy: str
  reason: str


def choose_shard_policy(num_files: int, num_pipelines: int,
                        shards_itself: bool = False) -> ShardPolicy:
  """How to split input over `num_pipelines` (one per worker under MWMS).

  FILE when every pipeline can get at least one file (cheapest: each reads only
  its files), DATA otherwise (each reads everything and keeps every n-th
  example), OFF when there is one pipeline or the user's input already shards
  by `input_pipeline_id`.
  """
  if shards_itself:
    return ShardPolicy(OFF, "the input function shards by input_pipeline_id itself")
  if num_pipelines <= 1:
    return ShardPolicy(OFF, "one input pipeline reads everything")
  if num_files >= num_pipelines:
    return ShardPolicy(FILE, f"{num_files} files >= {num_pipelines} input pipelines")
  return ShardPolicy(DATA, f"{num_files} file(s) < {num_pipelines} input pipelines")
