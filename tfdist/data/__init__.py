"""How input is split: global vs per-replica batch, sharding, TFDS sources.

Options, errors and batch math import no TensorFlow; the sources load on
first use (`tfdist.data.load_source`), so a bad flag is reported at once.
"""

from tfdist import _lazy
from tfdist.data.batching import BatchError, ShardPolicy, choose_shard_policy, per_replica_batch_size
from tfdist.data.options import DataOptions, DataSourceError

_LAZY = {"DatasetSource": "source", "InputFn": "source", "TfdsSource": "tfds_source",
         "load_source": "loading", "FunctionSource": "function_source"}

__all__ = ["BatchError", "DataOptions", "DataSourceError", "ShardPolicy", "choose_shard_policy",
           "per_replica_batch_size", *_LAZY]

__getattr__ = _lazy.attributes(__name__, _LAZY)
