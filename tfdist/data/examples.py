"""What one example holds, read from a dataset's element spec: the data contract.

An element is `(features, label)` or `(features, label, sample_weight)`, unbatched:

- features: a tensor, a tuple, or a (nested) dict of tensors, of any dtype (strings too);
- label: a numeric tensor (an integer class id, a float, a vector, a multi-hot row), or a dict
  of them for a model with several outputs;
- sample_weight: a number per example (shape []), or a dict of them matching the labels'.

Dimensions of varying length (`None` in the spec, or ragged elements) are padded per batch to
the batch's longest element, with 0 for numbers and "" for strings.

Example:
  spec = ExampleSpec.of(dataset.element_spec, where="`data.dataset` (my:data) for split 'train'")
  spec.class_ids, spec.input_shape, spec.variable_length
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import tensorflow as tf

from tfdist._input import short
from tfdist.data.options import DataSourceError

_COMPONENTS = (tf.TensorSpec, tf.RaggedTensorSpec)


@dataclasses.dataclass(frozen=True)
class ExampleSpec:
  """The unbatched structure of one example (nested tf.TypeSpecs)."""

  features: Any
  labels: Any
  sample_weight: Any = None  # None: the examples carry no weights

  @classmethod
  def of(cls, element_spec: Any, where: str) -> "ExampleSpec":
    """Checks `element_spec` against the contract (module docstring).

    Raises:
      DataSourceError: one line, starting with `where`, saying what is wrong and what was
        expected.
    """
    if not isinstance(element_spec, tuple) or len(element_spec) not in (2, 3):
      raise DataSourceError(f"{where} gives elements {short(element_spec, 120)}; expected "
                            "(features, label) or (features, label, sample_weight) tuples")
    features, labels, *weight = element_spec
    for path, spec in _flatten(features, "features"):
      if not isinstance(spec, _COMPONENTS):
        raise DataSourceError(f"{where}: {path} is {short(spec, 80)}; expected tensors (dense or "
                              "ragged; convert sparse ones with tf.sparse.to_dense)")
    for path, spec in _flatten(labels, "label"):
      if not isinstance(spec, _COMPONENTS) or not (spec.dtype.is_integer or spec.dtype.is_floating
                                                   or spec.dtype == tf.bool):
        raise DataSourceError(
            f"{where}: {path} is {short(spec, 80)}; expected numbers (a class id, a float, a "
            "vector); map string labels to ids in the data function, e.g. with StringLookup")
    weight = weight[0] if weight else None
    if weight is not None:
      _check_weight(weight, labels, where)
    return cls(features, labels, weight)

  @property
  def class_ids(self) -> bool:
    """The label is one integer class id per example (what tfdist's defaults train)."""
    return (isinstance(self.labels, tf.TensorSpec) and self.labels.dtype.is_integer
            and self.labels.shape.rank == 0)

  @property
  def input_shape(self) -> Optional[tuple]:
    """The features' shape when they are one tensor (None: a dict or tuple of them)."""
    if isinstance(self.features, _COMPONENTS):
      return tuple(self.features.shape)
    return None

  @property
  def variable_length(self) -> bool:
    """Some component has a dimension of varying length: batches are padded."""
    return any(isinstance(spec, tf.RaggedTensorSpec) or not spec.shape.is_fully_defined()
               for _, spec in _flatten(self.element(), "element"))

  def element(self) -> tuple:
    """The element structure: (features, labels[, sample_weight])."""
    return ((self.features, self.labels) if self.sample_weight is None
            else (self.features, self.labels, self.sample_weight))

  def same_structure(self, other: "ExampleSpec") -> bool:
    """Whether `other` nests the same way with the same dtypes (lengths may differ)."""
    try:
      tf.nest.assert_same_structure(self.element(), other.element())
    except (ValueError, TypeError):
      return False
    return all(a.dtype == b.dtype and a.shape.rank == b.shape.rank for a, b in
               zip(tf.nest.flatten(self.element()), tf.nest.flatten(other.element())))

  def describe(self) -> str:
    """One line: e.g. `features {'user': int64[], 'words': string[None]}, label float32[]`."""
    def text(structure):
      return str(tf.nest.map_structure(_name, structure)).replace("'", "")
    weight = "" if self.sample_weight is None else f", sample_weight {text(self.sample_weight)}"
    return f"features {text(self.features)}, label {text(self.labels)}{weight}"


def _name(spec) -> str:
  dims = ",".join("None" if d is None else str(d) for d in spec.shape.as_list())
  return f"{spec.dtype.name}[{dims}]"


def _flatten(structure: Any, name: str) -> list[tuple[str, Any]]:
  """(path, spec) of every component, paths as `features['user']` or `label[1]`."""
  if isinstance(structure, dict):
    return [item for key in sorted(structure, key=str)
            for item in _flatten(structure[key], f"{name}[{key!r}]")]
  if isinstance(structure, (tuple, list)):
    return [item for i, value in enumerate(structure) for item in _flatten(value, f"{name}[{i}]")]
  return [(name, structure)]


def _check_weight(weight: Any, labels: Any, where: str) -> None:
  """A number per example: one, or a dict of them keyed as the labels."""
  if isinstance(weight, dict) != isinstance(labels, dict) or (
      isinstance(weight, dict) and set(weight) - set(labels)):
    raise DataSourceError(f"{where}: sample_weight is {short(weight, 80)}; expected one number "
                          "per example, or a dict of them with the labels' keys")
  for path, spec in _flatten(weight, "sample_weight"):
    if (not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 0
        or not (spec.dtype.is_floating or spec.dtype.is_integer)):
      raise DataSourceError(f"{where}: {path} is {short(spec, 80)}; expected one number per "
                            "example (shape [], unbatched: tfdist batches)")


def dense(*element):
  """Ragged components as dense tensors (padded with 0 or ""), so that they batch."""
  return tf.nest.map_structure(
      lambda t: t.to_tensor() if isinstance(t, tf.RaggedTensor) else t, element)


def batch(ds: tf.data.Dataset, spec: ExampleSpec, size: int,
          drop_remainder: bool) -> tf.data.Dataset:
  """`ds` in batches of `size`; with varying lengths, each padded to its longest element (0 for
  numbers, "" for strings)."""
  if not spec.variable_length:
    return ds.batch(size, drop_remainder=drop_remainder)
  if any(isinstance(s, tf.RaggedTensorSpec) for s in tf.nest.flatten(ds.element_spec)):
    ds = ds.map(dense, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.padded_batch(size, drop_remainder=drop_remainder)
