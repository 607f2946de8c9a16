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
