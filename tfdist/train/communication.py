"""What a training step exchanges, computed from the model and the cluster's shape: the
`communication` figures of metrics.json (docs/performance.md, "Communication").

Per worker and per step, each way:

- MultiWorkerMirrored: a ring all-reduce of the dense gradients sends and receives
  2(N-1)/N of their bytes, N the replicas in sync (each worker's ring has one edge to the
  next worker), at the all-reduce dtype (`strategy.allreduce_dtype`). Sparse gradients
  (an embedding's rows, `tf.IndexedSlices`) are all-gathered: each worker sends its rows to
  the N-1 others and receives theirs.
- ParameterServer: a step reads each dense variable whole from its ps task and the rows of
  the tables it looks up, and pushes a gradient of the same size (rows with their indices).
- Mirrored on one machine: the same ring figures, as copies between devices (no network).

Not counted: the few scalars a loop reduces per step (a loss's example count, metrics), the
RPC and TCP/IP framing (a few percent on the wire), parameter-server start-up and
scheduling. Rows a step looks up are estimated from the batch: the examples a worker's step
reads times the ids per example (the embedding input's known dimensions; 1 where unknown).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Optional

from tfdist.strategy.options import MIRRORED, MULTI_WORKER_MIRRORED, PARAMETER_SERVER

NETWORK, DEVICE_COPIES, NONE = "network", "device copies", "none"
INDEX_BYTES = 4  # Keras embeddings look up int32 ids (other integer ids are cast)


@dataclasses.dataclass(frozen=True)
class Weight:
  """A trainable variable as communication sees it.

  Attributes:
    elements: its number of values.
    dtype_bytes: bytes per value (4 for float32).
    row_elements: for an embedding table (a sparse gradient): values per row; else 0.
    lookups_per_example: for an embedding table, the ids one example looks up.
  """

  elements: int
  dtype_bytes: int = 4
  row_elements: int = 0
  lookups_per_example: int = 1

  @property
  def sparse(self) -> bool:
    return self.row_elements > 0


def bytes_per_step(strategy: str, weights: Iterable[Weight], *, workers: int, replicas: int,
                   worker_batch: int, allreduce_bytes: int = 4) -> dict:
  """The communication figures of one worker's step (see the module's docstring).

  Args:
    strategy: MIRRORED, MULTI_WORKER_MIRRORED, PARAMETER_SERVER or another (nothing exchanged).
    workers: processes that train (MWMS: all of them; PSS: the workers).
    replicas: replicas in sync (MWMS, Mirrored); PSS ignores it.
    worker_batch: the examples one worker's step reads.
    allreduce_bytes: bytes per value of an all-reduced gradient (2 for bfloat16).

  Example (MWMS, 2 workers, one float32 dense layer of 1,000 values):
    bytes_per_step(MULTI_WORKER_MIRRORED, [Weight(1000)], workers=2, replicas=2,
                   worker_batch=32)["sent_bytes_per_step"]  # 4000: 2(2-1)/2 x 4,000 bytes
  """
  weights = list(weights)
  dense = [w for w in weights if not w.sparse]
  sparse = [w for w in weights if w.sparse]
  rows = sum(worker_batch * w.lookups_per_example * w.row_elements * w.dtype_bytes
             for w in sparse)
  row_ids = sum(worker_batch * w.lookups_per_example * INDEX_BYTES for w in sparse)
  figures = {"strategy": strategy, "over": NONE, "sent_bytes_per_step": 0,
             "received_bytes_per_step": 0,
             "dense_gradient_bytes": sum(w.elements * w.dtype_bytes for w in dense),
             "sparse_rows_bytes": rows + row_ids}
  if strategy in (MULTI_WORKER_MIRRORED, MIRRORED) and replicas > 1:
    wire = sum(w.elements * min(w.dtype_bytes, allreduce_bytes) for w in dense)
    ring = 2 * (replicas - 1) / replicas * wire
    gathered = (replicas - 1) * (rows + row_ids) * workers / replicas  # this worker's rows out
    each_way = round(ring + gathered)
    figures.update(over=NETWORK if strategy == MULTI_WORKER_MIRRORED and workers > 1
                   else DEVICE_COPIES, sent_bytes_per_step=each_way,
                   received_bytes_per_step=each_way, allreduce_value_bytes=allreduce_bytes,
                   formula=f"ring all-reduce 2(N-1)/N x {wire:,} dense gradient bytes, N="
                           f"{replicas} replicas" + (f"; all-gather of {rows + row_ids:,} "
                                                     "bytes of embedding rows" if sparse else ""))
  elif strategy == PARAMETER_SERVER:
    dense_bytes = figures["dense_gradient_bytes"]
    figures.update(over=NETWORK, sent_bytes_per_step=dense_bytes + rows + row_ids,
                   received_bytes_per_step=dense_bytes + rows,
                   formula=f"reads {dense_bytes:,} bytes of dense variables and pushes their "
                           f"gradients; looks up and pushes {rows:,} bytes of embedding rows "
                           f"(+{row_ids:,} of row ids), for {worker_batch} examples a step")
  return figures


def model_weights(model) -> list[Weight]:
  """`model`'s trainable variables as Weights: an Embedding layer's table (either Keras; split
  over ps tasks or not) is one Weight with a sparse gradient, every other variable a dense one.
  """
  weights, in_tables = [], set()
  for layer in _layers(model):
    table = getattr(layer, "embeddings", None) if type(layer).__name__ == "Embedding" else None
    if table is None or not getattr(layer, "trainable", True):
      continue
    parts = [_unwrapped(v) for v in getattr(table, "variables", None) or [table]]  # shards
    in_tables.update(id(v) for v in parts)
    shape = [int(d) for d in table.shape]
    weights.append(Weight(elements=math.prod(shape), dtype_bytes=_dtype_bytes(table),
                          row_elements=math.prod(shape[1:]),
                          lookups_per_example=_lookups_per_example(layer)))
  for variable in model.trainable_variables:
    if id(_unwrapped(variable)) not in in_tables:
      weights.append(Weight(elements=math.prod(int(d) for d in variable.shape),
                            dtype_bytes=_dtype_bytes(variable)))
  return weights


def _layers(model) -> list:
  flatten = getattr(model, "_flatten_layers", None)
  return list(flatten(include_self=False)) if flatten else list(getattr(model, "layers", []))


def _unwrapped(variable):
  """The same object for a Keras 3 variable and the table the layer holds."""
  inner = getattr(variable, "_value", None)
  return variable if inner is None else inner


def _dtype_bytes(variable) -> int:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf.as_dtype(variable.dtype).size


def _lookups_per_example(layer) -> int:
  """The ids one example looks up: the known non-batch dimensions of the layer's input."""
  shape: Optional[tuple] = None
  try:
    shape = tuple(layer.input.shape)
  except (AttributeError, ValueError, RuntimeError):  # not called in a functional model
    shape = None
  if not shape or len(shape) < 2:
    return 1
  return math.prod(int(d) for d in shape[1:] if d is not None) or 1


def describe(figures: Optional[dict]) -> str:
  """The summary line's words for `figures`: '1.7 MB/step sent per worker over the network'."""
  if not figures or figures.get("over", NONE) == NONE:
    return "no gradient exchange"
  sent = figures["sent_bytes_per_step"]
  size = next(f"{sent / scale:.1f} {unit}" for scale, unit in
              ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1, "B")) if sent >= scale or scale == 1)
  return f"{size}/step sent per worker ({figures['over']}, computed)"
