"""The model dir's pure rules, on real files in a temp dir: where a run starts (the resume
rule), which checkpoints a run record keeps, where a non-chief writes."""

import json
import os

import pytest

from tfdist.checkpoint import CheckpointError, ModelDir
from tfdist.checkpoint.resume import resolve_checkpoint, starting_point


def finished_run(root, epochs=4, metrics=True):
  """A model dir as a finished run leaves it: run.json finished, its final checkpoint,
  metrics.json."""
  model_dir = ModelDir(str(root))
  model_dir.start_run("run-a")
  os.makedirs(model_dir.checkpoints, exist_ok=True)
  name = f"ckpt-{epochs:04d}"
  for suffix in (".index", ".data-00000-of-00001"):
    open(os.path.join(model_dir.checkpoints, name + suffix), "w").close()
  model_dir.add_checkpoint(name)
  model_dir.finish_run()
  if metrics:
    model_dir.write_metrics({"epochs_completed": epochs})
  return model_dir


def test_a_backup_wins_over_everything(tmp_path):
  model_dir = finished_run(tmp_path)
  point = starting_point(model_dir.read_run(), True, model_dir, 10, "/some/init")
  assert (point.epoch, point.weights, point.done) == (0, None, False)
  assert point.reason == "resumes from its backup"


def test_a_finished_run_continues_with_more_epochs_or_has_nothing_to_train(tmp_path):
  model_dir = finished_run(tmp_path, epochs=4)
  more = starting_point(model_dir.read_run(), False, model_dir, 6, "/ignored")
  assert (more.epoch, more.done) == (4, False)
  assert more.weights == os.path.join(model_dir.checkpoints, "ckpt-0004")
  same = starting_point(model_dir.read_run(), False, model_dir, 4, None)
  assert (same.epoch, same.done) == (4, True) and "nothing to train" in same.reason


def test_a_finished_run_without_its_metrics_is_not_finished(tmp_path):
  model_dir = finished_run(tmp_path, metrics=False)
  point = starting_point(model_dir.read_run(), False, model_dir, 6, None)
  assert (point.epoch, point.weights) == (0, None) and point.reason == "a new run from scratch"


def test_a_new_run_starts_from_init_checkpoint_or_scratch(tmp_path):
  model_dir = ModelDir(str(tmp_path / "new"))
  assert starting_point(None, False, model_dir, 3, "/w/ckpt-0002").weights == "/w/ckpt-0002"
  assert starting_point(None, False, model_dir, 3, None).weights is None


def test_init_checkpoint_resolves_a_model_dir_to_its_final_checkpoint(tmp_path):
  model_dir = finished_run(tmp_path / "done", epochs=3)
  assert resolve_checkpoint(model_dir.root) == os.path.join(model_dir.checkpoints, "ckpt-0003")
  prefix = os.path.join(model_dir.checkpoints, "ckpt-0003")
  assert resolve_checkpoint(prefix) == prefix
  with pytest.raises(CheckpointError, match="`train.init_checkpoint`.*no checkpoint there"):
    resolve_checkpoint(str(tmp_path / "empty"))


def test_a_run_record_keeps_checkpoints_only_of_the_run_it_continues(tmp_path):
  model_dir = ModelDir(str(tmp_path))
  model_dir.start_run("run-a")
  model_dir.add_checkpoint("ckpt-0001")
  model_dir.start_run("run-a")  # the same run restarted: keeps them
  assert model_dir.read_run()["checkpoints"] == ["ckpt-0001"]
  model_dir.start_run("run-b")  # another run, no backup: starts its own list
  assert model_dir.read_run()["checkpoints"] == []
  model_dir.add_checkpoint("ckpt-0001")
  os.makedirs(model_dir.backup)
  open(os.path.join(model_dir.backup, "checkpoint"), "w").close()
  model_dir.start_run("run-c")  # another id, but a backup to resume from: keeps them
  assert model_dir.read_run()["checkpoints"] == ["ckpt-0001"]
  model_dir.finish_run()
  model_dir.start_run("run-d", keep_checkpoints=True)  # a finished run trained further
  assert model_dir.read_run()["checkpoints"] == ["ckpt-0001"]
  assert json.loads((tmp_path / "run.json").read_text())["status"] == "training"


def test_only_the_chief_writes_in_the_model_dir(tmp_path):
  chief, other = ModelDir(str(tmp_path), is_chief=True), ModelDir(str(tmp_path), is_chief=False)
  assert chief.task_dir("backup") == str(tmp_path / "backup")
  elsewhere = other.task_dir("backup")
  assert os.path.isdir(elsewhere) and not elsewhere.startswith(str(tmp_path))
  other.release(elsewhere)
  assert not os.path.exists(elsewhere)
  with other.write_dir("export") as path:
    assert not path.startswith(str(tmp_path))
  assert not os.path.exists(os.path.dirname(path))
  other.start_run("run-a")
  other.write_metrics({"x": 1})
  assert os.listdir(tmp_path) == []


def test_a_task_dir_left_by_a_killed_process_goes_when_the_next_is_made(tmp_path, monkeypatch):
  """A SIGKILLed non-chief leaves its temporary dirs: the next task dir made on the host
  removes those of ended processes, and only those."""
  import socket
  import subprocess
  import sys
  import tempfile
  monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
  os.mkdir(tmp_path / "tmp")
  ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                         capture_output=True, text=True, check=True).stdout.strip()
  prefix = tmp_path / "tmp" / f"tfdist-task-{socket.gethostname()}-pid"
  left = [f"{prefix}{ended}-backup-x1", f"{prefix}{ended}-checkpoints-x2"]
  kept = [f"{prefix}{os.getpid()}-backup-x3",  # a live process's (this one's)
          str(tmp_path / "tmp" / f"tfdist-task-otherhost-pid{ended}-backup-x4")]  # not ours
  for path in left + kept:
    os.makedirs(os.path.join(path, "ckpt"))
  made = ModelDir(str(tmp_path / "run"), is_chief=False).task_dir("backup")
  assert made.startswith(f"{prefix}{os.getpid()}-backup-") and os.path.isdir(made)
  assert sorted(os.listdir(tmp_path / "tmp")) == sorted(
      os.path.basename(p) for p in kept + [made])


@pytest.mark.parametrize("epoch, step, expected", [
    (2, 9, 134),    # after step 9 of epoch 3
    (2, 61, 186),   # after an epoch's last step
    (2, -1, 186),   # at an epoch's end (no step recorded: parameter servers)
])
def test_a_fit_backup_says_how_many_steps_it_holds(tmp_path, epoch, step, expected):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tfdist.checkpoint.backup import backed_up_step  # pylint: disable=import-outside-toplevel
  checkpoint = tf.train.Checkpoint(ckpt_saved_epoch=tf.Variable(epoch, dtype=tf.int64),
                                   ckpt_saved_batch=tf.Variable(step, dtype=tf.int64))
  tf.train.CheckpointManager(checkpoint, str(tmp_path / "chief"), max_to_keep=1).save()
  assert backed_up_step(str(tmp_path), 62) == expected
  assert backed_up_step(str(tmp_path / "none"), 62) == 0
