"""Runs the pods of tfdist's Kubernetes manifests as local processes, as Kubernetes starts them.

Each pod of each Indexed Job becomes a process with exactly its container's command and env,
plus what Kubernetes adds (JOB_COMPLETION_INDEX, the downward API's pod name). Pods find each
other by their DNS names (`<job>-<index>.<service>`): each process runs in a private mount
namespace (`unshare --mount`) whose /etc/hosts maps those names to 127.0.0.1; the machine's own
/etc/hosts is not touched. The container's `tfdist` is this checkout's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional


def can_run() -> bool:
  """Private mount namespaces need root and unshare (util-linux)."""
  if os.geteuid() != 0 or shutil.which("unshare") is None:
    return False
  probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
  return probe.returncode == 0


def pods(docs: list[dict]) -> list[tuple[str, list[str], dict]]:
  """(pod name, command, env) of every pod the manifests' Jobs make."""
  result = []
  for doc in docs:
    if doc["kind"] != "Job":
      continue
    job = doc["metadata"]["name"]
    container = doc["spec"]["template"]["spec"]["containers"][0]
    for index in range(doc["spec"]["completions"]):
      pod = f"{job}-{index}-sim"
      env = {"JOB_COMPLETION_INDEX": str(index)}
      for var in container["env"]:
        env[var["name"]] = (pod if var.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                            == "metadata.name" else var["value"])
      result.append((pod, list(container["command"]), env))
  return result


def hosts_file(docs: list[dict], path: str) -> str:
  """An /etc/hosts with every pod's DNS name at 127.0.0.1 (and the usual localhost lines)."""
  service = next(d["metadata"]["name"] for d in docs if d["kind"] == "Service")
  names = [f"{d['metadata']['name']}-{i}.{service}" for d in docs if d["kind"] == "Job"
           for i in range(d["spec"]["completions"])]
  with open(path, "w", encoding="utf-8") as f:
    f.write("127.0.0.1 localhost\n::1 localhost\n" + "".join(f"127.0.0.1 {n}\n" for n in names))
  return path


def run(docs: list[dict], work_dir: str, base_env: dict, timeout_s: float = 400,
        while_running: Optional[Callable[[dict[str, subprocess.Popen]], None]] = None
        ) -> dict[str, tuple[int, str]]:
  """Starts every pod, waits for all to end; returns {pod: (exit status, output)}.

  `while_running` is called with the pods' processes every half second until they end (e.g.
  to send them SIGTERM, as deleting their Job does).
  """
  hosts = hosts_file(docs, os.path.join(work_dir, "hosts"))
  procs = {}
  for pod, command, env in pods(docs):
    if command[0] == "tfdist":  # the image's console script
      command = [sys.executable, "-m", "tfdist", *command[1:]]
    log = open(os.path.join(work_dir, f"{pod}.log"), "w", encoding="utf-8")
    procs[pod] = (subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts,
         *command],
        env={**base_env, **env}, stdout=log, stderr=subprocess.STDOUT), log)
  deadline = time.monotonic() + timeout_s
  while any(p.poll() is None for p, _ in procs.values()) and time.monotonic() < deadline:
    if while_running is not None:
      while_running({pod: proc for pod, (proc, _) in procs.items()})
    time.sleep(0.5)
  results = {}
  for pod, (proc, log) in procs.items():
    if proc.poll() is None:
      proc.kill()
    log.close()
    with open(log.name, encoding="utf-8") as f:
      results[pod] = (proc.wait(), f.read())
  return results
