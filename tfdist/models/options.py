"""Model options and errors (no TensorFlow import)."""

from __future__ import annotations

import dataclasses

BUILTIN_MODELS = ("cnn", "mlp")


class ModelError(ValueError):
  """The model name or user function is invalid; the message names `model.name`."""


def check_name(name: str) -> None:
  if ":" not in name and name not in BUILTIN_MODELS:
    raise ModelError(f"`model.name` ({name!r}) must be one of {', '.join(BUILTIN_MODELS)} "
                     "or package.module:function")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """Attributes:
    name: a registry name (cnn, mlp) or `package.module:function`.
  """

  name: str = "cnn"

  def __post_init__(self):
    check_name(self.name)
