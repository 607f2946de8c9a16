"""`tfdist bench` in its tiny mode: what it writes hangs together (no timing asserts).

Figures are noisy and are never compared to targets here; what must hold is their
structure and the relations between them: medians of the runs, ratios of those
medians, efficiencies by their definition, the table showing the JSON's figures.
"""

import json
import statistics

import pytest

from tests.helpers import assert_usage_error, run_tfdist

pytestmark = pytest.mark.cluster

SCALING = {"1 worker (MWMS)": ("MultiWorkerMirroredStrategy", 1),
           "2 workers (MWMS)": ("MultiWorkerMirroredStrategy", 2),
           "PSS (2 workers + 1 ps)": ("ParameterServerStrategy", 2)}


def test_tiny_bench_figures_hang_together(tmp_path, data_dir):
  result = run_tfdist("bench", "--tiny", f"--out_dir={tmp_path}", f"--data_dir={data_dir}",
                      timeout=600)
  assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
  results = json.loads((tmp_path / "bench.json").read_text())
  assert results["mode"] == "tiny"
  assert results["settings"]["reps"] == 1 and results["settings"]["epochs"] == 2

  overhead = results["overhead"]
  runs, medians = overhead["runs"], overhead["median_examples_per_sec"]
  # --tiny (as --quick) compares one pair of each kind; the full bench all of them.
  assert set(runs) == set(medians) == set(overhead["labels"]) == {
      "handwritten", "tfdist_defaults", "handwritten_mwms", "tfdist_equal_mwms"}
  cpu, cpu_medians = overhead["cpu_ms_per_step"], overhead["median_cpu_ms_per_step"]
  for name, rates in runs.items():
    assert len(rates) == len(cpu[name]) == results["settings"]["reps"]
    assert all(r > 0 for r in rates) and all(c > 0 for c in cpu[name])
    assert medians[name] == statistics.median(rates)
    assert cpu_medians[name] == statistics.median(cpu[name])
  for name, script in overhead["compared_with"].items():
    assert script.startswith("handwritten") and name.endswith("_mwms") == script.endswith("_mwms")
    assert overhead["ratios"][name] == pytest.approx(medians[name] / medians[script])
    assert overhead["cpu_ratios"][name] == pytest.approx(cpu_medians[name] / cpu_medians[script])
  assert overhead["compared_with"] == {"tfdist_defaults": "handwritten",
                                       "tfdist_equal_mwms": "handwritten_mwms"}
  for i, name in enumerate(overhead["labels"]):  # a progress line per run, as it ends
    assert (f"[bench] rep 1/1, run {i + 1}/{len(runs)}: {overhead['labels'][name]}: "
            f"{runs[name][0]:,.0f} examples/s, {cpu[name][0]:.1f} CPU ms/step") in result.stdout

  scaling = results["scaling"]
  assert set(scaling) == set(SCALING)
  base = scaling["1 worker (MWMS)"]["examples_per_sec"]
  for name, (strategy, workers) in SCALING.items():
    row = scaling[name]
    assert row["strategy"] == strategy and row["workers"] == workers
    assert row["efficiency"] == pytest.approx(row["examples_per_sec"] / (base * workers))
    assert results["startup_seconds"][name] == row["seconds_to_first_step"] > 0
  assert scaling["1 worker (MWMS)"]["efficiency"] == pytest.approx(1.0)

  tables = results["embedding_tables"]
  assert [t["rows"] for t in tables.values()] == [10_000, 80_000]  # tiny: 1M and 8M in full
  smallest = tables["10000"]["step_ms"]
  for row in tables.values():
    assert row["strategy"] == "ParameterServerStrategy" and row["step_ms"] > 0
    assert row["vs_smallest"] == pytest.approx(row["step_ms"] / smallest)

  rate = results["input"]
  assert rate["training_consumes"] == medians["tfdist_defaults"]
  assert rate["ratio"] == pytest.approx(rate["examples_per_sec"] / rate["training_consumes"])

  precision = results["mixed_precision"]
  if "skipped" not in precision:
    assert precision["speedup"] == pytest.approx(
        precision["mixed_examples_per_sec"] / precision["float32_examples_per_sec"])

  table = (tmp_path / "bench.md").read_text()
  spread = lambda name: f"{min(runs[name]):,.0f}-{max(runs[name]):,.0f}"  # noqa: E731
  assert (f"| hand-written tf.distribute script (tutorial style, the cnn, Adam) | "
          f"{medians['handwritten']:,.0f} | {spread('handwritten')} | "
          f"{cpu_medians['handwritten']:.1f} | script |") in table
  assert (f"| tfdist, equal settings, 2 workers (MWMS), backups on | "
          f"{medians['tfdist_equal_mwms']:,.0f} | {spread('tfdist_equal_mwms')} | "
          f"{cpu_medians['tfdist_equal_mwms']:.1f} | "
          f"{overhead['ratios']['tfdist_equal_mwms']:.2f}x "
          f"({overhead['cpu_ratios']['tfdist_equal_mwms']:.2f}x) |") in table
  assert_communication_hangs_together(results["communication"], table)
  for name, row in scaling.items():
    assert f"| scaling: {name}, {row['strategy']} | {row['examples_per_sec']:,.0f} | | | " \
           f"efficiency {row['efficiency']:.2f} |" in table
  for row in tables.values():
    assert (f"| recommender, 2 tables of {row['rows']:,} rows, ParameterServerStrategy "
            f"(2 workers, 2 ps): {row['step_ms']:.1f} ms/step, saves excluded | "
            f"{row['examples_per_sec']:,.0f} | | | {row['vs_smallest']:.2f}x") in table
  assert table == result.stdout[result.stdout.index("tfdist bench ("):][:len(table)]
  assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def assert_communication_hangs_together(communication: dict, table: str) -> None:
  """1 worker, 2 on loopback, 2 on an emulated 1 Gbit/s link (CI runs as root) in float32 and
  bfloat16; the 4-worker point against its projection."""
  rows = communication["rows"]
  assert communication["emulated"], communication.get("skipped_links")
  assert list(rows) == ["1 worker, no network", "2 workers (MWMS), loopback, float32",
                        "2 workers (MWMS), 1gbit, float32", "2 workers (MWMS), 1gbit, bfloat16"]
  base = rows["1 worker, no network"]
  assert base["computed_bytes_per_step"] == 0 and base["efficiency"] == pytest.approx(1.0)
  for name, row in rows.items():
    assert row["efficiency"] == pytest.approx(
        row["examples_per_sec"] / (row["workers"] * base["examples_per_sec"]))
    if row["workers"] == 2:
      assert row["communication_share"] == pytest.approx(
          max(0.0, (row["step_ms"] - base["step_ms"]) / row["step_ms"]))
    assert (row["measured_bytes_per_step"] is not None) == (row["link"] == "1gbit"), name
  f32, bf16 = rows["2 workers (MWMS), 1gbit, float32"], rows["2 workers (MWMS), 1gbit, bfloat16"]
  assert bf16["computed_bytes_per_step"] * 2 == f32["computed_bytes_per_step"] == 900_136
  assert (f"| 2 workers (MWMS) | 1gbit | bfloat16 | {bf16['examples_per_sec']:,.0f} | "
          f"{bf16['step_ms']:.1f} | 0.450 MB | "
          f"{bf16['measured_bytes_per_step'] / 1e6:.3f} MB |") in table
  projection = communication["projection"]
  assert projection["compute_ms"] == base["step_ms"] and projection["gradient_bytes"] == 900_136
  assert [(r["link"], r["workers"]) for r in projection["cnn"]] == [  # fastest link first
      (link, n) for link in ("1gbit", "100mbit") for n in (2, 4, 8, 16, 32)]
  four = projection["four_workers"]
  assert four["link"] == "100mbit" and four["gradient_bytes"] == 4 * 269_322  # the mlp
  assert four["computed_bytes_per_step"] == round(1.5 * 4 * 269_322)
  assert f"4 workers measured on this machine (mlp, 100mbit, 16 a replica): " \
         f"{four['measured_step_ms']:.1f} ms/step" in table


@pytest.mark.parametrize("args, fragment", [
    (("--quick", "--tiny"), "--quick and --tiny: choose one"),
    (("--only=overhead,speed",), "--only: unknown section(s) speed; expected some of overhead"),
    (("extra",), "unexpected arguments 'extra'"),
])
def test_bench_usage_errors_are_one_line(tmp_path, args, fragment):
  result = run_tfdist("bench", *args, f"--out_dir={tmp_path / 'out'}")
  assert_usage_error(result, fragment)
  assert not (tmp_path / "out").exists()  # nothing written
