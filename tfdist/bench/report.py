"""bench.json, bench.md and bench.png from one `tfdist bench` run."""

from __future__ import annotations

import json
import os


def write_json(results: dict, out_dir: str) -> str:
  path = os.path.join(out_dir, "bench.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  return path


def markdown(results: dict) -> str:
  o, i = results.get("overhead"), results["input"]
  lines = [
      f"tfdist bench ({results['mode']}, {results['machine']}; examples/s after the first epoch, "
      f"medians of {results['settings']['reps']} alternating run(s); CPU: the process's CPU "
      "time per step, all threads)",
      "",
      "| measurement | examples/s (median) | runs (min-max) | CPU ms/step (median) "
      "| vs its script: examples/s (CPU per step) |",
      "|---|---:|---:|---:|---:|",
  ]
  for name, label in (o["labels"] if o else {}).items():
    ratio = (f"{o['ratios'][name]:.2f}x ({o['cpu_ratios'][name]:.2f}x)" if name in o["ratios"]
             else "script")
    runs = o["runs"][name]
    lines.append(f"| {label} | {o['median_examples_per_sec'][name]:,.0f} | "
                 f"{min(runs):,.0f}-{max(runs):,.0f} | "
                 f"{o['median_cpu_ms_per_step'][name]:.1f} | {ratio} |")
  for name, r in results.get("scaling", {}).items():
    lines.append(f"| scaling: {name}, {r['strategy']} | {r['examples_per_sec']:,.0f} | | | "
                 f"efficiency {r['efficiency']:.2f} |")
  for r in results.get("embedding_tables", {}).values():
    lines.append(f"| recommender, 2 tables of {r['rows']:,} rows, {r['strategy']} (2 workers, "
                 f"2 ps): {r['step_ms']:.1f} ms/step, saves excluded | "
                 f"{r['examples_per_sec']:,.0f} | | | {r['vs_smallest']:.2f}x the smallest "
                 "table's step time |")
  versus = f"{i['ratio']:.1f}x what training consumes" if i["ratio"] else ""
  lines.append(f"| input pipeline alone (no model) | {i['examples_per_sec']:,.0f} | | | "
               f"{versus} |")
  mp = results.get("mixed_precision")
  if mp and "skipped" in mp:
    lines.append(f"| mixed precision | skipped | | | {mp['skipped']} |")
  elif mp:
    lines.append(f"| mixed precision ({mp['policy']} on {mp['device']}) | "
                 f"{mp['mixed_examples_per_sec']:,.0f} | | | {mp['speedup']:.2f}x float32 |")
  if "communication" in results:
    lines += [""] + communication_markdown(results["communication"])
  lines += ["", "| start-up (job start to the end of the first training step) | seconds |",
            "|---|---:|"]
  for name, seconds in results["startup_seconds"].items():
    lines.append(f"| {name} | {seconds:.1f} |")
  return "\n".join(lines) + "\n"


def _bytes(value) -> str:
  return "-" if value is None else f"{value / 1e6:.3f} MB"


def communication_markdown(c: dict) -> list[str]:
  """The communication table, the projection and (full bench) the accuracy check."""
  lines = [
      f"Communication: the built-in cnn, {c['per_replica_batch']} examples per replica; bytes "
      "a worker sends per step, computed and measured on its emulated link's interface"
      + ("" if c["emulated"] else f" ({c['skipped_links']})"),
      "",
      "| run | link | gradients | examples/s | ms/step | bytes/step computed | measured "
      "| scaling efficiency | communication share of the step |",
      "|---|---|---|---:|---:|---:|---:|---:|---:|",
  ]
  for name, r in c["rows"].items():
    measured = (_bytes(r["measured_bytes_per_step"]) if r["strategy"] != "ParameterServerStrategy"
                else "- (workers are servers)")
    lines.append(
        f"| {name.split(',')[0]} | {r['link'] or '-'} | {r['allreduce_dtype']} | "
        f"{r['examples_per_sec']:,.0f} | {r['step_ms']:.1f} | "
        f"{_bytes(r['computed_bytes_per_step'])} | {measured if r['link'] else '-'} | "
        f"{r['efficiency']:.2f} | {r['communication_share']:.0%} |")
  p = c["projection"]
  lines += ["", f"Projected ({p['model']}; compute {p['compute_ms']:.1f} ms/step measured on 1 "
                f"worker, {p['gradient_bytes']:,} bytes of gradients):", "",
            "| link | workers | ms/step | of which communication | examples/s | efficiency |",
            "|---|---:|---:|---:|---:|---:|"]
  for r in p["cnn"]:
    lines.append(f"| {r['link']} | {r['workers']} | {r['step_ms']:.1f} | "
                 f"{r['communication_ms']:.1f} | {r['examples_per_sec']:,.0f} | "
                 f"{r['efficiency']:.2f} |")
  four = p.get("four_workers")
  if four:
    lines += ["", f"4 workers measured on this machine ({four['model']}, {four['link']}, "
                  f"{four['per_replica_batch']} a replica): {four['measured_step_ms']:.1f} ms/step, "
                  f"projected {four['projected_step_ms']:.1f} "
                  f"({four['measured_step_ms'] / four['projected_step_ms']:.2f}x); bytes/step "
                  f"{_bytes(four['measured_bytes_per_step'])} measured, "
                  f"{_bytes(four['computed_bytes_per_step'])} computed"]
  accuracy = c.get("accuracy")
  if accuracy:
    lines += ["", f"Accuracy after {accuracy['epochs']} epochs (mnist5k, 2 workers): float32 "
                  f"{accuracy['float32']:.4f}, bfloat16 gradients {accuracy['bfloat16']:.4f} "
                  f"({accuracy['difference_points']:+.2f} points)"]
  return lines


def write_markdown(results: dict, out_dir: str) -> str:
  path = os.path.join(out_dir, "bench.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(markdown(results))
  return path


def write_plot(results: dict, out_dir: str) -> str:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  o, i = results.get("overhead"), results["input"]
  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  if o:
    m = o["median_examples_per_sec"]
    _bars(axes[0][0], "Overhead (examples/s; label: vs its script)", list(m), list(m.values()),
          [f"{o['ratios'][n]:.2f}x" if n in o["ratios"] else f"{v:,.0f}" for n, v in m.items()])
  else:
    axes[0][0].axis("off")
    axes[0][0].text(0.5, 0.5, "overhead: not run", ha="center", va="center")
  if "communication" in results:
    _communication_plot(axes[0][1], results["communication"])
  elif "scaling" in results:
    s = results["scaling"]
    _bars(axes[0][1], "Scaling (examples/s; label: efficiency)", list(s),
          [r["examples_per_sec"] for r in s.values()],
          [f"{r['efficiency']:.2f}" for r in s.values()])
  rates = {"input alone": i["examples_per_sec"]}
  if i["training_consumes"]:
    rates["training"] = i["training_consumes"]
  _bars(axes[1][0], "Input pipeline vs training (examples/s, log scale)", list(rates),
        list(rates.values()))
  axes[1][0].set_yscale("log")
  startup = results["startup_seconds"]
  _bars(axes[1][1], "Start-up to first step (s)", list(startup), list(startup.values()))
  fig.suptitle(f"tfdist bench ({results['mode']}, {results['machine']})")
  fig.tight_layout()
  path = os.path.join(out_dir, "bench.png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def write_communication_plot(results: dict, out_dir: str) -> str:
  """communication.png: the communication panel of bench.png, alone and larger."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  fig, ax = plt.subplots(figsize=(8, 4.5))
  _communication_plot(ax, results["communication"])
  fig.tight_layout()
  path = os.path.join(out_dir, "communication.png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _communication_plot(ax, c: dict) -> None:
  """2-worker MWMS step time, split into compute (the 1-worker step) and communication (the
  rest), against the link; float32 and bfloat16 gradients side by side."""
  base = next(r for r in c["rows"].values() if r["workers"] == 1)["step_ms"]
  rows = [(name, r) for name, r in c["rows"].items()
          if r["workers"] == 2 and r["strategy"] == "MultiWorkerMirroredStrategy"]
  labels = [f"{r['link']}\n{r['allreduce_dtype']}" for _, r in rows]
  compute = [min(base, r["step_ms"]) for _, r in rows]
  comm = [max(0.0, r["step_ms"] - base) for _, r in rows]
  x = range(len(rows))
  ax.bar(x, compute, color="#4a7fb5", label="compute (1-worker step)")
  ax.bar(x, comm, bottom=compute, color="#d9822b",
         label="communication (the rest of the 2-worker step)")
  ax.set_xticks(list(x), labels, fontsize=8)
  ax.set_ylabel("ms per step")
  ax.set_title("2 workers (MWMS): step time by link and gradient dtype", fontsize=10)
  ax.legend(fontsize=8)


def _bars(ax, title, names, values, labels=None):
  bars = ax.bar(range(len(values)), values, color="#4a7fb5")
  ax.set_xticks(range(len(values)), [n.replace(" (", "\n(").replace(", ", "\n") for n in names],
                fontsize=7)
  ax.set_title(title, fontsize=10)
  for bar, value, label in zip(bars, values, labels or [None] * len(values)):
    text = label or (f"{value:,.0f}" if value >= 10 else f"{value:.1f}")
    ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                va="bottom", fontsize=8)
