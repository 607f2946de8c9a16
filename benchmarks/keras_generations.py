"""The same CNN written in Keras 3 and in tf_keras, trained by tfdist under each strategy and loop.

    python benchmarks/keras_generations.py --epochs=8 --out=/tmp/generations.json

Each run is `tfdist train` with tfdist's defaults on mnist5k (the model uncompiled:
tfdist compiles it with Adam 1e-3, steps_per_execution 10), float32 for both
(`--mixed_precision=off`); MultiWorkerMirrored runs 2 local workers and
ParameterServer a chief, 2 workers and 1 ps through `tfdist launch`. Prints eval
accuracy and examples/s (epochs after the first) per strategy, loop and generation.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = '''
import keras
import tf_keras

def _cnn(k, input_shape, num_classes):
  return k.Sequential([k.Input(shape=input_shape), k.layers.Conv2D(32, 3, activation="relu"),
                       k.layers.MaxPooling2D(), k.layers.Conv2D(64, 3, activation="relu"),
                       k.layers.MaxPooling2D(), k.layers.Flatten(), k.layers.Dropout(0.25),
                       k.layers.Dense(128, activation="relu"), k.layers.Dense(num_classes)])

def keras3(input_shape, num_classes):
  return _cnn(keras, input_shape, num_classes)

def tf_keras_cnn(input_shape, num_classes):
  return _cnn(tf_keras, input_shape, num_classes)
'''
STRATEGIES = {
    "mirrored (2 CPU replicas)": (None, ["--strategy=mirrored", "--cpu_replicas=2"]),
    "multi_worker_mirrored (2 workers)": ("local-2workers.yaml", []),
    "parameter_server (chief + 2 workers + 1 ps)": ("local-ps.yaml", []),
}
THREADS = ["--intra_op_threads=1", "--inter_op_threads=1"]


def train(work: str, spec, extra, model: str, loop: str, epochs: int) -> dict:
  model_dir = tempfile.mkdtemp(dir=work)
  args = ["tfdist", "train", f"--model=bench_models:{model}", f"--loop={loop}",
          f"--epochs={epochs}", "--mixed_precision=off", f"--model_dir={model_dir}", *THREADS,
          *extra]
  if spec:
    args = [sys.executable, "-m", "tfdist", "launch",
            f"--cluster_spec={os.path.join(REPO, 'configs', 'clusters', spec)}",
            f"--log_dir={model_dir}-logs", "--", *args]
  else:
    args = [sys.executable, "-m", "tfdist", *args[1:]]
  env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{REPO}", TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  if done.returncode:
    raise SystemExit(f"{model} {loop} failed:\n{(done.stdout + done.stderr)[-3000:]}")
  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=8)
  parser.add_argument("--out", default=None)
  args = parser.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "bench_models.py"), "w", encoding="utf-8") as f:
      f.write(MODELS)
    for strategy, (spec, extra) in STRATEGIES.items():
      for loop in ("fit", "custom"):
        for model in ("keras3", "tf_keras_cnn"):
          metrics = train(work, spec, extra, model, loop, args.epochs)
          rows.append({"strategy": strategy, "loop": loop, "keras": metrics["versions"]["keras"],
                       "eval_accuracy": metrics["eval_accuracy"],
                       "examples_per_sec": metrics["examples_per_sec"]})
          print(f"{strategy:<45} {loop:<7} {rows[-1]['keras']:<16} "
                f"eval_accuracy {rows[-1]['eval_accuracy']:.4f}  "
                f"{rows[-1]['examples_per_sec']:>8,.0f} examples/s", flush=True)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
