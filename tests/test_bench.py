"""`tfdist bench` in its tiny mode: it runs and writes valid JSON, markdown and a PNG (no timing asserts)."""

import json

import pytest

from tests.conftest import run_tfdist

pytestmark = pytest.mark.cluster


def test_tiny_bench_writes_json_markdown_and_png(tmp_path, data_dir):
  result = run_tfdist("bench", "--tiny", f"--out_dir={tmp_path}", f"--data_dir={data_dir}",
                      timeout=600)
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  results = json.loads((tmp_path / "bench.json").read_text())
  assert results["mode"] == "tiny"
  medians = results["overhead"]["median_examples_per_sec"]
  assert set(medians) == {"handwritten", "tfdist_equal", "tfdist_defaults"}
  assert all(v > 0 for v in medians.values())
  assert set(results["scaling"]) == {"1 worker (MWMS)", "2 workers (MWMS)", "PSS (2 workers + 1 ps)"}
  assert results["scaling"]["2 workers (MWMS)"]["strategy"] == "MultiWorkerMirroredStrategy"
  assert results["input"]["examples_per_sec"] > 0
  assert len(results["startup_seconds"]) == 3
  assert "skipped" in results["mixed_precision"] or results["mixed_precision"]["speedup"] > 0
  table = (tmp_path / "bench.md").read_text()
  assert "| hand-written tf.distribute script" in table and "start-up" in table
  assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
