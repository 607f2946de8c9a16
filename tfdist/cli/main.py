"""The `tfdist` console script: one subcommand per module, imported on demand.

Each subcommand defines its absl flags next to their use, in its own module;
importing only the one that runs keeps their flag names from colliding.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Sequence


COMMANDS = {
    "train": ("tfdist.cli.train", "train a model under the right tf.distribute strategy"),
    "evaluate": ("tfdist.cli.evaluate", "evaluate a trained run's checkpoint on its eval split"),
    "launch": ("tfdist.cli.launch", "start every task of a cluster spec on this machine"),
    "cluster": ("tfdist.cli.cluster", "validate a cluster spec, print a task's TF_CONFIG"),
    "bench": ("tfdist.cli.bench", "measure overhead, scaling, input and start-up; plot them"),
}

USAGE = "usage: tfdist COMMAND [flags]   (tfdist COMMAND --help for its flags)\n\ncommands:\n" + \
    "\n".join(f"  {name:<9}{help_}" for name, (_, help_) in COMMANDS.items())


def main(argv: Optional[Sequence[str]] = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(USAGE)
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    print(f"tfdist: error: unknown command {command!r}; expected one of {', '.join(COMMANDS)}",
          file=sys.stderr)
    sys.exit(2)
  module = importlib.import_module(COMMANDS[command][0])
  module.run([f"tfdist {command}"] + argv[2:])


if __name__ == "__main__":
  main()
