"""The two Keras generations a model may come from, and what differs between them.

tf_keras (Keras 2, `import tf_keras`, or `tf.keras` with TF_USE_LEGACY_KERAS=1) and
Keras 3 (`import keras`, or `tf.keras` with TF_USE_LEGACY_KERAS=0) build models
tfdist trains alike; they differ in how weights are saved and loaded, how a model
is exported, and which optimizers and policies apply to it. Everything here looks
at the model (or at what is already imported): Keras 3 is imported only by users
who use it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import sys
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras

from tfdist.models.options import ModelError

KERAS2 = "tf_keras"
KERAS3 = "keras3"


def _keras3() -> Any:
  import keras  # pylint: disable=import-outside-toplevel
  return keras


def generation(model: object, where: str = "`model.name`") -> str:
  """KERAS2 or KERAS3.

  Raises:
    ModelError: `model` is no Keras model, or a Keras 3 model on a backend other than
      TensorFlow (named, with what to do).
  """
  if isinstance(model, tf_keras.Model):
    return KERAS2
  if "keras" in sys.modules and isinstance(model, _keras3().Model):
    check_keras3_backend(where)
    return KERAS3
  raise ModelError(f"{where}: returned {type(model).__module__}.{type(model).__name__}; expected a "
                   "Keras model (Keras 3 `keras.Model`, or tf_keras / Keras 2)")


def check_keras3_backend(where: str = "`model.name`") -> None:
  """Keras 3 must run on TensorFlow here (tf.distribute is TensorFlow's)."""
  if "keras" not in sys.modules:
    return
  keras = _keras3()
  if keras.backend.backend() != "tensorflow":
    raise ModelError(
        f"{where}: Keras {keras.__version__} runs on the {keras.backend.backend()!r} backend; "
        "tfdist distributes with TensorFlow: set KERAS_BACKEND=tensorflow (or \"backend\": "
        "\"tensorflow\" in ~/.keras/keras.json)")


def check_whole_variables(model, where: str = "`model.name`") -> None:
  """Raises ModelError when a Keras 3 variable was split over ps tasks: TensorFlow's
  GradientTape takes a Keras 3 variable for one resource variable (`.handle`), which a
  ShardedVariable is not, so the first step would fail deep inside Keras."""
  if generation(model, where) != KERAS3:
    return
  split = [v.path for v in model.weights
           if isinstance(getattr(v, "value", None), tf.__internal__.distribute.ShardedVariable)]
  if split:
    raise ModelError(
        f"{where}: Keras 3 variables cannot be split over ps tasks (TensorFlow cannot "
        f"differentiate them), and {', '.join(split[:3])} would be; set "
        "--ps_shard_min_bytes=0 to keep each variable whole on one ps task, or build the "
        "model with tf_keras, whose variables can be split")


def keras3_version() -> str:
  """E.g. `Keras 3.15.1`, without importing it."""
  try:
    return f"Keras {importlib.metadata.version('keras')}"
  except importlib.metadata.PackageNotFoundError:
    return "Keras 3"


def describe(gen: str) -> str:
  """E.g. `Keras 3.15.1` or `tf_keras 2.21.0`."""
  return f"Keras {_keras3().__version__}" if gen == KERAS3 else f"tf_keras {tf_keras.__version__}"


def keras_of(gen: str) -> Any:
  """The Keras package of a generation (its optimizers, losses, callbacks, ...)."""
  return _keras3() if gen == KERAS3 else tf_keras


def outputs_probabilities(model) -> bool:
  """True when the last layer is a softmax; tfdist's own models output logits."""
  keras = keras_of(generation(model))
  return getattr(model.layers[-1], "activation", None) is keras.activations.softmax


def weights_checkpoint(model) -> tf.train.Checkpoint:
  """A checkpoint of the model's weights, in the format its Keras reads back.

  tf_keras's `save_weights` writes the model as the checkpoint's root (and with it the
  optimizer of a compiled model); Keras 3 saves weights only as `.weights.h5`, so its
  models are written as a `model` child (their variables are trackable). Owning the
  object lets a caller write in the background (`write(..., options=...)`, `sync()`).
  """
  if generation(model) == KERAS3:
    return tf.train.Checkpoint(model=model)
  return tf.train.Checkpoint(root=model)


def checkpoint_random_state(model) -> int:
  """Makes the model's random draws (Dropout and other random layers) part of its checkpoints,
  so a run resumed from a backup draws what the uninterrupted run drew; returns how many
  random layers it found.

  tf_keras draws from TensorFlow's per-op random state unless its random generator is on
  (`tf_keras.backend.experimental.enable_tf_random_generator()`, before the model is built);
  then each random layer has a tf.random.Generator. Keras 3 layers draw from seed generators
  with a state variable. Neither Keras puts these in TF checkpoints: a module holding them
  becomes a dependency of the model (not a weight: `model.weights` stays as it was).
  """
  if generation(model) == KERAS2:
    states = [layer._random_generator._generator  # pylint: disable=protected-access
              for layer in model.submodules if isinstance(layer, tf_keras.layers.Layer)
              and getattr(getattr(layer, "_random_generator", None), "_generator", None)]
  else:
    states = [seeds.state.value for layer in model._flatten_layers()  # pylint: disable=protected-access
              for seeds in getattr(layer, "_seed_generators", [])]
  if states:
    holder = tf.Module()
    holder.states = states
    model._tfdist_random_state = holder  # pylint: disable=protected-access
  return len(states)


def weights_sha256(model) -> str:
  """A digest of the model's weights: each one's dtype, shape and values, in the model's
  order (the same for a model built by the same code), whatever the checkpoint format or
  the strategy (a mirrored weight counts once, a weight split over ps tasks whole).

  Example:
    weights_sha256(model)  # 'c0ffee...' (64 hex digits); equal digests: equal weights
  """
  digest = hashlib.sha256()
  for weight in model.weights:
    value = np.ascontiguousarray(tf.convert_to_tensor(weight).numpy())
    digest.update(f"{value.dtype.str}{value.shape};".encode())
    digest.update(value.tobytes())
  return digest.hexdigest()


def save_weights(model, prefix: str) -> None:
  """A TF checkpoint of the weights at `prefix` (`prefix.index`, `prefix.data-*`)."""
  weights_checkpoint(model).write(prefix)


def load_weights(model, prefix: str):
  """Loads `save_weights`'s checkpoint; returns the load status (assert_* / expect_partial)."""
  if generation(model) == KERAS3:
    return tf.train.Checkpoint(model=model).read(prefix)
  return model.load_weights(prefix)


def export(model, path: str) -> None:
  """A SavedModel at `path`: tf_keras's `model.save`, Keras 3's `model.export` (`serve`)."""
  if generation(model) == KERAS3:
    model.export(path, format="tf_saved_model", verbose=False)
  else:
    model.save(path)


def set_mixed_precision(precision: str) -> None:
  """Sets both generations' global dtype policy for tfdist's `mixed_precision` option: `off`
  (and `auto`, once decided elsewhere) is float32, `bfloat16`/`float16` are Keras's
  `mixed_bfloat16`/`mixed_float16`. Layers take the policy when created."""
  policy = "float32" if precision in ("off", "auto") else f"mixed_{precision}"
  tf_keras.mixed_precision.set_global_policy(policy)
  if "keras" in sys.modules:  # Keras 3 is in use only once imported
    _keras3().config.set_dtype_policy(policy)


def set_random_seed(seed: int) -> None:
  tf_keras.utils.set_random_seed(seed)
  if "keras" in sys.modules:
    _keras3().utils.set_random_seed(seed)
