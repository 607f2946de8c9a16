"""Model options and errors (no TensorFlow import)."""

from __future__ import annotations

import dataclasses

from tfdist._input import short
from tfdist._user_code import is_function_name

BUILTIN_MODELS = ("cnn", "mlp")
# How embedding tables are read and updated (row_updates.py): auto is rows under
# ParameterServerStrategy, where the tables live on ps tasks, else dense.
SPARSE_UPDATES = ("auto", "rows", "dense")


class ModelError(ValueError):
  """The model name or user function is invalid; the message names `model.name`."""


def check_name(name: str) -> None:
  """Raises ModelError unless `name` is a registry name or `package.module:function`."""
  if name not in BUILTIN_MODELS and not is_function_name(name):
    raise ModelError(f"`model.name` ({short(name)}) must be one of {', '.join(BUILTIN_MODELS)} "
                     "or package.module:function")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  """Attributes:
    name: a registry name (cnn, mlp) or `package.module:function`.
  """

  name: str = "cnn"

  def __post_init__(self):
    check_name(self.name)
