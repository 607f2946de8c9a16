"""Cluster spec files (YAML or JSON).

    cluster:
      chief:  [127.0.0.1:auto]
      worker: [127.0.0.1:auto, 127.0.0.1:auto]
      ps:     [127.0.0.1:auto]
    evaluator: 1        # optional: one sidecar evaluator, outside the training cluster
"""

from __future__ import annotations

import os

import yaml

from tfdist.cluster.spec import ClusterSpec, ClusterSpecError

_KEYS = ("cluster", "evaluator")


def load(path: str) -> ClusterSpec:
  """Reads and validates a spec file; JSON is valid YAML, so one parser reads both.

  Raises:
    ClusterSpecError: the file is missing, unparsable or invalid (the message names the field).
  """
  if not os.path.isfile(path):
    raise ClusterSpecError(f"--cluster_spec: no such file {path!r}")
  try:
    with open(path, encoding="utf-8") as f:
      content = yaml.safe_load(f)
  except yaml.YAMLError as e:
    mark = getattr(e, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark else ""
    raise ClusterSpecError(f"{path}: not valid YAML/JSON{where}") from None
  if not isinstance(content, dict):
    raise ClusterSpecError(f"{path}: expected a mapping with a `cluster` key")
  unknown = sorted(set(content) - set(_KEYS))
  if unknown:
    raise ClusterSpecError(f"{path}: {unknown[0]}: unknown key; expected {', '.join(_KEYS)}")
  if "cluster" not in content:
    raise ClusterSpecError(f"{path}: cluster: missing; expected task type -> list of host:port")
  evaluators = content.get("evaluator", 0)
  if isinstance(evaluators, bool) or evaluators not in (0, 1):
    raise ClusterSpecError(f"{path}: evaluator: expected 0 or 1, got {evaluators!r}")
  return ClusterSpec.from_dict(content["cluster"], evaluators, field=f"{path}: cluster")
