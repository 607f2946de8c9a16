"""`tfdist bench [--quick|--tiny] [--out_dir=PATH]`: overhead, scaling, embedding tables, input,
start-up, precision."""

from __future__ import annotations

import os
import platform
import time
from typing import Sequence

from absl import app, flags

from tfdist.bench import report, runs
from tfdist.cli.app import EXIT_OK, native_stderr_to_log, run_command

_QUICK = flags.DEFINE_boolean("quick", False, "Smaller runs: about 15 minutes on 2 CPU cores "
                              "(the full bench: about 40).")
_TINY = flags.DEFINE_boolean("tiny", False, "A few steps per run: checks that the bench works.")
_OUT_DIR = flags.DEFINE_string("out_dir", "/tmp/tfdist/bench", "Where bench.json/.md/.png go.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data dir (default: TFDS's).")


def _say(message: str) -> None:
  print(f"[bench] {message}", flush=True)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])!r}")
  if _QUICK.value and _TINY.value:
    raise app.UsageError("--quick and --tiny: choose one")
  mode = "tiny" if _TINY.value else "quick" if _QUICK.value else "full"
  settings = runs.BenchSettings.mode(mode, _DATA_DIR.value)
  if not os.path.isfile(runs.HANDWRITTEN):
    raise app.UsageError(f"the baseline script {runs.HANDWRITTEN} is missing: run tfdist bench "
                         "from a source checkout (pip install -e .)")
  os.makedirs(_OUT_DIR.value, exist_ok=True)
  started = time.perf_counter()
  _say(f"mode {mode}: overhead ({settings.reps} x {len(runs.OVERHEAD_RUNS)} alternating runs: "
       "hand-written scripts and tfdist)")
  overhead = runs.overhead(settings, _say)
  _say("scaling: 1 worker, 2 MWMS workers, parameter servers")
  scaling = runs.scaling(settings)
  _say("embedding tables under parameter servers: " + ", ".join(
      f"{rows:,} rows" for rows in settings.table_rows))
  tables = runs.embedding_tables(settings)
  _say("input pipeline alone")
  consumption = overhead["median_examples_per_sec"]["tfdist_defaults"]
  with native_stderr_to_log():  # TensorFlow's C++ start-up lines, in this process
    input_rate = runs.input_pipeline(settings, consumption)
    _say("mixed precision")
    precision = runs.mixed_precision(settings)
  results = {
      "mode": mode,
      "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
      "settings": {"epochs": settings.epochs, "steps_per_epoch": settings.steps_per_epoch,
                   "reps": settings.reps, "scaling_global_batch": settings.scaling_batch,
                   "scaling_steps_per_epoch": settings.scaling_steps},
      "overhead": overhead,
      "scaling": scaling,
      "embedding_tables": tables,
      "input": input_rate,
      "startup_seconds": {name: r["seconds_to_first_step"]
                          for name, r in scaling.items()},
      "mixed_precision": precision,
      "bench_seconds": time.perf_counter() - started,
  }
  paths = [report.write_json(results, _OUT_DIR.value), report.write_markdown(results, _OUT_DIR.value),
           report.write_plot(results, _OUT_DIR.value)]
  print(report.markdown(results))
  _say(f"done in {results['bench_seconds']:.0f} s: {', '.join(paths)}")
  return EXIT_OK


def run(argv: Sequence[str]) -> None:
  run_command("bench", main, argv)
