"""What resuming the input costs: the time to a resumed pipeline's first batch.

    python benchmarks/input_resume.py [--examples=1000000] [--step=10000] [--global_batch=64]

A user data function of EXAMPLES examples (28x28x1 float images made from the id, and a
class id) through tfdist's pipeline, as one pipeline (one machine) and as pipeline 0 of 2
(DATA sharding: a multi-worker job). Prints seconds to the first batch from step 0 and from
STEP (where the pipeline rebuilds its pass and skips the examples before), and the skip's
rate in examples/s. Then an elastic restart: one pipeline resuming at STEP a run that two
pipelines read until then (it reads both old pipelines up to where they stood, and carries
their rest).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from tfdist.data import stream  # noqa: E402
from tfdist.data.function_source import FunctionSource  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--examples", type=int, default=1_000_000)
  parser.add_argument("--step", type=int, default=10_000)
  parser.add_argument("--global_batch", type=int, default=64)
  args = parser.parse_args()

  def images(split):
    count = args.examples if split == "train" else 100
    return tf.data.Dataset.range(count).map(
        lambda i: (tf.fill([28, 28, 1], tf.cast(i % 255, tf.float32) / 255.0), i % 10))

  source = FunctionSource(images).prepare()
  for pipelines in (1, 2):
    context = tf.distribute.InputContext(pipelines, 0, pipelines)
    times = {}
    for step in (0, args.step):
      started = time.perf_counter()
      dataset = source.train_input_fn(args.global_batch, seed=1, start_step=step)(context)
      next(iter(dataset))
      times[step] = time.perf_counter() - started
    skipped = args.step * args.global_batch // pipelines % (args.examples // pipelines)
    print(f"{pipelines} pipeline(s), {args.examples:,} examples, batch {args.global_batch}: "
          f"first batch in {times[0]:.2f} s from step 0, {times[args.step]:.2f} s from step "
          f"{args.step:,} ({skipped:,} examples skipped: "
          f"{skipped / max(times[args.step] - times[0], 1e-9):,.0f} examples/s)", flush=True)

  layout = (stream.Segment(0, 2), stream.Segment(args.step, 1))
  started = time.perf_counter()
  dataset = source.train_input_fn(args.global_batch, seed=1, start_step=args.step,
                                  layout=layout)(tf.distribute.InputContext(1, 0, 1))
  next(iter(dataset))
  print(f"1 pipeline after 2 (an elastic restart) at step {args.step:,}: first batch in "
        f"{time.perf_counter() - started:.2f} s", flush=True)


if __name__ == "__main__":
  main()
