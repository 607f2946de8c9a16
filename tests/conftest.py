"""Shared fixtures: one prepared mnist5k data dir per session, and a runner for the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
  """A TFDS data dir with mnist5k prepared (offline, about a second)."""
  path = str(tmp_path_factory.mktemp("tfds"))
  from tfdist.data import mnist5k
  mnist5k.builder(path)
  return path


def cli_env(**extra: str) -> dict:
  env = dict(os.environ)
  env.pop("TF_CONFIG", None)
  env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
  env.update(extra)
  return env


def run_tfdist(*args: str, env: dict | None = None, timeout: float = 300,
               cwd: str = REPO) -> subprocess.CompletedProcess:
  """Runs `python -m tfdist ARGS` and returns the finished process (text output)."""
  return subprocess.run([sys.executable, "-m", "tfdist", *args], cwd=cwd, env=env or cli_env(),
                        capture_output=True, text=True, timeout=timeout)


def read_metrics(model_dir: str) -> dict:
  with open(os.path.join(model_dir, "metrics.json"), encoding="utf-8") as f:
    return json.load(f)


# Test processes share 2 cores: one thread for ops, one for scheduling.
THREAD_FLAGS = ("--intra_op_threads=1", "--inter_op_threads=1")
