"""Global vs per-replica batch, and the shard-policy choice."""

import pytest

from tfdist.data import BatchError, choose_shard_policy, per_replica_batch_size


def test_per_replica_batch_is_global_over_replicas():
  assert per_replica_batch_size(64, 1) == 64
  assert per_replica_batch_size(64, 2) == 32
  assert per_replica_batch_size(96, 3) == 32


def test_global_batch_must_divide():
  with pytest.raises(BatchError, match=r"`data.global_batch_size` \(10\) must be divisible by the "
                     r"number of replicas \(4\); e.g. 8"):
    per_replica_batch_size(10, 4)
  with pytest.raises(BatchError, match="must be a positive integer"):
    per_replica_batch_size(0, 1)


@pytest.mark.parametrize("files, pipelines, itself, policy", [
    (8, 1, False, "OFF"), (8, 2, False, "FILE"), (8, 8, False, "FILE"),
    (1, 2, False, "DATA"), (3, 4, False, "DATA"), (8, 2, True, "OFF"),
    (8, 3, False, "DATA"), (3, 2, False, "DATA"), (6, 3, False, "FILE"), (49, 3, False, "FILE"),
    (47, 3, False, "DATA"),
])
def test_shard_policy(files, pipelines, itself, policy):
  choice = choose_shard_policy(files, pipelines, shards_itself=itself)
  assert choice.policy == policy and choice.reason
