"""`tfdist cluster validate PATH` and `tfdist cluster tf-config PATH --task=TYPE:INDEX`."""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from tfdist.cli.errors import EXIT_OK, run_command
from tfdist.cluster import TaskId, load_spec_file, tf_config
from tfdist.strategy import StrategyOptions, choose

_TASK = flags.DEFINE_string("task", None, "tf-config: the task, TYPE:INDEX (e.g. worker:1).")

_USAGE = "expected `tfdist cluster validate PATH` or `tfdist cluster tf-config PATH --task=TYPE:INDEX`"


def main(argv: Sequence[str]) -> int:
  if len(argv) != 3 or argv[1] not in ("validate", "tf-config"):
    raise app.UsageError(_USAGE)
  action, path = argv[1], argv[2]
  spec = load_spec_file(path)
  if action == "validate":
    tasks = list(spec.tasks())
    # The choice a trainer would make on this cluster (auto, no GPUs assumed).
    choice = choose(StrategyOptions(), tf_config.TaskConfig(spec, tasks[0]), num_gpus=0)
    print(f"{path}: valid; {len(tasks)} task(s): {', '.join(map(str, tasks))}; "
          f"--strategy=auto picks {choice.class_name}")
    return EXIT_OK
  if not _TASK.value:
    raise app.UsageError("--task: required, TYPE:INDEX such as worker:1")
  print(tf_config.emit(spec, TaskId.parse(_TASK.value)))
  return EXIT_OK


def run(argv: Sequence[str]) -> None:
  run_command("cluster", main, argv)
