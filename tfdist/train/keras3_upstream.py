"""The one place tfdist reaches into Keras 3's internals, to work around an upstream bug.

Keras 3's `model.fit` builds a model's metrics, loss and optimizer state from its
first batch (`Trainer._maybe_symbolic_build`); under MultiWorkerMirroredStrategy
it first merges that distributed batch with `strategy.reduce`, which fails
(`ValueError: Attempt to convert a value (PerReplica:{...`; keras-team/keras#20585,
tensorflow/tensorflow#72388), and under ParameterServerStrategy `fit` is not
supported at all (keras-team/keras#18624). tfdist runs the model's own
`train_step` in its loop instead, which needs that state built beforehand:
`build_compiled_state` builds it from the shapes of one per-replica batch, as
`_symbolic_build` does for `fit`. tests/test_keras3.py shows the upstream failure;
when it stops failing, this module can go.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def build_compiled_state(model, element_spec: Any, per_replica_batch: int) -> None:
  """Builds a compiled Keras 3 model's variables, metrics and optimizer state from the
  unbatched `element_spec` (features, labels[, sample_weight]) of the data.

  Call inside the strategy's scope, before the first `train_step`.
  """
  batch = tf.nest.map_structure(
      lambda spec: tf.TensorSpec([per_replica_batch, *spec.shape], spec.dtype), element_spec)
  model._symbolic_build(data_batch=batch)  # pylint: disable=protected-access
  if model.optimizer is not None and not model.optimizer.built:
    model.optimizer.build(model.trainable_variables)
