"""Models by name for the CLI, and a user's `package.module:function`.

A model function returns a Keras model, compiled or not, and takes what it needs of
MODEL_ARGUMENTS by name (the data's, from `DatasetSource.model_arguments`):

- `input_shape`: the features' shape, when they are one tensor (None for a varying length);
- `num_classes`: the number of classes, when labels are class ids;
- `features_spec`, `labels_spec`: the unbatched structure of the features and labels
  (nested tf.TensorSpecs: a dict of them for dict features), for any data.

Example:
  def recommender(features_spec):            # {"user": int64[], "item": int64[], ...}
    inputs = {k: keras.Input(shape=s.shape, dtype=s.dtype, name=k)
              for k, s in features_spec.items()}
    ...

The built-in models are classifiers on one feature tensor; they output logits.
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
    return with_known_arguments(REGISTRY[name], f"`model.name` ({name!r})")
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
  return with_known_arguments(fn, f"`model.name` ({name!r})")


MODEL_ARGUMENTS = ("input_shape", "num_classes", "features_spec", "labels_spec")
# Why the data has no value for an argument.
_MISSING = {"input_shape": "its features are not one tensor",
            "num_classes": "its labels are not class ids"}


def with_known_arguments(fn: Callable, where: str = "`model_fn`") -> ModelFn:
  """`fn` called with the MODEL_ARGUMENTS it declares (all of them for **kwargs).

  Raises (when called):
    ModelError: `fn` requires an argument the data has no value for (e.g. `num_classes`
      with float labels), naming it and what to ask for instead.
  """
  try:
    params = inspect.signature(fn).parameters
  except (TypeError, ValueError):
    params = {}
  takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
  wanted = [k for k in MODEL_ARGUMENTS if takes_all or k in params]
  required = {k for k in wanted if k in params and params[k].default is inspect.Parameter.empty}

  def check(**available) -> None:
    for key in wanted:
      if available.get(key) is None and key in required:
        raise ModelError(f"{where} takes `{key}`, but the data has none ({_MISSING[key]}); "
                         "take `features_spec` or `labels_spec` instead, or give it a default")

  def build(**available) -> keras.Model:
    check(**available)
    given = {k: available.get(k) for k in wanted if k in required or available.get(k) is not None}
    if given.get("input_shape") is not None:
      given["input_shape"] = tuple(given["input_shape"])
    model = fn(**given)
    generations.generation(model, where)
    return model

  build.check = check  # what `build` would refuse, without building (Job.prepare)
  return build
