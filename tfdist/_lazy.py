"""Lazy package attributes, so importing options never imports TensorFlow."""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
  """A module `__getattr__` that imports `package.names[name]` on first use.

  Example (in a package's __init__.py):
    __getattr__ = attributes(__name__, {"load_source": "sources"})
  """

  def getattr_(name: str) -> Any:
    if name not in names:
      raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

  return getattr_
