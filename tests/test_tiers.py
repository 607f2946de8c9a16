"""The test tiers' guard (conftest.py): what tier a subprocess needs, and that a test starting
one above its marker fails."""

import subprocess
import sys

import pytest

from tests.conftest import process_tier
from tests.helpers import REPO

PY = sys.executable


@pytest.mark.parametrize("args, env, tier", [
    ([PY, "-m", "tfdist", "train", "--epochs=1"], None, "e2e"),
    ([PY, "-m", "tfdist", "evaluate", "--model_dir=x"], None, "e2e"),
    ([PY, "-m", "tfdist", "nonsense"], None, None),
    ([PY, "-m", "tfdist", "cluster", "validate", "x"], None, None),
    ([PY, "-m", "tfdist", "train", "--help"], None, None),
    ([PY, "-m", "tfdist", "launch", "--cluster_spec=x", "--", "tfdist", "train"], None, "cluster"),
    ([PY, "examples/own_data.py"], None, "e2e"),
    ([PY, "-c", "import tfdist; tfdist.run()"], None, "e2e"),
    ([PY, "-m", "tests.cluster_scripts.pss_ids"], None, "e2e"),
    (["sbatch", "job.sbatch"], None, "cluster"),
    ([PY, "-m", "tfdist", "train"], {"TFDIST_K8S_CLUSTER": "{}"}, "cluster"),
    (["bash", "-c", "true"], None, None),
    # A child that prepares a dataset (tfdist/data/preparing.py) trains nothing.
    ([PY, "-c", "import sys; from tfdist.data.mnist5k import prepare_here; "
      "prepare_here(*sys.argv[1:])", "/tmp/d"], None, None),
    ([PY, "-c", "import sys; from tfdist.job import run; run(*sys.argv[1:])"], None, "e2e"),
])
def test_what_tier_a_process_needs(args, env, tier):
  assert process_tier(args, env) == tier


def test_a_test_that_starts_training_without_its_marker_fails(tmp_path):
  (tmp_path / "test_mismarked.py").write_text(
      "from tests.helpers import run_tfdist\n\n"
      "def test_trains_unmarked():\n"
      "  assert run_tfdist('train', '--epochs=0').returncode == 2\n")
  (tmp_path / "conftest.py").write_text(
      f"import sys\nsys.path.insert(0, {REPO!r})\n"
      "from tests.conftest import _tier_guard, pytest_collection_modifyitems  # noqa\n")
  result = subprocess.run([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
                           f"{REPO}/pyproject.toml", "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert result.returncode == 1, result.stdout[-2000:]
  assert "marked `unit` but starts a process of tier `e2e`" in result.stdout, result.stdout[-2000:]
