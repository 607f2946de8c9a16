"""Fixtures (one prepared mnist5k data dir per session) and the test tiers' guard.

Tiers (docs/development.md): `unit` starts no training process, `e2e` one, `cluster`
several (a launcher, SLURM, a simulated Kubernetes job). A test without `e2e` or `cluster`
is `unit`; the guard fails a test that starts processes of a higher tier than its marker.
"""

from __future__ import annotations

import subprocess
from typing import Optional

import pytest

from tests.helpers import REPO  # noqa: F401  (kept importable from here)

TIERS = ("unit", "e2e", "cluster")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir with mnist5k prepared (offline, about a second)."""
  path = str(tmp_path_factory.mktemp("tfds"))
  from tfdist.data import mnist5k
  mnist5k.builder(path)
  return path


def pytest_collection_modifyitems(items):
  for item in items:
    if not any(item.get_closest_marker(tier) for tier in ("e2e", "cluster")):
      item.add_marker(pytest.mark.unit)


def process_tier(args, env: Optional[dict]) -> Optional[str]:
  """The tier a subprocess needs by itself: `cluster` (a launcher, SLURM, a Kubernetes pod),
  `e2e` (tfdist or a script that trains), or None (anything else: `tfdist cluster ...`,
  `--help`, system tools). Several TF_CONFIG tasks in one test are a cluster too (the guard
  counts them)."""
  argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)]
  text = " ".join(argv)
  if ((env or {}).get("TFDIST_K8S_CLUSTER") or "launch" in argv[:4]
      or any(a.rsplit("/", 1)[-1] in ("sbatch", "srun", "slurmctld") for a in argv[:2])):
    return "cluster"
  if any(a in ("--help", "-h") for a in argv) or _prepares_data(argv):
    return None
  if "tfdist" in argv[:3]:  # python -m tfdist COMMAND, or the tfdist console script
    command = argv[argv.index("tfdist") + 1:argv.index("tfdist") + 2]
    return "e2e" if command and command[0] in ("train", "evaluate", "bench") else None
  return "e2e" if "tfdist" in text or "examples/" in text or "cluster_scripts" in text else None


def _prepares_data(argv: list[str]) -> bool:
  """A child that only prepares a dataset (tfdist/data/preparing.py), training nothing."""
  from tfdist.data import preparing
  prefix = preparing.CHILD_CODE.split("{", 1)[0] + "tfdist.data."
  return len(argv) > 2 and argv[1] == "-c" and argv[2].startswith(prefix)


@pytest.fixture(autouse=True)
def _tier_guard(request, monkeypatch):
  started: list[tuple[str, str]] = []
  original = subprocess.Popen.__init__

  def recording_init(self, args, *rest, **kwargs):
    tier = process_tier(args, kwargs.get("env"))
    if tier:
      if tier == "e2e" and (kwargs.get("env") or {}).get("TF_CONFIG"):
        tier = "e2e+tf_config"
      shown = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
      started.append((tier, shown[:160]))
    original(self, args, *rest, **kwargs)

  monkeypatch.setattr(subprocess.Popen, "__init__", recording_init)
  yield
  tasks = [command for tier, command in started if tier == "e2e+tf_config"]
  started = [("cluster" if tier == "e2e+tf_config" and len(tasks) > 1 else
              tier.split("+")[0], command) for tier, command in started]
  allowed = next(t for t in reversed(TIERS) if request.node.get_closest_marker(t))
  for tier, command in started:
    if TIERS.index(tier) > TIERS.index(allowed):
      pytest.fail(f"marked `{allowed}` but starts a process of tier `{tier}`: {command} "
                  f"(mark it @pytest.mark.{tier})", pytrace=False)
