"""The `tfdist train` flag table of docs/cli.md, made from the flags and the options dataclasses
(their one source); a test fails when the doc drifts.

    python -m tfdist.cli.flag_table            # prints the table
    python -m tfdist.cli.flag_table --write    # rewrites it in docs/cli.md
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags

from tfdist import config as config_lib
from tfdist.cli import train

BEGIN, END = "<!-- flags:begin (made by python -m tfdist.cli.flag_table) -->", "<!-- flags:end -->"
DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "docs", "cli.md")
# Flags that set no single config field.
_OTHER_FLAGS = ("config", "params_override", "cluster_spec", "task")


def _default(path: str) -> str:
  section, key = path.split(".")
  key = config_lib.DEPRECATED_KEYS.get((section, key), key)
  field = next(f for f in dataclasses.fields(config_lib.SECTIONS[section]) if f.name == key)
  value = field.default
  if value is None:
    return ""
  return f"`{str(value).lower() if isinstance(value, bool) else value}`" if value != "" else '`""`'



def _cell(text: str) -> str:
  return " ".join(text.split()).replace("|", "\\|")


def markdown_table() -> str:
  """Every `tfdist train` flag: its config field, default and help."""
  rows = ["| flag | config field | default | meaning |", "|---|---|---|---|"]
  for name in _OTHER_FLAGS:
    rows.append(f"| `--{name}` | | | {_cell(flags.FLAGS[name].help)} |")
  for name, (path, _) in train.FIELD_FLAGS.items():
    flag = flags.FLAGS[name]
    meaning = _cell(flag.help)  # absl puts an enum's choices first: <fit|custom>: ...
    section, key = path.split(".")
    current = config_lib.DEPRECATED_KEYS.get((section, key))
    field = f"`{section}.{current}`" if current else f"`{path}`"
    rows.append(f"| `--{name}` | {field} | {_default(path)} | {meaning} |")
  return "\n".join(rows) + "\n"


def with_table(doc: str) -> str:
  """`doc` with the text between BEGIN and END replaced by the current table."""
  start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
  return doc[:start] + "\n" + markdown_table() + doc[end:]


if __name__ == "__main__":
  if sys.argv[1:] == ["--write"]:
    with open(DOC, encoding="utf-8") as f:
      text = f.read()
    with open(DOC, "w", encoding="utf-8") as f:
      f.write(with_table(text))
  else:
    sys.stdout.write(markdown_table())
