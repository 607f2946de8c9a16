"""What a dataset's graph says that its element spec does not: how many files it reads (what
FILE sharding can split), and whether it is already batched.

Reads the dataset's serialized graph (`_as_serialized_graph`, TensorFlow's own, not
public API): there is no public way to ask a dataset either question.
"""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

# Dataset ops that read files (their file list is what FILE sharding splits).
_FILE_READERS = frozenset({"TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset",
                           "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2"})


_BATCHING = frozenset({"BatchDataset", "BatchDatasetV2", "PaddedBatchDataset",
                       "PaddedBatchDatasetV2", "ParallelBatchDataset"})
_UNBATCHING = frozenset({"UnbatchDataset", "ExperimentalUnbatchDataset"})


def _chain(ds: tf.data.Dataset):
  """The dataset's ops from its output back to its source (first inputs), and the graph."""
  graph = graph_pb2.GraphDef.FromString(
      ds._as_serialized_graph().numpy())  # pylint: disable=protected-access
  nodes = {n.name: n for n in graph.node}
  node = next((n for n in graph.node if n.op == "_Retval"), None)
  chain = []
  while node is not None:
    chain.append(node)
    inputs = [i for i in node.input if not i.startswith("^")]
    node = nodes.get(_input_name(inputs[0])) if inputs else None
  return chain, nodes, graph


def is_batched(ds: tf.data.Dataset) -> bool:
  """Whether `ds` gives batches: a batching op between its output and its source that no
  `unbatch` undoes."""
  for node in _chain(ds)[0]:
    if node.op in _UNBATCHING:
      return False
    if node.op in _BATCHING:
      return True
  return False


def count_files(ds: tf.data.Dataset) -> int:
  """The files `ds` reads through a list of names FILE sharding can split (0: none found).

  Walks the dataset's graph from its output to its source: a reader op, or an
  interleave/flat-map whose function reads files, fed by a constant list of names
  (from_tensor_slices, list_files, TFRecordDataset([...])).
  """
  chain, nodes, graph = _chain(ds)
  functions = {f.signature.name: f for f in graph.library.function}
  reads_files = False
  for node in chain:
    if node.op in _FILE_READERS or any(
        _reads_files(a.func.name, functions, set()) for a in node.attr.values()):
      reads_files = True
      if node.op in _FILE_READERS:  # a single reader: its filenames input is the list
        return _strings(nodes.get(_input_name(node.input[0])))
    elif node.op == "TensorSliceDataset" and reads_files:
      return _strings(nodes.get(_input_name(node.input[0])))
  return 0


def _reads_files(name: str, functions: dict, seen: set) -> bool:
  if not name or name in seen or name not in functions:
    return False
  seen.add(name)
  return any(n.op in _FILE_READERS or n.op in functions and _reads_files(n.op, functions, seen)
             or any(_reads_files(a.func.name, functions, seen) for a in n.attr.values())
             for n in functions[name].node_def)


def _input_name(text: str) -> str:
  return text.lstrip("^").split(":")[0]


def _strings(node) -> int:
  if node is None or node.op != "Const" or node.attr["dtype"].type != tf.string.as_datatype_enum:
    return 0
  count = 1
  for dim in node.attr["value"].tensor.tensor_shape.dim:  # a scalar is one file
    count *= dim.size
  return count
