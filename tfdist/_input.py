"""Outside input: user-written YAML/JSON files, and quoting user values in one-line errors.

Spec files and experiment configs are outside input: a missing, unreadable,
binary, oversized or malformed file is the user's error, never a traceback.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

# Real spec and config files are a few kB; anything this large is the wrong file.
MAX_BYTES = 1 << 20


def load_yaml_file(path: str, field: str, error: type[Exception],
                   max_bytes: int = MAX_BYTES) -> Any:
  """The parsed content of `path` (None for an empty file).

  Example:
    content = load_yaml_file("configs/clusters/local-ps.yaml", "--cluster_spec", ClusterSpecError)

  Raises:
    error: with a message that starts with `field` and says what was expected.
  """
  if not os.path.isfile(path):
    raise error(f"{field}: no such file {path!r}")
  try:
    size = os.path.getsize(path)
    if size > max_bytes:
      raise error(f"{field}: {path} is {size:,} bytes; expected a YAML/JSON file of at most "
                  f"{max_bytes:,} bytes")
    with open(path, "rb") as f:
      raw = f.read(max_bytes + 1)
  except OSError as e:
    raise error(f"{field}: cannot read {path} ({e.strerror or e})") from None
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    raise error(f"{field}: {path} is not UTF-8 text (byte {e.start}); "
                "expected a YAML/JSON file") from None
  try:
    return yaml.safe_load(text)
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    raise error(f"{field}: {path} is not valid YAML/JSON{where}") from None
  except RecursionError:
    raise error(f"{field}: {path} is nested too deeply to be a YAML/JSON config") from None


def short(value: object, limit: int = 60) -> str:
  """`repr(value)`, cut to `limit` characters: error lines quote user input, which may be huge."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + "..."
