"""The model dir: where each output goes, and who writes it.

Only the chief writes into `model_dir` (the sidecar evaluator into `eval/`).
Under MultiWorkerMirroredStrategy every worker must still take part in saving;
the others write into a temporary dir that is removed once written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from typing import Iterator, Optional

CHECKPOINTS = "checkpoints"
BACKUP = "backup"
TENSORBOARD = "tensorboard"
EXPORT = "export"
METRICS = "metrics.json"
EVAL = "eval"  # the sidecar evaluator's outputs
# Per-epoch weights, as Keras ModelCheckpoint formats it; the custom loop and the evaluator agree.
CHECKPOINT_TEMPLATE = "ckpt-{epoch:04d}"
_CHECKPOINT_EPOCH = re.compile(r"ckpt-(\d+)$")


def checkpoint_epoch(path: str) -> Optional[int]:
  """The epoch of a `ckpt-NNNN` checkpoint path, or None for anything else."""
  match = _CHECKPOINT_EPOCH.search(path)
  return int(match.group(1)) if match else None


def write_json(path: str, content: dict) -> None:
  """Writes `content` so that readers never see a half-written file."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(content, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


class ModelDir:
  """Paths inside one run's model dir."""

  def __init__(self, root: str, is_chief: bool = True):
    self.root = os.path.abspath(root)
    self.is_chief = is_chief

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
    if self.is_chief:
      shutil.rmtree(self.backup, ignore_errors=True)

  @contextlib.contextmanager
  def write_dir(self, name: str) -> Iterator[str]:
    """The dir this task writes `name` into: the real one on the chief, else a temp dir removed after."""
    if self.is_chief:
      path = self.path(name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      yield path
      return
    tmp = tempfile.mkdtemp(prefix=f"tfdist-{name}-")
    try:
      yield os.path.join(tmp, name)
    finally:
      shutil.rmtree(tmp, ignore_errors=True)

  def write_metrics(self, metrics: dict) -> str:
    """Writes metrics.json atomically (chief only); returns its path."""
    path = self.path(METRICS)
    if not self.is_chief:
      return path
    os.makedirs(self.root, exist_ok=True)
    write_json(path, metrics)
    return path
