"""The bench's communication section: 1 vs 2 workers (and parameter servers) on loopback and on
emulated links, float32 vs bfloat16 gradients; and a projection to more workers.

Every figure comes from the runs' metrics.json: examples/s, wall ms per step (saves
excluded), the computed bytes a worker sends per step and, on an emulated link, the bytes its
interface sent. Against the 1-worker run at the same per-replica batch:

- scaling efficiency = examples/s / (workers x the 1-worker examples/s);
- communication share of the step = (step ms - the 1-worker step ms) / step ms.

The projection (`projected`) is a bandwidth model: a step is the 1-worker compute time plus
the ring all-reduce's bytes at the link's rate, not overlapped (Keras all-reduces after the
backward pass): step(n) = compute + 2(n-1)/n x gradient bytes / rate.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Callable, Optional, Sequence

from tfdist.bench import runs as bench_runs
from tfdist.launch.emulated_link import Link

LOOPBACK = "loopback"
MWMS, PSS = "2 workers (MWMS)", "PSS (2 workers + 1 ps)"
_SPECS = {MWMS: "local-2workers.yaml", PSS: "local-ps.yaml"}
_ONE_THREAD = ("--intra_op_threads=1", "--inter_op_threads=1")


@dataclasses.dataclass(frozen=True)
class CommunicationPlan:
  """Which runs the section makes.

  Attributes:
    links: emulated links besides loopback, e.g. ("10gbit", "1gbit").
    link_setups, loopback_setups: the runs on each emulated link and on loopback, of
      "float32", "bfloat16" (2 MWMS workers, gradients all-reduced so) and "pss".
    per_replica_batch: examples per replica per step (the 1-worker run's global batch).
    steps: steps per epoch (3 epochs; the first, which traces, is not measured).
    projection_link: the link of the measured 4-worker point (a small model).
    projection_workers: the worker counts projected.
    accuracy_epochs: epochs of a float32 and a bfloat16 2-worker run over mnist5k whose
      accuracies are compared (0: none).
  """

  links: tuple[str, ...] = ("10gbit", "1gbit", "100mbit")
  link_setups: tuple[str, ...] = ("float32", "bfloat16", "pss")
  loopback_setups: tuple[str, ...] = ("float32", "bfloat16", "pss")
  per_replica_batch: int = 64
  steps: int = 40
  projection_link: str = "100mbit"
  projection_workers: tuple[int, ...] = (2, 4, 8, 16, 32)
  accuracy_epochs: int = 10

  @classmethod
  def mode(cls, name: str) -> "CommunicationPlan":
    """The full bench's plan, --quick's (one emulated-link pair) or --tiny's."""
    return {"full": cls(),
            "quick": cls(links=("1gbit",), link_setups=("float32", "bfloat16"),
                         loopback_setups=("float32", "pss"), accuracy_epochs=0),
            "tiny": cls(links=("1gbit",), link_setups=("float32", "bfloat16"),
                        loopback_setups=("float32",), per_replica_batch=16, steps=4,
                        accuracy_epochs=0)}[name]


def link_bits_per_s(link: str) -> int:
  """'1gbit' -> 10**9 (a `--link` rate)."""
  return Link.parse(link).bits_per_s


def projected(compute_ms: float, gradient_bytes: float, link: str, workers: int,
              per_replica_batch: int) -> dict:
  """The bandwidth model's step for `workers` workers of one replica each (see the module).

  Example (25 ms of compute, 0.9 MB of gradients, 4 workers on 1 Gbit/s):
    projected(25.0, 900_136, "1gbit", 4, 64)["step_ms"]  # 25 + 1.5 x 7.2 = 35.8
  """
  comm_ms = 2 * (workers - 1) / workers * gradient_bytes * 8 / link_bits_per_s(link) * 1000
  step_ms = compute_ms + comm_ms
  return {"workers": workers, "link": link, "step_ms": step_ms, "communication_ms": comm_ms,
          "examples_per_sec": workers * per_replica_batch / step_ms * 1000,
          "efficiency": compute_ms / step_ms}


def run_names(link: str, setups: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
  """(row name, setup, tfdist train flags) of one link's runs."""
  rows = []
  for setup in setups:
    if setup == "pss":
      rows.append((f"{PSS}, {link}", PSS, ()))
    else:
      rows.append((f"{MWMS}, {link}, {setup}", MWMS, (f"--allreduce_dtype={setup}",)))
  return rows


def measure(settings: bench_runs.BenchSettings, plan: CommunicationPlan, emulate: bool,
            say: Callable[[str], None] = lambda _: None) -> dict:
  """The section's runs and figures; links are emulated only if `emulate` (root, Linux)."""
  settings = dataclasses.replace(settings, epochs=3, steps_per_epoch=plan.steps)
  batch = plan.per_replica_batch
  base = bench_runs.tfdist_train("1 worker", settings, "--strategy=multi_worker_mirrored",
                                 f"--global_batch_size={batch}", *_ONE_THREAD)
  say(f"communication: 1 worker: {base['examples_per_sec']:,.0f} examples/s, "
      f"{base['step_ms']:.1f} ms/step")
  rows = {"1 worker, no network": _row(base, base, 1, None)}
  links = [LOOPBACK, *(plan.links if emulate else ())]
  for link in links:
    for name, setup, flags in run_names(
        link, plan.loopback_setups if link == LOOPBACK else plan.link_setups):
      launch = () if link == LOOPBACK else (f"--link={link}",)
      metrics = bench_runs.tfdist_launch(
          name, os.path.join(bench_runs.SPECS, _SPECS[setup]), settings, *flags, *_ONE_THREAD,
          f"--global_batch_size={2 * batch}", launch=launch)
      rows[name] = _row(metrics, base, 2, link)
      say(f"communication: {name}: {metrics['examples_per_sec']:,.0f} examples/s, "
          f"{metrics['step_ms']:.1f} ms/step")
  result = {"per_replica_batch": batch, "steps_per_epoch": plan.steps, "rows": rows,
            "emulated": emulate, "links": links,
            "projection": _projection(settings, plan, base, emulate, say)}
  if plan.accuracy_epochs:
    result["accuracy"] = _accuracy(settings, plan.accuracy_epochs, say)
  if not emulate:
    result["skipped_links"] = "emulated links need root on Linux (tfdist launch --link)"
  return result


def _row(metrics: dict, base: dict, workers: int, link: Optional[str]) -> dict:
  communication = metrics.get("communication") or {}
  step, base_step = metrics["step_ms"], base["step_ms"]
  return {
      "link": link, "workers": workers, "strategy": metrics["strategy"],
      "allreduce_dtype": ("float32" if communication.get("allreduce_value_bytes", 4) == 4
                          else "bfloat16"),
      "examples_per_sec": metrics["examples_per_sec"], "step_ms": step,
      "computed_bytes_per_step": communication.get("sent_bytes_per_step", 0),
      "measured_bytes_per_step": communication.get("wire_bytes_per_step"),
      "efficiency": metrics["examples_per_sec"] / (workers * base["examples_per_sec"]),
      "communication_share": max(0.0, (step - base_step) / step) if workers > 1 else 0.0,
      "seconds_to_first_step": metrics["seconds_to_first_step"],
  }


def _projection(settings, plan: CommunicationPlan, base: dict, emulate: bool,
                say: Callable[[str], None]) -> dict:
  """The cnn projected to more workers on each link; and a tiny model's 4-worker point on
  `plan.projection_link`, measured (four tasks on 2 cores: the model is small, so its step is
  mostly communication) against its own projection."""
  gradient_bytes = (base.get("communication") or {}).get("dense_gradient_bytes", 0)
  links = sorted({*plan.links, plan.projection_link}, key=link_bits_per_s, reverse=True)
  cnn = [projected(base["step_ms"], gradient_bytes, link, n, plan.per_replica_batch)
         for link in links for n in plan.projection_workers]
  result = {"model": "step(n) = compute + 2(n-1)/n x gradient bytes / link rate (no overlap)",
            "cnn": cnn, "gradient_bytes": gradient_bytes, "compute_ms": base["step_ms"]}
  if not emulate:
    return result
  batch, link = 16, plan.projection_link
  tiny = ("--model=mlp", "--mixed_precision=off", *_ONE_THREAD)
  alone = bench_runs.tfdist_train("mlp, 1 worker", settings, "--strategy=multi_worker_mirrored",
                                  f"--global_batch_size={batch}", *tiny)
  with tempfile.TemporaryDirectory(prefix="tfdist-bench-") as folder:
    spec = os.path.join(folder, "four-workers.yaml")
    with open(spec, "w", encoding="utf-8") as f:
      f.write("cluster:\n  worker: [" + ", ".join(["127.0.0.1:auto"] * 4) + "]\n")
    four = bench_runs.tfdist_launch("mlp, 4 workers", spec, settings,
                                    f"--global_batch_size={4 * batch}", *tiny,
                                    launch=(f"--link={link}",))
  mlp_bytes = four["communication"]["dense_gradient_bytes"]
  expected = projected(alone["step_ms"], mlp_bytes, link, 4, batch)
  result["four_workers"] = {
      "model": "mlp", "link": link, "per_replica_batch": batch, "gradient_bytes": mlp_bytes,
      "compute_ms": alone["step_ms"], "measured_step_ms": four["step_ms"],
      "projected_step_ms": expected["step_ms"],
      "measured_examples_per_sec": four["examples_per_sec"],
      "projected_examples_per_sec": expected["examples_per_sec"],
      "measured_bytes_per_step": four["communication"].get("wire_bytes_per_step"),
      "computed_bytes_per_step": four["communication"]["sent_bytes_per_step"]}
  say(f"communication: mlp on 4 workers over {link}: {four['step_ms']:.1f} ms/step measured, "
      f"{expected['step_ms']:.1f} projected")
  return result


def _accuracy(settings, epochs: int, say: Callable[[str], None]) -> dict:
  """mnist5k's eval accuracy after `epochs` epochs on 2 workers, gradients all-reduced in
  float32 and in bfloat16 (the same seed and input order)."""
  settings = dataclasses.replace(settings, epochs=epochs, steps_per_epoch=None)
  accuracy = {}
  for dtype in ("float32", "bfloat16"):
    metrics = bench_runs.tfdist_launch(
        f"accuracy, {dtype}", os.path.join(bench_runs.SPECS, _SPECS[MWMS]), settings,
        f"--allreduce_dtype={dtype}", *_ONE_THREAD, timeout=1200)
    accuracy[dtype] = metrics["eval_accuracy"]
    say(f"communication: {epochs} epochs with {dtype} gradients: eval accuracy "
        f"{accuracy[dtype]:.4f}")
  return {"epochs": epochs, **accuracy,
          "difference_points": 100 * (accuracy["bfloat16"] - accuracy["float32"])}
