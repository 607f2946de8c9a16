"""Preparing a TFDS dataset in a child process, so this process's TensorFlow stays unstarted.

TFDS's writers run TensorFlow ops, which start the process's TensorFlow runtime; a
multi-worker strategy must configure that runtime itself, before it starts ("Collective ops
must be configured at program startup"). Datasets are read before the strategy is built (bad
input fails before any start-up), so a dataset not prepared yet is prepared by a child
process: a few seconds, once per data dir.
"""

from __future__ import annotations

import os
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
