"""Models by name for the CLI, and a user's `package.module:function`.

A model function takes `input_shape` and `num_classes` (both optional for a
user's function) and returns a Keras model, compiled or not. Built models
output logits.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, Sequence

import tf_keras as keras

from tfdist._user_code import import_function
from tfdist.models import generations
from tfdist.models.options import BUILTIN_MODELS, ModelError, check_name

ModelFn = Callable[..., keras.Model]


def cnn(input_shape: Sequence[int], num_classes: int) -> keras.Model:
  """Two conv blocks and a dense head (the TF tutorials' MNIST CNN, slightly wider)."""
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=tuple(input_shape)),
      keras.layers.Conv2D(32, 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Conv2D(64, 3, activation="relu"),
      keras.layers.MaxPooling2D(),
      keras.layers.Flatten(),
      keras.layers.Dropout(0.25),
      keras.layers.Dense(128, activation="relu"),
      # float32 logits keep the loss stable under a mixed-precision policy.
      keras.layers.Dense(num_classes, dtype="float32"),
  ], name="cnn")


def mlp(input_shape: Sequence[int], num_classes: int) -> keras.Model:
  """Two hidden layers of 256 units."""
  return keras.Sequential([
      keras.layers.InputLayer(input_shape=tuple(input_shape)),
      keras.layers.Flatten(),
      keras.layers.Dense(256, activation="relu"),
      keras.layers.Dense(256, activation="relu"),
      # float32 logits keep the loss stable under a mixed-precision policy.
      keras.layers.Dense(num_classes, dtype="float32"),
  ], name="mlp")


REGISTRY: dict[str, ModelFn] = {"cnn": cnn, "mlp": mlp}
assert tuple(REGISTRY) == BUILTIN_MODELS


def resolve(name: str) -> ModelFn:
  """A registry name, or `package.module:function` importable from sys.path.

  Example:
    build = resolve("my_models.vision:small_resnet")
    model = build(input_shape=(28, 28, 1), num_classes=10)

  Raises:
    ModelError: unknown name, unimportable module, missing or non-callable function.
  """
  check_name(name)
  if ":" not in name:
    return REGISTRY[name]
  try:
    fn = import_function(name, "model.name", ModelError)
  except ModelError as e:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow":  # Keras 3 on another backend may fail to import at all
      raise ModelError(f"`model.name` ({name!r}): {generations.keras3_version()} runs on the "
                       f"{backend!r} backend (KERAS_BACKEND); tfdist distributes with "
                       f"TensorFlow: set KERAS_BACKEND=tensorflow ({e})") from None
    raise
  generations.check_keras3_backend(f"`model.name` ({name!r})")
  return _with_known_arguments(fn)


def _with_known_arguments(fn: Callable) -> ModelFn:
  """Calls `fn` with only the arguments it declares (input_shape, num_classes)."""
  params = inspect.signature(fn).parameters
  takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())

  def build(input_shape: Sequence[int], num_classes: int) -> keras.Model:
    given = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    model = fn(**{k: v for k, v in given.items() if takes_all or k in params})
    generations.generation(model, f"`model.name` ({fn.__module__}:{fn.__name__})")
    return model

  return build

