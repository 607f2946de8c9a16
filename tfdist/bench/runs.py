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
from typing import Optional, Sequence

from tfdist.train import precision

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANDWRITTEN = os.path.join(REPO, "benchmarks", "handwritten.py")
SPECS = os.path.join(REPO, "configs", "clusters")


class BenchError(RuntimeError):
  """A measured run failed; the message names it and ends with its last output."""


@dataclasses.dataclass(frozen=True)
class BenchSettings:
  """How big the measurements are.

  Attributes:
    epochs: epochs per training run (examples/s excludes the first).
    steps_per_epoch: None: one pass over mnist5k's train split.
    reps: alternating repetitions (A B C A B C ...) for the overhead comparison.
    scaling_batch: global batch for the scaling runs: large, so each step is compute-bound
      (more compute per all-reduce), as the scaling target asks.
    scaling_steps: steps per epoch in the scaling runs (mnist5k has only 3 batches of 1024).
    data_dir: TFDS data dir (None: TFDS's default).
  """

  epochs: int = 3
  steps_per_epoch: Optional[int] = None
  reps: int = 2
  scaling_batch: int = 1024
  scaling_steps: int = 15
  data_dir: Optional[str] = None

  @classmethod
  def mode(cls, name: str, data_dir: Optional[str] = None) -> "BenchSettings":
    sizes = {"tiny": cls(epochs=2, steps_per_epoch=4, reps=1, scaling_batch=64, scaling_steps=4),
             "quick": cls(epochs=3, reps=2),
             "full": cls(epochs=5, reps=3, scaling_steps=30)}
    return dataclasses.replace(sizes[name], data_dir=data_dir)

  def train_flags(self) -> list[str]:
    flags = [f"--epochs={self.epochs}", "--seed=1", "--params_override=train.export=false"]
    if self.steps_per_epoch:
      flags.append(f"--steps_per_epoch={self.steps_per_epoch}")
    if self.data_dir:
      flags.append(f"--data_dir={self.data_dir}")
    return flags


def _env() -> dict:
  env = dict(os.environ, PYTHONUNBUFFERED="1")
  env.pop("TF_CONFIG", None)
  return env


def _run(name: str, command: Sequence[str], timeout: float) -> str:
  result = subprocess.run(list(command), cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
  if result.returncode != 0:
    tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
    raise BenchError(f"{name} failed (status {result.returncode}): " + " | ".join(tail))
  return result.stdout


def _train_metrics(name: str, launch: Sequence[str], settings: BenchSettings,
                   flags: Sequence[str], timeout: float) -> dict:
  """Runs `[tfdist launch ... --] tfdist train` into a temp model dir; returns its metrics.json."""
  with tempfile.TemporaryDirectory(prefix="tfdist-bench-") as model_dir:
    prefix = [sys.executable, "-m", "tfdist"]
    if launch:
      prefix += ["launch", *launch, f"--log_dir={os.path.join(model_dir, 'logs')}", "--",
                 "tfdist"]
    _run(name, [*prefix, "train", f"--model_dir={model_dir}", *settings.train_flags(), *flags],
         timeout)
    with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
      return json.load(f)


def tfdist_train(name: str, settings: BenchSettings, *flags: str, timeout: float = 600) -> dict:
  """`tfdist train` in a fresh process; returns its metrics.json."""
  return _train_metrics(name, (), settings, flags, timeout)


def tfdist_launch(name: str, spec: str, settings: BenchSettings, *flags: str,
                  timeout: float = 600) -> dict:
  """`tfdist launch SPEC -- tfdist train` on this machine; returns the chief's metrics.json."""
  return _train_metrics(name, (f"--cluster_spec={spec}",), settings, flags, timeout)


def handwritten(settings: BenchSettings, timeout: float = 600) -> dict:
  """The tutorial-style script in benchmarks/ (MirroredStrategy, model.fit)."""
  with tempfile.TemporaryDirectory(prefix="tfdist-bench-") as out:
    path = os.path.join(out, "result.json")
    flags = [f"--epochs={settings.epochs}", f"--out={path}"]
    if settings.steps_per_epoch:
      flags.append(f"--steps_per_epoch={settings.steps_per_epoch}")
    _run("hand-written script", [sys.executable, HANDWRITTEN, *flags], timeout)
    with open(path, encoding="utf-8") as f:
      return json.load(f)


def overhead(settings: BenchSettings) -> dict:
  """tfdist vs the hand-written script, alternating A B C A B C; medians of examples/s.

  A: tfdist at the script's settings (steps_per_execution=1); B: the script;
  C: tfdist with its defaults (on a CPU with native bfloat16 that includes bfloat16).
  """
  rates: dict[str, list[float]] = {"tfdist_equal": [], "handwritten": [], "tfdist_defaults": []}
  for _ in range(settings.reps):
    rates["tfdist_equal"].append(tfdist_train(
        "tfdist (equal settings)", settings, "--strategy=mirrored",
        "--steps_per_execution=1", "--mixed_precision=off")["examples_per_sec"])
    rates["handwritten"].append(handwritten(settings)["examples_per_sec"])
    rates["tfdist_defaults"].append(tfdist_train(
        "tfdist (defaults)", settings, "--strategy=mirrored")["examples_per_sec"])
  medians = {k: statistics.median(v) for k, v in rates.items()}
  return {"runs": rates, "median_examples_per_sec": medians,
          "ratio_equal": medians["tfdist_equal"] / medians["handwritten"],
          "ratio_defaults": medians["tfdist_defaults"] / medians["handwritten"]}


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


def input_pipeline(settings: BenchSettings, consumption: float, batches: int = 300) -> dict:
  """The input pipeline alone (no model): examples/s against what training consumes."""
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
          "ratio": rate / consumption}


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
