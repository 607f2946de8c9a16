"""Embedding tables read and updated row by row (tfdist/models/row_updates.py), checked
against the update rules written out in NumPy."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tfdist.models import ModelError, generations, row_updates

ROWS, WIDTH = 6, 3


def keras_library(name: str):
  if name == "keras3":
    import keras  # pylint: disable=import-outside-toplevel
    return keras
  return tf_keras


def table(library, values: np.ndarray):
  return (library.Variable(values) if library is not tf_keras
          else tf.Variable(values))


def sparse(ids, values) -> tf.IndexedSlices:
  return tf.IndexedSlices(tf.constant(values, tf.float32), tf.constant(ids, tf.int64),
                          tf.constant([ROWS, WIDTH], tf.int64))


def apply(optimizer, variable, gradient) -> np.ndarray:
  optimizer.apply_gradients([(gradient, variable)])
  return np.array(variable.numpy() if hasattr(variable, "numpy") else variable.value.numpy())


START = np.arange(ROWS * WIDTH, dtype=np.float32).reshape(ROWS, WIDTH) / 10
# Row 1 is looked up twice in the first step: its gradients add up.
STEPS = [([1, 3, 1], [[1.0, 2.0, 3.0], [0.5, 0.5, 0.5], [1.0, -1.0, 0.0]]),
         ([4, 3], [[2.0, 0.0, -2.0], [1.0, 1.0, 1.0]])]


def dense_rows(ids, values) -> np.ndarray:
  grad = np.zeros((ROWS, WIDTH), np.float32)
  np.add.at(grad, ids, np.array(values, np.float32))
  return grad


@pytest.mark.parametrize("library_name", ["tf_keras", "keras3"])
def test_plain_sgd_moves_the_rows_as_the_dense_rule_does(library_name):
  library = keras_library(library_name)
  rows_var, dense_var = table(library, START), table(library, START)
  rows_sgd, dense_sgd = library.optimizers.SGD(0.1), library.optimizers.SGD(0.1)
  assert "exact" in row_updates.update_rows_sparsely(rows_sgd)
  for ids, values in STEPS:
    got = apply(rows_sgd, rows_var, sparse(ids, values))
    want = apply(dense_sgd, dense_var, tf.constant(dense_rows(ids, values)))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert not np.allclose(got, START)


@pytest.mark.parametrize("library_name", ["tf_keras", "keras3"])
def test_adam_is_lazy_touched_rows_by_adams_rule_the_rest_unmoved(library_name):
  library = keras_library(library_name)
  variable = table(library, START)
  adam = library.optimizers.Adam(0.01, beta_1=0.9, beta_2=0.99, epsilon=1e-7)
  assert "lazy" in row_updates.update_rows_sparsely(adam)
  want, m, v = START.copy(), np.zeros_like(START), np.zeros_like(START)
  for step, (ids, values) in enumerate(STEPS, start=1):
    got = apply(adam, variable, sparse(ids, values))
    grad, touched = dense_rows(ids, values), sorted(set(ids))
    alpha = 0.01 * np.sqrt(1 - 0.99 ** step) / (1 - 0.9 ** step)
    m[touched] = 0.9 * m[touched] + 0.1 * grad[touched]
    v[touched] = 0.99 * v[touched] + 0.01 * grad[touched] ** 2
    want[touched] -= alpha * m[touched] / (np.sqrt(v[touched]) + 1e-7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Row 1 had a gradient only in step 1: the dense rule would have moved it again in step 2.
  assert np.array_equal(got[[0, 2, 5]], START[[0, 2, 5]])


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_is_lazy(nesterov):
  variable = tf.Variable(START)
  sgd = tf_keras.optimizers.SGD(0.1, momentum=0.9, nesterov=nesterov)
  row_updates.update_rows_sparsely(sgd)
  want, m = START.copy(), np.zeros_like(START)
  for ids, values in STEPS:
    got = apply(sgd, variable, sparse(ids, values))
    grad, touched = dense_rows(ids, values), sorted(set(ids))
    m[touched] = 0.9 * m[touched] - 0.1 * grad[touched]
    want[touched] += (0.9 * m[touched] - 0.1 * grad[touched]) if nesterov else m[touched]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_dense_gradients_and_amsgrad_keep_the_optimizers_own_rule():
  for make in (lambda: tf_keras.optimizers.Adam(0.01),
               lambda: tf_keras.optimizers.Adam(0.01, amsgrad=True)):
    patched, plain = make(), make()
    row_updates.update_rows_sparsely(patched)
    a, b = tf.Variable(START), tf.Variable(START)
    for ids, values in STEPS:
      gradient = sparse(ids, values) if plain.amsgrad else tf.constant(dense_rows(ids, values))
      np.testing.assert_allclose(apply(patched, a, gradient), apply(plain, b, gradient),
                                 rtol=1e-6)


def test_only_keras_own_sgd_and_adam_get_a_row_rule():
  class MyAdam(tf_keras.optimizers.Adam):
    pass

  for optimizer in (MyAdam(), tf_keras.optimizers.RMSprop()):
    assert row_updates.update_rows_sparsely(optimizer) is None
    assert "update_step" not in vars(optimizer)
  other = tf_keras.optimizers.Adam()
  row_updates.update_rows_sparsely(tf_keras.optimizers.Adam())
  assert "update_step" not in vars(other)  # one instance changes, not the class


def test_a_loss_scale_optimizer_gets_the_rule_on_its_inner_optimizer():
  scaled = tf_keras.mixed_precision.LossScaleOptimizer(tf_keras.optimizers.SGD(0.1))
  assert "exact" in row_updates.update_rows_sparsely(scaled)
  assert "update_step" in vars(scaled.inner_optimizer)


def test_auto_is_rows_under_parameter_servers_only():
  assert row_updates.decide("auto", parameter_servers=True) == "rows"
  assert row_updates.decide("auto", parameter_servers=False) == "dense"
  assert row_updates.decide("rows", parameter_servers=False) == "rows"
  assert row_updates.decide("dense", parameter_servers=True) == "dense"


def big_ops(concrete_function, rows: int) -> list[str]:
  """The ops of a traced step whose output has the whole table's row count."""
  return [op.type for op in concrete_function.graph.get_operations()
          if any(o.shape.rank and o.shape[0] == rows for o in op.outputs)]


def traced_apply(optimizer, variable, gradient):
  @tf.function
  def step(g):
    optimizer.apply_gradients([(g, variable)])
  return step.get_concrete_function(gradient)


@pytest.mark.parametrize("library_name", ["tf_keras", "keras3"])
def test_a_sparse_step_computes_nothing_the_size_of_the_table(library_name):
  library, rows = keras_library(library_name), 1000
  makers = [lambda: library.optimizers.SGD(0.1, momentum=0.9),
            lambda: library.optimizers.Adam(0.01)]
  if library_name == "tf_keras":  # its plain SGD moves every row through a momentum slot;
    makers.append(lambda: library.optimizers.SGD(0.1))  # Keras 3's is already sparse
  for make in makers:
    found = {}
    for rule in ("dense", "rows"):
      variable, optimizer = table(library, np.zeros((rows, WIDTH), np.float32)), make()
      if rule == "rows":
        row_updates.update_rows_sparsely(optimizer)
      gradient = tf.IndexedSlices(tf.ones([2, WIDTH]), tf.constant([1, 7], tf.int64),
                                  tf.constant([rows, WIDTH], tf.int64))
      optimizer.apply_gradients([(gradient, variable)])  # builds the slots
      found[rule] = big_ops(traced_apply(optimizer, variable, gradient), rows)
    assert found["dense"] and not found["rows"], (type(optimizer).__name__, found)


def test_keras3_embeddings_read_only_their_rows():
  import keras  # pylint: disable=import-outside-toplevel
  rows = 10_000
  inputs = keras.Input(shape=(2,), dtype="int64")
  model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Flatten()(
      keras.layers.Embedding(rows, 4)(inputs))))
  ids = tf.constant([[3, 9_999], [3, 0]], tf.int64)
  before = model(ids).numpy()

  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(x))
    return tape.gradient(loss, model.trainable_weights[0])

  assert "ReadVariableOp" in big_ops(tf.function(step).get_concrete_function(ids), rows)
  assert row_updates.read_rows_only(model) == 1
  assert row_updates.read_rows_only(model) == 0  # once
  np.testing.assert_allclose(model(ids).numpy(), before, rtol=1e-6)
  traced = tf.function(step).get_concrete_function(ids)
  assert big_ops(traced, rows) == [], big_ops(traced, rows)
  assert isinstance(step(ids), tf.IndexedSlices)
  assert row_updates.read_rows_only(tf_keras.Sequential([tf_keras.layers.Embedding(5, 2)])) == 0


def test_a_split_keras3_variable_is_a_model_error():
  import keras  # pylint: disable=import-outside-toplevel
  model = keras.Sequential([keras.Input((2,), dtype="int64"), keras.layers.Embedding(8, 2)])
  generations.check_whole_variables(model)  # whole: fine
  layer = model.layers[0]
  shards = [tf.Variable(tf.zeros([4, 2])), tf.Variable(tf.zeros([4, 2]))]
  layer._embeddings._value = tf.__internal__.distribute.ShardedVariable(shards)  # pylint: disable=protected-access
  with pytest.raises(ModelError, match="Keras 3 variables cannot be split over ps tasks.*"
                     "--ps_shard_min_bytes=0"):
    generations.check_whole_variables(model)
