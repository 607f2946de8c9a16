"""How input is split: global vs per-replica batch, sharding, TFDS sources."""

from tfdist.data.batching import BatchError, ShardPolicy, choose_shard_policy, per_replica_batch_size
from tfdist.data.mnist5k import DataSourceError
from tfdist.data.sources import DataOptions, DatasetSource, InputFn, load_source

__all__ = ["BatchError", "DataOptions", "DataSourceError", "DatasetSource", "InputFn",
           "ShardPolicy", "choose_shard_policy", "load_source", "per_replica_batch_size"]
