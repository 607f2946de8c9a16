"""Cluster spec files (YAML or JSON).

    cluster:
      chief:  [127.0.0.1:auto]
      worker: [127.0.0.1:auto, 127.0.0.1:auto]
      ps:     [127.0.0.1:auto]
    evaluator: 1        # optional: one sidecar evaluator, outside the training cluster
"""

from __future__ import annotations

import os

from tfdist import _input
from tfdist.cluster.spec import ClusterSpec, ClusterSpecError

_KEYS = ("cluster", "evaluator")


def load(path: str) -> ClusterSpec:
  """Reads and validates a spec file; JSON is valid YAML, so one parser reads both.

  Raises:
    ClusterSpecError: the file is missing, unparsable or invalid (the message names the field).
  """
  path = os.path.expanduser(path)
  return from_content(_input.load_yaml_file(path, "--cluster_spec", ClusterSpecError), path)


def from_content(content: object, where: str, single_address_as_list: bool = True) -> ClusterSpec:
  """Validates a spec file's parsed content (also what a tfdist pod gets in its environment).

  Raises:
    ClusterSpecError: naming `where` and the field.
  """
  if not isinstance(content, dict):
    raise ClusterSpecError(f"{where}: expected a mapping with a `cluster` key")
  unknown = sorted(map(str, set(content) - set(_KEYS)))
  if unknown:
    raise ClusterSpecError(f"{where}: {unknown[0]}: unknown key; expected {', '.join(_KEYS)}")
  if "cluster" not in content:
    raise ClusterSpecError(f"{where}: cluster: missing; expected task type -> list of host:port")
  evaluators = content.get("evaluator", 0)
  if isinstance(evaluators, bool) or evaluators not in (0, 1):
    raise ClusterSpecError(f"{where}: evaluator: expected 0 or 1, got {evaluators!r}")
  return ClusterSpec.from_dict(content["cluster"], evaluators, field=f"{where}: cluster",
                               single_address_as_list=single_address_as_list)
