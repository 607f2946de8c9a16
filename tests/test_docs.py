"""The docs that are made from the code, and the links between them."""

import os
import re

from tests.helpers import REPO


def test_the_flag_table_matches_the_flags_and_defaults():
  from tfdist.cli import flag_table
  with open(flag_table.DOC, encoding="utf-8") as f:
    doc = f.read()
  assert doc == flag_table.with_table(doc), (
      "docs/cli.md's flag table is out of date: run python -m tfdist.cli.flag_table --write")


def test_the_readme_is_short_and_every_doc_link_resolves():
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    readme = f.read()
  assert len(readme.splitlines()) <= 200
  docs = os.path.join(REPO, "docs")
  for name in ["README.md"] + [os.path.join("docs", n) for n in os.listdir(docs)
                                if n.endswith(".md")]:
    with open(os.path.join(REPO, name), encoding="utf-8") as f:
      text = f.read()
    for target in re.findall(r"\]\(([^)#\s]+\.(?:md|png))(?:#[^)]*)?\)", text):
      path = os.path.normpath(os.path.join(REPO, os.path.dirname(name), target))
      assert os.path.exists(path), f"{name} links to {target}, which does not exist"


def test_the_layout_table_names_every_module_and_only_modules_that_exist():
  """docs/development.md's layout table: each `folder/file.py` it names exists under tfdist/,
  and every module of a folder is named (a folder named alone, as `launch/`, covers its own)."""
  with open(os.path.join(REPO, "docs", "development.md"), encoding="utf-8") as f:
    table = "\n".join(line for line in f.read().split("## Tests")[0].splitlines()
                      if line.startswith("| `"))
  named = set(re.findall(r"`([a-z_]+/[a-z_0-9]+\.py|[a-z_]+\.py)`", table))
  whole = set(re.findall(r"`([a-z_]+)/`", table))
  assert [n for n in sorted(named) if not os.path.exists(os.path.join(REPO, "tfdist", n))] == []
  modules = {os.path.relpath(os.path.join(folder, n), os.path.join(REPO, "tfdist"))
             for folder, _, files in os.walk(os.path.join(REPO, "tfdist")) for n in files
             if n.endswith(".py") and n != "__init__.py" and not n.startswith("_")}
  unnamed = sorted(m for m in modules if m not in named and m.split(os.sep)[0] not in whole)
  assert unnamed == [], f"docs/development.md's layout table does not name {unnamed}"
