"""Embedding tables updated row by row: a step writes only the rows its batch looked up.

An embedding's gradient is sparse (`tf.IndexedSlices`: the batch's rows), but the optimizers
spend it densely. tf_keras's SGD always creates a momentum slot and moves the whole table
through it; tf_keras's and Keras 3's Adam decay both moments of every row. Under
ParameterServerStrategy each of those is the whole table read and written on its ps task
every step, so the step time grows with the table (a 1M-row table: 42 ms for SGD's apply,
4M rows: 366 ms). Here SGD and Adam get a row rule for sparse gradients:

- SGD without momentum: only the touched rows move, by the same amount: exact.
- SGD with momentum, Adam: "lazy" (TF Addons' LazyAdam): the touched rows' slots are read,
  updated and written back; rows a step does not touch keep their slots and value, where the
  dense rule would decay their moments and go on moving them.

Dense gradients (every other variable) keep the optimizer's own rule.

Reading has the same problem in Keras 3: its `Embedding` gathers with `ops.take`, which
turns the table into one tensor first; on a ps task that is the whole table sent to the
worker every step (1M x 8 rows under ParameterServerStrategy: 27 ms a forward step, 4M:
182 ms). `read_rows_only` makes Keras 3 embeddings look up their rows where the table lives,
as tf_keras's do (6 ms at both sizes).
"""

from __future__ import annotations

import types
from typing import Callable, Optional

import tensorflow as tf

from tfdist.models import generations
from tfdist.models.options import SPARSE_UPDATES

AUTO, ROWS, DENSE = SPARSE_UPDATES  # DENSE: the libraries' own rules


def decide(choice: str, parameter_servers: bool) -> str:
  """ROWS or DENSE for `--sparse_updates=choice`."""
  if choice == AUTO:
    return ROWS if parameter_servers else DENSE
  return choice


def read_rows_only(model) -> int:
  """Makes each Keras 3 `Embedding` of `model` (exactly that class, without LoRA or
  quantization at call time) look up its rows with `tf.nn.embedding_lookup` on the table's
  own variable; returns how many it changed. tf_keras embeddings already do (0).
  """
  if generations.generation(model) != generations.KERAS3:
    return 0
  embedding_class = generations.keras_of(generations.KERAS3).layers.Embedding
  changed = 0
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if type(layer) is not embedding_class or getattr(layer, "_tfdist_rows_only", False):
      continue
    object.__setattr__(layer, "call", types.MethodType(_lookup_rows(layer.call), layer))
    object.__setattr__(layer, "_tfdist_rows_only", True)
    changed += 1
  return changed


def _lookup_rows(keras_call: Callable) -> Callable:
  def call(self, inputs):
    if self.lora_enabled or self.quantization_mode is not None:
      return keras_call(inputs)  # the table is computed from other variables
    if inputs.dtype not in (tf.int32, tf.int64):
      inputs = tf.cast(inputs, tf.int32)
    rows = tf.nn.embedding_lookup(_tensor_variable(self._embeddings), inputs)  # pylint: disable=protected-access
    return tf.cast(rows, self.compute_dtype)
  return call


def update_rows_sparsely(optimizer) -> Optional[str]:
  """Makes `optimizer` (tf_keras or Keras 3 SGD/Adam, not a subclass) update only the rows
  of a sparse gradient; returns how, in words, or None when it has no row rule (the
  optimizer is left as it was).

  Example:
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), ...)
    update_rows_sparsely(model.optimizer)  # -> "Adam: lazy (...)"
  """
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
  kind = _kind(optimizer)
  if kind is None:
    return None
  if getattr(optimizer, "amsgrad", False):
    return "Adam with amsgrad: the dense rule (no row rule for amsgrad)"
  if not getattr(optimizer, "_tfdist_row_updates", False):
    _replace_update_step(optimizer, _RULES[kind])
  if kind == "SGD" and not float(optimizer.momentum):
    return "SGD: sparse gradients move only their rows (exact)"
  return (f"{kind}: lazy, sparse gradients update only their rows and the rows' slots "
          "(rows a step does not touch keep their slots)")


def _replace_update_step(optimizer, rule: Callable) -> None:
  """`optimizer.update_step` spends sparse gradients by `rule`, dense ones as before."""
  dense_step = optimizer.update_step
  keras3 = _is_keras3(optimizer)

  def update_step(self, gradient, variable, *learning_rate):
    if not isinstance(gradient, tf.IndexedSlices):
      return dense_step(gradient, variable, *learning_rate)
    lr = learning_rate[0] if keras3 else self.learning_rate
    return rule(self, gradient, variable, tf.cast(lr, variable.dtype))

  # An attribute of this instance only: the user's class and other instances are untouched.
  object.__setattr__(optimizer, "update_step", types.MethodType(update_step, optimizer))
  object.__setattr__(optimizer, "_tfdist_row_updates", True)


def _is_keras3(optimizer) -> bool:
  return type(optimizer).__module__.startswith("keras.")


def _kind(optimizer) -> Optional[str]:
  """"SGD" or "Adam" when `optimizer` is exactly Keras's (either library), else None."""
  name = type(optimizer).__name__
  if name not in ("SGD", "Adam"):
    return None
  library = generations.keras_of(generations.KERAS3 if _is_keras3(optimizer)
                                 else generations.KERAS2)
  return name if type(optimizer) is getattr(library.optimizers, name, None) else None


# --- The rules: `gradient` is an IndexedSlices, `lr` a scalar of the variable's dtype. ---

def _rows(gradient: tf.IndexedSlices) -> tuple[tf.Tensor, tf.Tensor]:
  """(unique row ids, each one's summed gradient): a row looked up twice is written once."""
  ids, position = tf.unique(gradient.indices)
  return ids, tf.math.unsorted_segment_sum(gradient.values, position, tf.shape(ids)[0])


def _tensor_variable(variable):
  """The tf.Variable (or ShardedVariable) under a Keras 3 variable; itself otherwise."""
  return variable.value if hasattr(variable, "_value") and not isinstance(
      variable, tf.Variable) else variable


def _read(variable, ids: tf.Tensor) -> tf.Tensor:
  # embedding_lookup reads rows on the variable's own device, shard by shard when sharded.
  return tf.nn.embedding_lookup(_tensor_variable(variable), ids)


def _write(variable, ids: tf.Tensor, values: tf.Tensor) -> None:
  _tensor_variable(variable).scatter_update(tf.IndexedSlices(values, ids))


def _add(variable, ids: tf.Tensor, values: tf.Tensor) -> None:
  _tensor_variable(variable).scatter_add(tf.IndexedSlices(values, ids))


def _slot(optimizer, variable, name: str):
  """`variable`'s slot `name` (e.g. `_momentums`): both libraries name their lists alike."""
  if _is_keras3(optimizer):
    return getattr(optimizer, name)[optimizer._get_variable_index(variable)]  # pylint: disable=protected-access
  return getattr(optimizer, name)[optimizer._index_dict[optimizer._var_key(variable)]]  # pylint: disable=protected-access


def _sgd(optimizer, gradient: tf.IndexedSlices, variable, lr: tf.Tensor) -> None:
  ids, grad = _rows(gradient)
  grad = tf.cast(grad, variable.dtype)
  momentum = float(optimizer.momentum)
  if not momentum:
    _add(variable, ids, -lr * grad)
    return
  m = _slot(optimizer, variable, "momentums")
  m_rows = momentum * _read(m, ids) - lr * grad
  _write(m, ids, m_rows)
  _add(variable, ids, momentum * m_rows - lr * grad if optimizer.nesterov else m_rows)


def _adam(optimizer, gradient: tf.IndexedSlices, variable, lr: tf.Tensor) -> None:
  ids, grad = _rows(gradient)
  grad = tf.cast(grad, variable.dtype)
  step = tf.cast(optimizer.iterations + 1, variable.dtype)
  beta_1, beta_2 = (tf.cast(optimizer.beta_1, variable.dtype),
                    tf.cast(optimizer.beta_2, variable.dtype))
  beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
  alpha = lr * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
  epsilon = tf.cast(optimizer.epsilon, variable.dtype)
  if getattr(optimizer, "adaptive_epsilon", False):  # tf_keras's option, as its dense rule
    epsilon = epsilon * tf.sqrt(1 - beta_2_power)
  m = _slot(optimizer, variable, "_momentums")
  v = _slot(optimizer, variable, "_velocities")
  m_rows = beta_1 * _read(m, ids) + (1 - beta_1) * grad
  v_rows = beta_2 * _read(v, ids) + (1 - beta_2) * tf.square(grad)
  _write(m, ids, m_rows)
  _write(v, ids, v_rows)
  _add(variable, ids, -alpha * m_rows / (tf.sqrt(v_rows) + epsilon))


_RULES: dict[str, Callable] = {"SGD": _sgd, "Adam": _adam}
