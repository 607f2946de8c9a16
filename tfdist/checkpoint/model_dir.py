"""The model dir: where each output goes, and who writes it.

Only the chief writes into `model_dir` (the sidecar evaluator into `eval/`).
Under MultiWorkerMirroredStrategy every worker must still take part in saving;
the others write into a local temporary dir that is removed once written
(`ModelDir.task_dir`, the one place that decides; tf_keras's BackupAndRestore
applies the same rule itself).

The model dir may be on any file system TensorFlow knows (`gs://...`, `ram://...`),
so every access goes through `tf.io.gfile` (imported on first use: the layout
itself is importable without TensorFlow).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from typing import Any, Iterator, Optional

from tfdist._processes import process_exists


class CheckpointError(ValueError):
  """A checkpoint or model dir cannot serve this run; the message names the field."""


class ModelDirError(CheckpointError):
  """The model dir cannot serve this run (e.g. not shared by every task); names the task."""

CHECKPOINTS = "checkpoints"
BACKUP = "backup"
TENSORBOARD = "tensorboard"
EXPORT = "export"
METRICS = "metrics.json"
PARAMS = "params.yaml"  # the resolved experiment config (the CLI writes it)
EVAL = "eval"  # the sidecar evaluator's outputs
# The chief's record of the run, for the sidecar evaluator: which run this is, the checkpoints
# it wrote (in order), and, once finished, the final one.
RUN_RECORD = "run.json"
RUN_TRAINING = "training"
RUN_FINISHED = "finished"
# Per-epoch weights, as Keras ModelCheckpoint formats it; the custom loop and the evaluator agree.
CHECKPOINT_TEMPLATE = "ckpt-{epoch:04d}"
_CHECKPOINT_EPOCH = re.compile(r"ckpt-(\d+)$")


def check_model_dir(path: str) -> None:
  """A local model dir must be a directory or not exist yet (remote ones are checked by TF).

  Raises:
    ModelDirError: naming --model_dir and what is in the way.
  """
  if not is_local(path):
    return
  existing = path
  while existing and not os.path.exists(existing):
    existing = os.path.dirname(existing.rstrip(os.sep)) if existing != os.sep else ""
  if existing == path and not os.path.isdir(path):
    raise ModelDirError(f"--model_dir: {path} exists and is not a directory")
  if existing and (not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK)):
    raise ModelDirError(f"--model_dir: cannot create or write {path} ({existing} is not a "
                        "writable directory)")


def checkpoint_epoch(path: str) -> Optional[int]:
  """The epoch of a `ckpt-NNNN` checkpoint path, or None for anything else."""
  match = _CHECKPOINT_EPOCH.search(path)
  return int(match.group(1)) if match else None


def latest_checkpoint(model_dir: str) -> Optional[str]:
  """The newest `checkpoints/ckpt-NNNN` of a model dir (by epoch), or None."""
  folder = os.path.join(model_dir, CHECKPOINTS)
  if not gfile().isdir(folder):
    return None
  epochs = {checkpoint_epoch(name[:-len(".index")]): name[:-len(".index")]
            for name in gfile().listdir(folder) if name.endswith(".index")}
  epochs.pop(None, None)
  return os.path.join(folder, epochs[max(epochs)]) if epochs else None


def _tf() -> Any:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  return tf


def gfile() -> Any:
  """`tf.io.gfile`, imported on first use."""
  return _tf().io.gfile


def is_local(path: str) -> bool:
  return "://" not in path


def read_json(path: str) -> Optional[dict]:
  """The JSON object in `path`, or None when it is missing or not (yet) a JSON object."""
  try:
    with gfile().GFile(path, "r") as f:
      content = json.loads(f.read())
  except (_tf().errors.OpError, OSError, ValueError):
    return None
  return content if isinstance(content, dict) else None


def write_json(path: str, content: dict) -> None:
  """Writes `content` so that readers never see a half-written file."""
  io = gfile()
  tmp = path + ".tmp"
  with io.GFile(tmp, "w") as f:
    f.write(json.dumps(content, indent=2, sort_keys=True) + "\n")
  io.rename(tmp, path, overwrite=True)


def _task_dir_prefix() -> str:
  # The host is in the name: a /tmp shared with other hosts' (or pid namespaces') tasks holds
  # dirs whose process ids mean nothing here.
  return os.path.join(tempfile.gettempdir(), f"tfdist-task-{socket.gethostname()}-pid")


def remove_task_dirs_of_ended_processes() -> list[str]:
  """Removes the temporary task dirs this host's ended processes left (a task killed with
  SIGKILL cannot remove its own); returns them. A process id reused since is left alone."""
  prefix = _task_dir_prefix()
  removed = []
  for path in glob.glob(glob.escape(prefix) + "*"):
    pid = path[len(prefix):].split("-", 1)[0]
    if pid.isdigit() and not process_exists(int(pid)):
      shutil.rmtree(path, ignore_errors=True)
      removed.append(path)
  return removed


class ModelDir:
  """Paths inside one run's model dir."""

  def __init__(self, root: str, is_chief: bool = True):
    self.root = os.path.abspath(root) if is_local(root) else root.rstrip("/")
    self.is_chief = is_chief
    self._run: Optional[dict] = None

  def path(self, name: str) -> str:
    return os.path.join(self.root, name)

  @property
  def checkpoints(self) -> str:
    return self.path(CHECKPOINTS)

  @property
  def backup(self) -> str:
    # Every worker restores from the same backup dir; tf_keras gives non-chiefs temp copies.
    return self.path(BACKUP)

  @property
  def tensorboard(self) -> str:
    return self.path(TENSORBOARD)

  def remove_backup(self) -> None:
    """A finished run needs no backup (BackupAndRestore leaves its empty dir)."""
    if self.is_chief and gfile().exists(self.backup):
      gfile().rmtree(self.backup)

  def task_dir(self, name: str) -> str:
    """Where this task writes `name` (a dir): the model dir's on the chief; on any other
    task a new local temporary dir, to remove with `release` once written."""
    if self.is_chief:
      return self.path(name)
    remove_task_dirs_of_ended_processes()
    return tempfile.mkdtemp(prefix=f"{_task_dir_prefix()}{os.getpid()}-{name}-")

  def release(self, task_dir: str) -> None:
    """Removes a non-chief's temporary `task_dir` (the chief's stays)."""
    if not self.is_chief:
      shutil.rmtree(task_dir, ignore_errors=True)

  @contextlib.contextmanager
  def write_dir(self, name: str) -> Iterator[str]:
    """The path this task writes `name` to while in the block (a temp one off the chief)."""
    folder = self.root if self.is_chief else self.task_dir(name)
    try:
      path = os.path.join(folder, name)
      gfile().makedirs(os.path.dirname(path))
      yield path
    finally:
      self.release(folder)

  # --- The run record (run.json), written by the chief, read by the sidecar evaluator. ---

  def read_run(self) -> Optional[dict]:
    return read_json(self.path(RUN_RECORD))

  def run_finished(self, run_id: Optional[str]) -> bool:
    """True once the chief has recorded run `run_id` finished."""
    record = self.read_run()
    return bool(record) and record.get("run_id") == run_id and record.get("status") == RUN_FINISHED

  def start_run(self, run_id: str, keep_checkpoints: Optional[bool] = None, **details) -> None:
    """Records that run `run_id` is training.

    The previous record's checkpoints are kept when `keep_checkpoints` (a finished
    run trained further), or by default when it is unfinished and this is the same
    run restarted, or a backup is left to resume from.
    """
    if not self.is_chief:
      return
    previous = self.read_run() or {}
    continues = keep_checkpoints or keep_checkpoints is None and (
        previous.get("status") == RUN_TRAINING
        and (previous.get("run_id") == run_id or self.has_backup()))
    self._run = {"run_id": run_id, "status": RUN_TRAINING,
                 "checkpoints": list(previous.get("checkpoints", [])) if continues else [],
                 "final_checkpoint": None, **details}
    self._write_run()

  def has_backup(self) -> bool:
    return gfile().isdir(self.backup) and bool(gfile().listdir(self.backup))

  def add_checkpoint(self, name: str) -> None:
    """Records a per-epoch checkpoint (`ckpt-NNNN`) of this run, once written."""
    if self._run is not None and name not in self._run["checkpoints"]:
      self._run["checkpoints"].append(name)
      self._write_run()

  def update_run(self, **details) -> None:
    """Adds `details` to this run's record (chief only)."""
    if self._run is not None:
      self._run.update(details)
      self._write_run()

  def recorded_checkpoint(self) -> Optional[str]:
    """The path of the last checkpoint this run recorded (this task's record: the chief's)."""
    names = (self._run or {}).get("checkpoints") or []
    return self.path(os.path.join(CHECKPOINTS, names[-1])) if names else None

  def finish_run(self) -> None:
    """Marks the run finished, naming its last checkpoint: the evaluator's cue to stop."""
    if self._run is not None:
      checkpoints = self._run["checkpoints"]
      self._run.update(status=RUN_FINISHED,
                       final_checkpoint=checkpoints[-1] if checkpoints else None)
      self._write_run()

  def _write_run(self) -> None:
    gfile().makedirs(self.root)
    write_json(self.path(RUN_RECORD), self._run)

  def write_text(self, name: str, text: str) -> str:
    """Writes `name` in the model dir (chief only); returns its path."""
    path = self.path(name)
    if self.is_chief:
      gfile().makedirs(self.root)
      with gfile().GFile(path, "w") as f:
        f.write(text)
    return path

  def write_metrics(self, metrics: dict) -> str:
    """Writes metrics.json atomically (chief only); returns its path."""
    path = self.path(METRICS)
    if not self.is_chief:
      return path
    gfile().makedirs(self.root)
    write_json(path, metrics)
    return path
