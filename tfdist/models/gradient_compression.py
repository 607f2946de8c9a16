"""Gradients all-reduced in 16 bits: cast before the all-reduce, cast back after (Horovod's
fp16 compression), so the replicas exchange half the bytes.

Every Keras optimizer sums the replicas' gradients itself, in `apply_gradients`: tf_keras's
through `aggregate_gradients` (its legacy optimizers through `gradient_aggregator`), Keras 3's
through `_all_reduce_sum_gradients`. `compress_all_reduce` replaces that one method on one
optimizer instance, so `fit`, the custom loop and a model's own `train_step` all send 16-bit
gradients. What stays as it was:

- sparse gradients (`tf.IndexedSlices`, an embedding's rows): all-gathered, not summed, so they
  keep their dtype;
- gradients already as narrow as the all-reduce dtype (a float16 variable's), or not floating.

The sum is taken in 16 bits: bfloat16 keeps float32's range with an 8-bit mantissa (about 3
significant digits); float16 keeps 11 bits but overflows above 65,504 (GPUs with loss scaling).
"""

from __future__ import annotations

import types
from typing import Callable

import tensorflow as tf



def compress_all_reduce(optimizer, dtype: str) -> bool:
  """Makes `optimizer` (any tf_keras or Keras 3 optimizer, or a LossScaleOptimizer around one)
  all-reduce its dense floating gradients as `dtype`; False when `dtype` is float32 (nothing
  to do) or the optimizer has no aggregation method tfdist knows.

  Example:
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3), ...)
    compress_all_reduce(model.optimizer, "bfloat16")  # True
  """
  if dtype == "float32":
    return False
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # under a LossScaleOptimizer
  wire = tf.as_dtype(dtype)
  if getattr(optimizer, "_tfdist_allreduce_dtype", None) == dtype:
    return True
  if hasattr(optimizer, "gradient_aggregator"):  # tf_keras's legacy optimizers: an attribute
    object.__setattr__(optimizer, "gradient_aggregator", lambda pairs: all_reduce_as(pairs, wire))
  else:
    method = next((name for name in ("_all_reduce_sum_gradients", "aggregate_gradients")
                   if callable(getattr(optimizer, name, None))), None)
    if method is None:
      return False
    # An attribute of this instance only: the user's class and other instances are untouched.
    object.__setattr__(optimizer, method, types.MethodType(_aggregate(wire), optimizer))
  object.__setattr__(optimizer, "_tfdist_allreduce_dtype", dtype)
  return True


def _aggregate(wire: tf.DType) -> Callable:
  def aggregate(self, grads_and_vars):  # pylint: disable=unused-argument
    return all_reduce_as(grads_and_vars, wire)
  return aggregate


def all_reduce_as(grads_and_vars, wire: tf.DType) -> list:
  """The (gradient, variable) pairs with their gradients summed over the replicas, dense
  floating ones wider than `wire` sent as `wire` (call in replica context). None gradients
  stay None; with no replica context (no strategy) the pairs come back as they are.
  """
  pairs = list(grads_and_vars)
  context = tf.distribute.get_replica_context()
  present = [i for i, (g, _) in enumerate(pairs) if g is not None]
  if context is None or not present:
    return pairs
  sent = []
  for i in present:
    gradient = pairs[i][0]
    narrow = (not isinstance(gradient, tf.IndexedSlices) and gradient.dtype.is_floating
              and gradient.dtype.size > wire.size)
    sent.append(tf.cast(gradient, wire) if narrow else gradient)
  # One call for all of them: the strategy packs them into as few collectives as it can.
  summed = context.all_reduce(tf.distribute.ReduceOp.SUM, sent)
  for i, total in zip(present, summed):
    gradient, variable = pairs[i]
    pairs[i] = (total if isinstance(total, tf.IndexedSlices)
                else tf.cast(total, gradient.dtype), variable)
  return pairs
