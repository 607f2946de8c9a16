"""A user's `package.module:function`, imported with one-line errors (no TensorFlow import)."""

from __future__ import annotations

import importlib
import re
from typing import Callable

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
FUNCTION_NAME = re.compile(rf"^{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}$")


def is_function_name(name: object) -> bool:
  """True for `package.module:function`."""
  return isinstance(name, str) and bool(FUNCTION_NAME.match(name))


def import_function(name: str, field: str, error: type[Exception]) -> Callable:
  """The function `name` (`package.module:function`) names, importable from sys.path.

  Raises:
    error: the module cannot be imported (or fails while importing: says where),
      or has no such callable; the message starts with `field`.
  """
  module_name, _, attr = name.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise error(f"`{field}` ({name!r}): cannot import {module_name!r} ({e})") from None
  except Exception as e:  # pylint: disable=broad-except
    # The user's module failed while importing (SyntaxError, NameError, ...): name where.
    where = (f"{e.filename}:{e.lineno}" if isinstance(e, SyntaxError)
             else innermost_frame(e.__traceback__))
    raise error(f"`{field}` ({name!r}): importing {module_name!r} raised "
                f"{type(e).__name__}: {e} ({where})") from None
  fn = getattr(module, attr, None)
  if not callable(fn):
    raise error(f"`{field}` ({name!r}): {module_name} has no function {attr!r}")
  return fn


def innermost_frame(tb) -> str:
  """`file:line` where a traceback ends (the user's code, for an error raised there)."""
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
