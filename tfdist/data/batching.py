"""Global batch vs per-replica batch, and how input is split across pipelines."""

from __future__ import annotations

import dataclasses

FILE = "FILE"
DATA = "DATA"
OFF = "OFF"
# With this many files per pipeline, FILE sharding's uneven split costs less than DATA's
# reading everything on every pipeline.
_MANY_FILES_PER_PIPELINE = 16


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

  FILE when the files split evenly over the pipelines (each reads only its own
  files, and all read as many: every example once per epoch), or when there are
  so many that the difference is at most one file in `_MANY_FILES_PER_PIPELINE`;
  DATA otherwise (each reads everything and keeps every n-th example); OFF when
  there is one pipeline or the user's input already shards by `input_pipeline_id`.
  """
  if shards_itself:
    return ShardPolicy(OFF, "the input function shards by input_pipeline_id itself")
  if num_pipelines <= 1:
    return ShardPolicy(OFF, "one input pipeline reads everything")
  if num_files >= num_pipelines and num_files % num_pipelines == 0:
    return ShardPolicy(FILE, f"{num_files} files split evenly over {num_pipelines} input pipelines")
  if num_files >= _MANY_FILES_PER_PIPELINE * num_pipelines:
    return ShardPolicy(FILE, f"{num_files} files over {num_pipelines} input pipelines (pipelines "
                       "differ by at most one file)")
  if num_files >= num_pipelines:
    return ShardPolicy(DATA, f"{num_files} files do not split evenly over {num_pipelines} "
                       "input pipelines")
  return ShardPolicy(DATA, f"{num_files} file(s) < {num_pipelines} input pipelines")
