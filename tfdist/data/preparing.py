"""Preparing a TFDS dataset in a child process, so this process's TensorFlow stays unstarted.

TFDS's writers run TensorFlow ops, which start the process's TensorFlow runtime; a
multi-worker strategy must configure that runtime itself, before it starts ("Collective ops
must be configured at program startup"). Datasets are read before the strategy is built (bad
input fails before any start-up), so a dataset not prepared yet is prepared by a child
process: a few seconds, once per data dir.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from typing import Callable

import tfdist
from tfdist.data.options import DataSourceError

# What a preparing child runs (tests/conftest.py tells it from a training process by this).
CHILD_CODE = "import sys; from {module} import {name}; {name}(*sys.argv[1:])"


def in_child_process(function: Callable[..., None], *args: str, what: str,
                     show_output: bool = False) -> None:
  """Runs module-level `function(*args)` in a fresh Python with this tfdist.

  Args:
    what: what is prepared, for the error (e.g. "mnist5k in /data").
    show_output: pass the child's output through (a download's progress) instead of
      keeping it for the error.

  Raises:
    DataSourceError: the child failed; one line with its last line of output.

  Example:
    in_child_process(prepare_here, data_dir, what=f"mnist5k in {data_dir}")
  """
  code = CHILD_CODE.format(module=function.__module__, name=function.__name__)
  home = os.path.dirname(os.path.dirname(os.path.abspath(tfdist.__file__)))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (home, os.environ.get("PYTHONPATH")) if p))
  result = subprocess.run([sys.executable, "-c", code, *args], env=env,
                          stdin=subprocess.DEVNULL, text=True,
                          capture_output=not show_output, check=False)
  if result.returncode != 0:
    # The error is stderr's last line (a traceback's); else stdout's.
    lines = [line for output in (result.stdout, result.stderr) if output
             for line in output.splitlines() if line.strip()]
    last = "its output is above" if show_output else lines[-1] if lines else "no output"
    raise DataSourceError(f"`data.dataset`: preparing {what} failed "
                          f"(status {result.returncode}): {last.strip()[:300]}")


def prepare_once(data_dir: str, name: str, is_prepared: Callable[[], bool],
                 prepare: Callable[[], None]) -> None:
  """Runs `prepare()` unless `is_prepared()`, under a file lock in a local `data_dir`: the
  tasks of a local cluster prepare dataset `name` once, the others wait and find it prepared.
  (Remote storage has no file locks: there TFDS's atomic rename decides.)

  Raises:
    DataSourceError: `data_dir` cannot be created (one line naming `data.data_dir`).

  Example:
    prepare_once(root, "mnist", lambda: fresh().is_prepared(), lambda: download(root))
  """
  if "://" in data_dir:
    if not is_prepared():
      prepare()
    return
  try:
    os.makedirs(data_dir, exist_ok=True)
  except OSError as e:
    raise DataSourceError(f"`data.data_dir` ({data_dir}): cannot be created "
                          f"({e.strerror})") from None
  lock_name = "." + re.sub(r"[^\w.-]", "_", name) + ".lock"  # e.g. a TFDS "name/config"
  with open(os.path.join(data_dir, lock_name), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not is_prepared():
      prepare()
