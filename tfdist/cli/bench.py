"""`tfdist bench [--quick|--tiny] [--out_dir=PATH]`: overhead, scaling, embedding tables,
communication (on emulated links), input, start-up, precision."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Sequence

from absl import app, flags

from tfdist.bench import communication, report, runs
from tfdist.cli.app import EXIT_OK, native_stderr_to_log, run_command

_QUICK = flags.DEFINE_boolean("quick", False, "Fewer runs: overhead pairs, communication on "
                              "1 Gbit/s, input; about 5 minutes on 2 CPU cores (the full bench: "
                              "about 60).")
_TINY = flags.DEFINE_boolean("tiny", False, "A few steps per run: checks that the bench works.")
_ONLY = flags.DEFINE_list(
    "only", None, "Run only these sections (comma-separated): overhead, scaling, "
    "embedding_tables, communication, mixed_precision; the input pipeline always runs.")
_OUT_DIR = flags.DEFINE_string("out_dir", "/tmp/tfdist/bench", "Where bench.json/.md/.png go.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).")


def _say(message: str) -> None:
  print(f"[bench] {message}", flush=True)


def _can_emulate_links() -> bool:
  # pylint: disable-next=import-outside-toplevel
  from tfdist.launch.emulated_link import LinkError, check_host
  try:
    check_host()
  except LinkError:
    return False
  return True


def _settings() -> tuple[str, runs.BenchSettings]:
  """The mode and its settings, from the flags (a bad combination is a UsageError)."""
  if _QUICK.value and _TINY.value:
    raise app.UsageError("--quick and --tiny: choose one")
  mode = "tiny" if _TINY.value else "quick" if _QUICK.value else "full"
  settings = runs.BenchSettings.mode(mode, _DATA_DIR.value)
  if _ONLY.value:
    unknown = sorted(set(_ONLY.value) - set(runs.SECTIONS) - {"input"})
    if unknown:
      raise app.UsageError(f"--only: unknown section(s) {', '.join(unknown)}; expected some of "
                           f"{', '.join(runs.SECTIONS)}")
    settings = dataclasses.replace(settings, sections=tuple(_ONLY.value))
  return mode, settings


def _measure(mode: str, settings: runs.BenchSettings) -> dict:
  """Runs the chosen sections, then the input pipeline; returns bench.json's content."""
  sections = settings.sections
  results = {
      "mode": mode,
      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
      "settings": {"epochs": settings.epochs, "steps_per_epoch": settings.steps_per_epoch,
                   "reps": settings.reps, "scaling_global_batch": settings.scaling_batch,
                   "scaling_steps_per_epoch": settings.scaling_steps,
                   "sections": list(sections)},
  }
  if "overhead" in sections:
    runs_count = len(settings.overhead_runs or runs.OVERHEAD_RUNS)
    _say(f"mode {mode}: overhead ({settings.reps} x {runs_count} alternating runs: "
         "hand-written scripts and tfdist)")
    results["overhead"] = runs.overhead(settings, _say)
  if "scaling" in sections:
    _say("scaling: 1 worker, 2 MWMS workers, parameter servers")
    results["scaling"] = runs.scaling(settings)
  if "embedding_tables" in sections:
    _say("embedding tables under parameter servers: " + ", ".join(
        f"{rows:,} rows" for rows in settings.table_rows))
    results["embedding_tables"] = runs.embedding_tables(settings)
  if "communication" in sections:
    plan = communication.CommunicationPlan.mode(mode)
    emulate = _can_emulate_links()
    _say("communication: 1 vs 2 workers on loopback" + (
        f" and on emulated links ({', '.join(plan.links)})" if emulate else
        " (emulated links skipped: they need root on Linux)"))
    results["communication"] = communication.measure(settings, plan, emulate, _say)
  _say("input pipeline alone")
  consumption = (results.get("overhead") or {}).get("median_examples_per_sec", {}).get(
      "tfdist_defaults")
  with native_stderr_to_log():  # TensorFlow's C++ start-up lines, in this process
    results["input"] = runs.input_pipeline(settings, consumption)
    if "mixed_precision" in sections:
      _say("mixed precision")
      results["mixed_precision"] = runs.mixed_precision(settings)
  startup = results.get("scaling") or {  # else the communication section's, on loopback
      name: r for name, r in (results.get("communication") or {}).get("rows", {}).items()
      if r["link"] in (None, communication.LOOPBACK) and r["allreduce_dtype"] == "float32"}
  results["startup_seconds"] = {name: r["seconds_to_first_step"] for name, r in startup.items()}
  return results


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])!r}")
  mode, settings = _settings()
  if not os.path.isfile(runs.HANDWRITTEN):
    raise app.UsageError(f"the baseline script {runs.HANDWRITTEN} is missing: run tfdist bench "
                         "from a source checkout (pip install -e .)")
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  started = time.perf_counter()
  results = _measure(mode, settings)
  results["bench_seconds"] = time.perf_counter() - started
  out = _OUT_DIR.value
  paths = [report.write_json(results, out), report.write_markdown(results, out),
           report.write_plot(results, out)]
  if "communication" in results:
    paths.append(report.write_communication_plot(results, out))
  print(report.markdown(results))
  _say(f"done in {results['bench_seconds']:.0f} s: {', '.join(paths)}")
  return EXIT_OK


def run(argv: Sequence[str]) -> None:
  run_command("bench", main, argv)
