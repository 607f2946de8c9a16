"""Exact resume: a run killed mid-epoch and resumed from its backup reads the examples the
uninterrupted run would have and, with --deterministic, ends with the same weights."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.cluster_scripts import read_counts
from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist, wait_for_backup

# 4,096 ids at a global batch of 16: 256 steps an epoch, a backup every 10 steps. Backup 28
# is past step 20 of epoch 2 (fit's interval runs on across epochs; the custom loop's too).
COUNTING = ("--dataset=tests.cluster_scripts.read_counts:ids", "--global_batch_size=16",
            "--epochs=2", "--backup_every_steps=10", "--save_share=0",
            "--steps_per_execution=2", "--strategy=mirrored", "--cpu_replicas=2",
            "--params_override=train.export=false", *THREAD_FLAGS)
KILL_AFTER_BACKUP = 28


def kill_and_resume(args, model_dir, backups, env=None, backup=KILL_AFTER_BACKUP):
  """Starts `tfdist train ARGS`, SIGKILLs it once backup `backup` is in `backups` (mid-epoch:
  the run goes on past it), then runs the same command to its end; returns that run."""
  command = [sys.executable, "-m", "tfdist", "train", f"--model_dir={model_dir}", *args]
  env = env or cli_env()
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  try:
    wait_for_backup(backups, backup, proc)
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=300)


def backup_folder(model_dir, loop):
  """Where a loop's backups are (tf_keras's fit keeps them in a `chief` folder)."""
  return model_dir / "backup" / "chief" if loop == "fit" else model_dir / "backup"


@pytest.mark.e2e
@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_a_resumed_unseeded_run_reads_every_example_once_an_epoch(tmp_path, loop):
  model_dir = tmp_path / "run"
  args = (*COUNTING, "--model=tests.cluster_scripts.read_counts:counter", f"--loop={loop}",
          "--params_override=train.seed=null")
  result = kill_and_resume(args, model_dir, backup_folder(model_dir, loop))
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"]["epoch"] == 2 and metrics["resumed_from"]["step"] >= 20
  counts = read_counts.read_counts(str(model_dir / "checkpoints" / "ckpt-0002"))
  assert len(counts) == 4096 and set(counts) == {2}, sorted(set(counts))
  assert "Input resumes at example" in result.stderr
  # The seed the killed run drew (run.json) orders the resumed run's input.
  assert f"Input order: seed {metrics['input_seed']}, drawn by the run" in result.stderr
  if loop == "fit":  # the final checkpoint has the final weights' digest
    evaluated = run_tfdist("evaluate", f"--model_dir={model_dir}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"weights_sha256 {metrics['weights_sha256']};" in evaluated.stdout


# mnist5k's cnn (dropout included) on 2 replicas: 62 steps an epoch, a backup every 10 steps;
# backup 8 is past step 10 of epoch 2.
DETERMINISTIC = ("--deterministic", "--seed=3", "--epochs=2", "--strategy=mirrored",
                 "--cpu_replicas=2", "--backup_every_steps=10", "--save_share=0",
                 "--steps_per_execution=2", "--params_override=train.export=false", *THREAD_FLAGS)


@pytest.mark.e2e
@pytest.mark.parametrize("loop, model", [
    ("fit", "cnn"), ("custom", "cnn"),
    ("fit", "tests.cluster_scripts.keras3_dropout:cnn"),  # Keras 3: its train_step in our loop
])
def test_a_killed_and_resumed_deterministic_run_ends_with_the_uninterrupted_weights(
    tmp_path, data_dir, loop, model):
  args = (*DETERMINISTIC, f"--loop={loop}", f"--model={model}", f"--data_dir={data_dir}")
  if ":" in model:  # Keras 3's backups are the custom loop's
    loop = "custom"
  whole = run_tfdist("train", f"--model_dir={tmp_path / 'whole'}", *args)
  assert whole.returncode == 0, whole.stderr[-3000:]
  resumed = kill_and_resume(args, tmp_path / "resumed", backup_folder(tmp_path / "resumed", loop),
                            backup=8)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  expected, metrics = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "resumed")
  assert metrics["resumed_from"]["epoch"] == 2 and metrics["resumed_from"]["step"] >= 10
  print(f"weights_sha256 Mirrored x2, {loop}, {model}: uninterrupted "
        f"{expected['weights_sha256']}, resumed at {metrics['resumed_from']} "
        f"{metrics['weights_sha256']}")  # (shown by pytest -rP)
  assert metrics["weights_sha256"] == expected["weights_sha256"]
  assert metrics["eval_loss"] == expected["eval_loss"]
