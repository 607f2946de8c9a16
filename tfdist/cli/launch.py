"""`tfdist launch --cluster_spec=PATH [--restarts=N] [--min_workers=N] [--log_dir=PATH]
[--link=RATE] -- COMMAND ...`"""

from __future__ import annotations

import os
import time
from typing import Sequence

from absl import app, flags

from tfdist.cli.app import run_command
from tfdist.cluster import load_spec_file
from tfdist.launch import Launcher, LaunchOptions
from tfdist.launch.emulated_link import Link, check_host, remove_stale

_CLUSTER_SPEC = flags.DEFINE_string("cluster_spec", None, "Cluster spec file to start locally.")
_RESTARTS = flags.DEFINE_integer(
    "restarts", 0, "Restarts after failures, in all: of the whole job (MWMS, a lost ps), or of "
    "a lost parameter-server worker alone. A task's user error (status 2) is never restarted.",
    lower_bound=0)
_MIN_WORKERS = flags.DEFINE_integer(
    "min_workers", 0, "MultiWorkerMirrored jobs: once --restarts are used up, restart the job "
    "without the worker whose failure ended it, while this many workers remain; training "
    "resumes from its backup with the same global batch. 0: the job fails.", lower_bound=0)
# --log_dir is absl.logging's own flag (it writes no files unless asked); here it names
# where the per-task logs go, default /tmp/tfdist/launch-<time>-<pid>.
_STOP_GRACE = flags.DEFINE_float(
    "stop_grace", 5.0, "Seconds between SIGTERM and SIGKILL when stopping tasks.", lower_bound=0)


_LINK = flags.DEFINE_string(
    "link", None, "Emulate a network between the tasks: each in its own network namespace, "
    "its traffic shaped to RATE, e.g. 1gbit or 100mbit (RATE:DELAY, e.g. 1gbit:0.2ms, where the "
    "kernel has netem). Linux, root. Tasks record the bytes they sent (metrics.json).")
_REMOVE_LINKS = flags.DEFINE_boolean(
    "remove_links", False, "Only delete the network namespaces that --link jobs of launchers "
    "no longer running left behind (a launcher killed with SIGKILL), and exit.")


def main(argv: Sequence[str]) -> int:
  command = list(argv[1:])
  if _REMOVE_LINKS.value:
    check_host()
    removed = remove_stale()
    print(f"removed {len(removed)} network namespace(s)" + (f": {', '.join(removed)}"
                                                            if removed else ""))
    return 0
  if not _CLUSTER_SPEC.value:
    raise app.UsageError("--cluster_spec: required, e.g. configs/clusters/local-2workers.yaml")
  if not command:
    raise app.UsageError("no command to run; put it after --, e.g. -- tfdist train")
  spec = load_spec_file(_CLUSTER_SPEC.value)
  if _MIN_WORKERS.value and spec.num_ps:
    raise app.UsageError("--min_workers: for MultiWorkerMirrored jobs; under parameter servers "
                         "training goes on without a lost worker already")
  if _MIN_WORKERS.value > spec.num_compute_workers:
    raise app.UsageError(f"--min_workers: {_MIN_WORKERS.value} is more than the cluster's "
                         f"{spec.num_compute_workers} worker(s)")
  log_dir = os.path.expanduser(flags.FLAGS.log_dir) if flags.FLAGS.log_dir else os.path.join(
      "/tmp/tfdist", f"launch-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
  try:
    os.makedirs(log_dir, exist_ok=True)
  except OSError as e:
    raise app.UsageError(f"--log_dir: cannot create {log_dir} ({e.strerror or e})") from None
  link = None
  if _LINK.value is not None:
    link = Link.parse(_LINK.value)
    check_host()
  options = LaunchOptions(restarts=_RESTARTS.value, log_dir=log_dir,
                          stop_grace_s=_STOP_GRACE.value, link=link,
                          min_workers=_MIN_WORKERS.value)
  return Launcher(spec, command, options).run()


def run(argv: Sequence[str]) -> None:
  run_command("launch", main, argv)
