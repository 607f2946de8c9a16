"""The custom training loop: exact loss weighting, equivalence with fit, resume, all strategies."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import (REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist,
                           wait_for_backup)

SPECS = os.path.join(REPO, "configs", "clusters")


@pytest.mark.e2e
def test_a_partial_batch_is_weighted_by_its_true_size():
  """Uneven replicas (2 examples + 1): the loss and gradient are those of the mean over 3."""
  result = subprocess.run([sys.executable, "-m", "tests.cluster_scripts.partial_batch"], cwd=REPO,
                          env=cli_env(), capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  values = json.loads(result.stdout.strip().splitlines()[-1])
  assert values["loss"] == pytest.approx(values["exact"], rel=1e-5)
  assert values["max_grad_diff"] < 1e-5
  assert abs(values["naive"] - values["exact"]) > 0.1  # a per-replica mean would be wrong here


@pytest.mark.e2e
def test_custom_and_fit_give_the_same_loss_curve(tmp_path, data_dir):
  curves = {}
  for loop in ("fit", "custom"):
    model_dir = tmp_path / loop
    result = run_tfdist("train", f"--loop={loop}", "--strategy=mirrored", "--cpu_replicas=2",
                        "--epochs=3", "--seed=11", f"--data_dir={data_dir}",
                        f"--model_dir={model_dir}", *THREAD_FLAGS)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_metrics(model_dir)
    assert metrics["loop"] == loop and metrics["num_replicas"] == 2
    assert metrics["examples_per_sec"] > 0 and metrics["cpu_ms_per_step"] > 0
    curves[loop] = metrics["train_loss_history"]
  assert curves["custom"] == pytest.approx(curves["fit"], rel=2e-3), curves
  custom = read_metrics(tmp_path / "custom")
  assert custom["eval_accuracy"] >= 0.95
  assert sorted(os.listdir(tmp_path / "custom")) == ["checkpoints", "export", "metrics.json",
                                                     "params.yaml", "run.json", "tensorboard"]
  assert any(n.startswith("ckpt-0003") for n in os.listdir(tmp_path / "custom" / "checkpoints"))


@pytest.mark.e2e
def test_custom_loop_resumes_from_its_backup(tmp_path, data_dir):
  """SIGKILL a one-process custom-loop run mid-epoch; the same command resumes it."""
  model_dir = tmp_path / "run"
  # 600 steps of 16 examples: an epoch lasts over a second, so the kill lands mid-epoch 2.
  args = [sys.executable, "-m", "tfdist", "train", "--loop=custom", "--epochs=2",
          "--global_batch_size=16", "--steps_per_epoch=600",
          "--backup_every_steps=10", "--save_share=0", "--steps_per_execution=5",
          f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", *THREAD_FLAGS]
  proc = subprocess.Popen(args, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True)
  for line in proc.stdout:
    if line.startswith("Epoch 1/2"):
      break
  # Epoch 1 leaves 60 backups (one per 10 steps); the 62nd is epoch 2 past step 10. Waiting for
  # it on disk, not for a time, keeps the kill mid-epoch on a loaded machine too.
  wait_for_backup(model_dir / "backup", 62, proc)
  proc.send_signal(signal.SIGKILL)
  proc.wait(timeout=60)
  result = subprocess.run(args, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = read_metrics(model_dir)
  assert metrics["resumed_from"]["epoch"] == 2 and metrics["resumed_from"]["step"] >= 10
  assert "Resumed from backup at epoch 2 after step" in result.stderr
  assert metrics["epochs_completed"] == 2 and metrics["train_loss_history"][-1] < 0.3
  assert not (model_dir / "backup").exists()


@pytest.mark.cluster
@pytest.mark.parametrize("spec, strategy, bar", [
    # (MultiWorkerMirrored: test_multi_worker.py's test_the_custom_loop_on_two_workers.)
    ("local-ps.yaml", "ParameterServerStrategy", 0.93),
])
def test_custom_loop_on_real_clusters(tmp_path, data_dir, spec, strategy, bar):
  model_dir = tmp_path / "run"
  result = run_tfdist("launch", f"--cluster_spec={os.path.join(SPECS, spec)}",
                      f"--log_dir={tmp_path / 'logs'}", "--", "tfdist", "train", "--loop=custom",
                      "--steps_per_execution=4", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                      *THREAD_FLAGS, timeout=400)
  assert result.returncode == 0, result.stdout[-4000:]
  metrics = read_metrics(model_dir)
  assert metrics["strategy"] == strategy and metrics["loop"] == "custom"
  assert metrics["epochs_completed"] == 10 and metrics["eval_accuracy"] >= bar
  assert "Epoch 10/10: 62 steps" in result.stdout
