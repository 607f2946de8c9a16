"""The measurements behind `tfdist bench`, each in fresh processes (a strategy is per process)."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

from tfdist.train import precision

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANDWRITTEN = os.path.join(REPO, "benchmarks", "handwritten.py")
RECOMMENDER = os.path.join(REPO, "examples", "recommender.py")
SPECS = os.path.join(REPO, "configs", "clusters")
# What `tfdist bench` measures (and `--only` chooses from); the input pipeline always runs.
SECTIONS = ("overhead", "scaling", "embedding_tables", "communication", "mixed_precision")


class BenchError(RuntimeError):
  """A measured run failed; the message names it and ends with its last output."""


@dataclasses.dataclass(frozen=True)
class BenchSettings:
  """How big the measurements are.

  Attributes:
    epochs: epochs per training run (examples/s excludes the first).
    steps_per_epoch: None: one pass over mnist5k's train split (62 steps of 64).
    reps: alternating repetitions (A B C A B C ...) for the overhead comparison.
    scaling_batch: global batch for the scaling runs: large, so each step is compute-bound
      (more compute per all-reduce), as the scaling target asks.
    scaling_steps: steps per epoch in the scaling runs (mnist5k has only 3 batches of 1024).
    table_rows: the recommender's table sizes, each in its own parameter-server run.
    table_steps: steps per epoch in those runs (2 epochs; the second is measured). Long, so
      the first epoch's backup, written in the background while the second trains (about
      5 s for two 8M-row tables with Adam's slots), is a small part of it.
    data_dir: TFDS data dir (None: TFDS's default).
    overhead_runs: the names of OVERHEAD_RUNS the overhead section runs (None: all).
    sections: the sections run (SECTIONS).
  """

  epochs: int = 3
  steps_per_epoch: Optional[int] = None
  reps: int = 2
  scaling_batch: int = 1024
  scaling_steps: int = 15
  table_rows: tuple[int, ...] = (1_000_000, 8_000_000)
  table_steps: int = 600
  data_dir: Optional[str] = None
  overhead_runs: Optional[tuple[str, ...]] = None
  sections: tuple[str, ...] = SECTIONS

  @classmethod
  def mode(cls, name: str, data_dir: Optional[str] = None) -> "BenchSettings":
    # Overhead runs are long enough to include saves at their steady rate (backups every few
    # hundred steps, epoch checkpoints every few epochs), not only the run's first ones.
    # --quick keeps one pair of each overhead kind (one process, two workers), once, and the
    # communication section's 1 Gbit/s pair; the scaling at a large batch, embedding tables
    # and mixed precision are the full bench's.
    sizes = {"tiny": cls(epochs=2, steps_per_epoch=4, reps=1, scaling_batch=64, scaling_steps=4,
                         table_rows=(10_000, 80_000), table_steps=10,
                         overhead_runs=QUICK_OVERHEAD_RUNS),
             "quick": cls(epochs=4, steps_per_epoch=100, reps=1, overhead_runs=QUICK_OVERHEAD_RUNS,
                          sections=("overhead", "communication")),
             "full": cls(epochs=6, steps_per_epoch=200, reps=5, scaling_steps=30)}
    return dataclasses.replace(sizes[name], data_dir=data_dir)

  def train_flags(self) -> list[str]:
    flags = [f"--epochs={self.epochs}", "--seed=1", "--params_override=train.export=false"]
    if self.steps_per_epoch:
      flags.append(f"--steps_per_epoch={self.steps_per_epoch}")
    if self.data_dir:
      flags.append(f"--data_dir={self.data_dir}")
    return flags


def _env() -> dict:
  # benchmarks/ on the path: `--model=handwritten:tutorial_model` is the script's own model.
  path = os.pathsep.join(p for p in (os.path.dirname(HANDWRITTEN), REPO,
                                     os.environ.get("PYTHONPATH")) if p)
  env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
  env.pop("TF_CONFIG", None)
  return env


def _run(name: str, command: Sequence[str], timeout: float) -> str:
  result = subprocess.run(list(command), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
  if result.returncode != 0:
    tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
    raise BenchError(f"{name} failed (status {result.returncode}): " + " | ".join(tail))
  return result.stdout


def _trained_metrics(name: str, launch: Sequence[str], command: Sequence[str],
                     timeout: float) -> dict:
  """Runs `[tfdist launch LAUNCH --] COMMAND --model_dir=TEMP`, where COMMAND starts with
  `tfdist` or `python`; returns the (chief's) metrics.json."""
  with tempfile.TemporaryDirectory(prefix="tfdist-bench-") as model_dir:
    command = [*command, f"--model_dir={model_dir}"]
    if launch:
      command = [sys.executable, "-m", "tfdist", "launch", *launch,
                 f"--log_dir={os.path.join(model_dir, 'logs')}", "--", *command]
    else:  # this Python, not the first on PATH
      command[:1] = [sys.executable, "-m", "tfdist"] if command[0] == "tfdist" else [sys.executable]
    _run(name, command, timeout)
    with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
      return json.load(f)


def tfdist_train(name: str, settings: BenchSettings, *flags: str, timeout: float = 600) -> dict:
  """`tfdist train` in a fresh process; returns its metrics.json."""
  return _trained_metrics(name, (), ["tfdist", "train", *settings.train_flags(), *flags], timeout)


def tfdist_launch(name: str, spec: str, settings: BenchSettings, *flags: str,
                  timeout: float = 600, launch: Sequence[str] = ()) -> dict:
  """`tfdist launch SPEC [LAUNCH] -- tfdist train` on this machine; returns the chief's
  metrics.json."""
  return _trained_metrics(name, (f"--cluster_spec={spec}", *launch),
                          ["tfdist", "train", *settings.train_flags(), *flags], timeout)


def handwritten(settings: BenchSettings, *flags: str, spec: Optional[str] = None,
                timeout: float = 600) -> dict:
  """The tutorial-style script in benchmarks/ (model.fit): MirroredStrategy, or with `spec`
  MultiWorkerMirroredStrategy on every task of `tfdist launch`."""
  with tempfile.TemporaryDirectory(prefix="tfdist-bench-") as out:
    path = os.path.join(out, "result.json")
    flags = [f"--epochs={settings.epochs}", f"--out={path}", *flags]
    if settings.steps_per_epoch:
      flags.append(f"--steps_per_epoch={settings.steps_per_epoch}")
    command = [sys.executable, HANDWRITTEN, *flags]
    if spec:
      command = [sys.executable, "-m", "tfdist", "launch", f"--cluster_spec={spec}",
                 f"--log_dir={os.path.join(out, 'logs')}", "--", "python", HANDWRITTEN, *flags,
                 "--strategy=multi_worker", "--threads=1"]
    _run("hand-written script", command, timeout)
    with open(path, encoding="utf-8") as f:
      return json.load(f)


# What `overhead` runs, in this order, alternating: (name, what, how).
_USER_COMPILED = "--model=handwritten:tutorial_model"  # the tutorial's CNN, compiled (SGD)
_EQUAL = ("--strategy=mirrored", "--steps_per_execution=1", "--mixed_precision=off")
_TWO_WORKERS = os.path.join(SPECS, "local-2workers.yaml")
_ONE_THREAD = ("--intra_op_threads=1", "--inter_op_threads=1")
OVERHEAD_RUNS = (
    ("handwritten", "hand-written tf.distribute script (tutorial style, the cnn, Adam)", ()),
    ("tfdist_equal", "tfdist, equal settings (steps_per_execution=1, float32), backups on",
     _EQUAL),
    ("tfdist_uncompiled", "tfdist defaults, the script's cnn uncompiled (float32)",
     ("--strategy=mirrored", "--model=handwritten:cnn_uncompiled")),
    ("tfdist_defaults", "tfdist defaults, built-in cnn", ("--strategy=mirrored",)),
    ("handwritten_tutorial", "hand-written script, the tutorial's CNN compiled with SGD",
     ("--model=tutorial",)),
    ("tfdist_user_compiled", "tfdist, defaults, user-compiled model (the tutorial's CNN)",
     ("--strategy=mirrored", _USER_COMPILED)),
    ("handwritten_mwms", "hand-written script, 2 workers (MWMS)", ()),
    ("tfdist_equal_mwms", "tfdist, equal settings, 2 workers (MWMS), backups on",
     ("--steps_per_execution=1", "--mixed_precision=off", *_ONE_THREAD)),
    ("handwritten_tutorial_mwms", "hand-written script, tutorial's CNN, 2 workers (MWMS)",
     ("--model=tutorial",)),
    ("tfdist_user_compiled_mwms", "tfdist, defaults, user-compiled model, 2 workers (MWMS)",
     (_USER_COMPILED, *_ONE_THREAD)),
)
# One pair of each kind (one process, two workers): what --quick and --tiny compare.
QUICK_OVERHEAD_RUNS = ("handwritten", "tfdist_defaults", "handwritten_mwms", "tfdist_equal_mwms")
# tfdist run: the script run it is compared with.
OVERHEAD_RATIOS = {"tfdist_equal": "handwritten", "tfdist_uncompiled": "handwritten",
                   "tfdist_defaults": "handwritten", "tfdist_user_compiled": "handwritten_tutorial",
                   "tfdist_equal_mwms": "handwritten_mwms",
                   "tfdist_user_compiled_mwms": "handwritten_tutorial_mwms"}


def overhead(settings: BenchSettings, say: Callable[[str], None] = lambda _: None) -> dict:
  """tfdist vs the hand-written script, alternating the runs of OVERHEAD_RUNS rep by rep;
  medians of examples/s and of the process's CPU ms per step (the chief's, or worker 0's),
  and each tfdist median over its script's (OVERHEAD_RATIOS). `say` gets a line per run."""
  chosen = tuple(r for r in OVERHEAD_RUNS
                 if settings.overhead_runs is None or r[0] in settings.overhead_runs)
  rates: dict[str, list[float]] = {name: [] for name, _, _ in chosen}
  cpu: dict[str, list[float]] = {name: [] for name, _, _ in chosen}
  for rep in range(settings.reps):
    # A B C, then C B A: no run always comes first after the same other one.
    for i, (name, label, flags) in enumerate(chosen if rep % 2 == 0 else chosen[::-1]):
      spec = _TWO_WORKERS if name.endswith("_mwms") else None
      if name.startswith("handwritten"):
        result = handwritten(settings, *flags, spec=spec)
      elif spec:
        result = tfdist_launch(label, spec, settings, *flags)
      else:
        result = tfdist_train(label, settings, *flags)
      rates[name].append(result["examples_per_sec"])
      cpu[name].append(result["cpu_ms_per_step"])
      say(f"rep {rep + 1}/{settings.reps}, run {i + 1}/{len(chosen)}: {label}: "
          f"{rates[name][-1]:,.0f} examples/s, {cpu[name][-1]:.1f} CPU ms/step")
  medians = {k: statistics.median(v) for k, v in rates.items()}
  cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
  pairs = {name: base for name, base in OVERHEAD_RATIOS.items() if name in rates and base in rates}
  return {"runs": rates, "median_examples_per_sec": medians,
          "cpu_ms_per_step": cpu, "median_cpu_ms_per_step": cpu_medians,
          "labels": {name: label for name, label, _ in chosen},
          "ratios": {name: medians[name] / medians[base] for name, base in pairs.items()},
          "cpu_ratios": {name: cpu_medians[name] / cpu_medians[base]
                         for name, base in pairs.items()},
          "compared_with": pairs}


def scaling(settings: BenchSettings) -> dict:
  """1 worker vs 2 MWMS workers vs PSS (2 workers + 1 ps), 1 thread per task, same global batch."""
  threads = ["--intra_op_threads=1", "--inter_op_threads=1",
             f"--global_batch_size={settings.scaling_batch}"]
  settings = dataclasses.replace(settings, steps_per_epoch=settings.scaling_steps)
  runs = {  # name: (computing workers, metrics)
      "1 worker (MWMS)": (1, tfdist_train("1 worker", settings,
                                          "--strategy=multi_worker_mirrored", *threads)),
      "2 workers (MWMS)": (2, tfdist_launch("2 workers", os.path.join(SPECS, "local-2workers.yaml"),
                                            settings, *threads)),
      "PSS (2 workers + 1 ps)": (2, tfdist_launch("parameter servers",
                                                  os.path.join(SPECS, "local-ps.yaml"), settings,
                                                  *threads)),
  }
  base = runs["1 worker (MWMS)"][1]["examples_per_sec"]
  return {name: {"examples_per_sec": m["examples_per_sec"], "workers": workers,
                 "efficiency": m["examples_per_sec"] / (base * workers),
                 "seconds_to_first_step": m["seconds_to_first_step"],
                 "strategy": m["strategy"]}
          for name, (workers, m) in runs.items()}


def embedding_tables(settings: BenchSettings, timeout: float = 900) -> dict:
  """examples/recommender.py under ParameterServerStrategy (2 workers, 2 ps) with its user
  and item tables at each of `settings.table_rows` rows: wall ms per step (saves excluded)
  against the smallest table's. With rows read and updated sparsely it does not grow."""
  spec = os.path.join(SPECS, "local-ps2.yaml")
  runs = {}
  for rows in settings.table_rows:
    metrics = _trained_metrics(
        f"recommender at {rows:,} rows", (f"--cluster_spec={spec}",),
        ["python", RECOMMENDER, f"--rows={rows}", "--epochs=2",
         f"--steps_per_epoch={settings.table_steps}"], timeout)
    runs[rows] = {"step_ms": metrics["step_ms"], "examples_per_sec": metrics["examples_per_sec"],
                  "strategy": metrics["strategy"]}
  smallest = runs[min(runs)]["step_ms"]
  return {str(rows): {**r, "rows": rows, "vs_smallest": r["step_ms"] / smallest}
          for rows, r in runs.items()}


def input_pipeline(settings: BenchSettings, consumption: Optional[float],
                   batches: int = 300) -> dict:
  """The input pipeline alone (no model): examples/s against what training consumes (when
  the overhead section measured it)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfdist.data import DataOptions, load_source  # pylint: disable=import-outside-toplevel

  source = load_source(DataOptions(data_dir=settings.data_dir))
  dataset = source.train_input_fn(64, seed=1)(tf.distribute.InputContext())
  iterator = iter(dataset)
  for _ in range(source.steps_per_epoch(64) + 5):  # fill the cache first, as training does
    next(iterator)
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  rate = batches * 64 / (time.perf_counter() - start)
  return {"examples_per_sec": rate, "training_consumes": consumption,
          "ratio": rate / consumption if consumption else None}


def mixed_precision(settings: BenchSettings) -> dict:
  """tfdist defaults in float32 vs mixed precision: float16 on a GPU, bfloat16 on a CPU with it."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  if tf.config.list_physical_devices("GPU"):
    policy = "float16"
  elif precision.cpu_has_native_bfloat16():
    policy = "bfloat16"
  else:
    return {"skipped": "no GPU, and the CPU has no native bfloat16 (AVX512_BF16/AMX)"}
  plain = tfdist_train("fp32", settings, "--strategy=mirrored",
                       "--mixed_precision=off")["examples_per_sec"]
  mixed = tfdist_train(policy, settings, "--strategy=mirrored",
                       f"--mixed_precision={policy}")["examples_per_sec"]
  return {"policy": policy, "device": "GPU" if policy == "float16" else "CPU",
          "float32_examples_per_sec": plain, "mixed_examples_per_sec": mixed,
          "speedup": mixed / plain}
