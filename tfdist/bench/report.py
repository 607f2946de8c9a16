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
  o, s, i = results["overhead"], results["scaling"], results["input"]
  m = o["median_examples_per_sec"]
  lines = [
      f"tfdist bench ({results['mode']}, {results['machine']}; examples/s after the first epoch, "
      f"medians of {results['settings']['reps']} alternating run(s); CPU: the process's CPU "
      "time per step, all threads)",
      "",
      "| measurement | examples/s (median) | runs (min-max) | CPU ms/step (median) "
      "| vs its script: examples/s (CPU per step) |",
      "|---|---:|---:|---:|---:|",
  ]
  for name, label in o["labels"].items():
    ratio = (f"{o['ratios'][name]:.2f}x ({o['cpu_ratios'][name]:.2f}x)" if name in o["ratios"]
             else "script")
    runs = o["runs"][name]
    lines.append(f"| {label} | {m[name]:,.0f} | {min(runs):,.0f}-{max(runs):,.0f} | "
                 f"{o['median_cpu_ms_per_step'][name]:.1f} | {ratio} |")
  for name, r in s.items():
    lines.append(f"| scaling: {name}, {r['strategy']} | {r['examples_per_sec']:,.0f} | | | "
                 f"efficiency {r['efficiency']:.2f} |")
  for r in results["embedding_tables"].values():
    lines.append(f"| recommender, 2 tables of {r['rows']:,} rows, {r['strategy']} (2 workers, "
                 f"2 ps): {r['step_ms']:.1f} ms/step, saves excluded | "
                 f"{r['examples_per_sec']:,.0f} | | | {r['vs_smallest']:.2f}x the smallest "
                 "table's step time |")
  lines.append(f"| input pipeline alone (no model) | {i['examples_per_sec']:,.0f} | | | "
               f"{i['ratio']:.1f}x what training consumes |")
  mp = results["mixed_precision"]
  if "skipped" in mp:
    lines.append(f"| mixed precision | skipped | | | {mp['skipped']} |")
  else:
    lines.append(f"| mixed precision ({mp['policy']} on {mp['device']}) | "
                 f"{mp['mixed_examples_per_sec']:,.0f} | | | {mp['speedup']:.2f}x float32 |")
  lines += ["", "| start-up (job start to the end of the first training step) | seconds |",
            "|---|---:|"]
  for name, seconds in results["startup_seconds"].items():
    lines.append(f"| {name} | {seconds:.1f} |")
  return "\n".join(lines) + "\n"


def write_markdown(results: dict, out_dir: str) -> str:
  path = os.path.join(out_dir, "bench.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write(markdown(results))
  return path


def write_plot(results: dict, out_dir: str) -> str:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  o, s, i = results["overhead"], results["scaling"], results["input"]
  fig, axes = plt.subplots(2, 2, figsize=(11, 8))
  m = o["median_examples_per_sec"]
  _bars(axes[0][0], "Overhead (examples/s; label: vs its script)", list(m), list(m.values()),
        [f"{o['ratios'][n]:.2f}x" if n in o["ratios"] else f"{v:,.0f}" for n, v in m.items()])
  _bars(axes[0][1], "Scaling (examples/s; label: efficiency)", list(s),
        [r["examples_per_sec"] for r in s.values()],
        [f"{r['efficiency']:.2f}" for r in s.values()])
  _bars(axes[1][0], "Input pipeline vs training (examples/s, log scale)",
        ["input alone", "training"], [i["examples_per_sec"], i["training_consumes"]])
  axes[1][0].set_yscale("log")
  startup = results["startup_seconds"]
  _bars(axes[1][1], "Start-up to first step (s)", list(startup), list(startup.values()))
  fig.suptitle(f"tfdist bench ({results['mode']}, {results['machine']})")
  fig.tight_layout()
  path = os.path.join(out_dir, "bench.png")
  fig.savefig(path, dpi=90)
  plt.close(fig)
  return path


def _bars(ax, title, names, values, labels=None):
  bars = ax.bar(range(len(values)), values, color="#4a7fb5")
  ax.set_xticks(range(len(values)), [n.replace(" (", "\n(") for n in names], fontsize=8)
  ax.set_title(title, fontsize=10)
  for bar, value, label in zip(bars, values, labels or [None] * len(values)):
    text = label or (f"{value:,.0f}" if value >= 10 else f"{value:.1f}")
    ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                va="bottom", fontsize=8)
