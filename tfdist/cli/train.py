"""`tfdist train`: the same command on a laptop and on every task of a cluster."""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn, Optional, Sequence

from absl import app, flags, logging

from tfdist import config as config_lib
from tfdist.cli.app import EXIT_OK, native_stderr_to_log, run_command
from tfdist.cluster import (ClusterOptions, TaskConfig, TaskId, environments, load_spec_file,
                            tf_config)
from tfdist.models.options import SPARSE_UPDATES
from tfdist.strategy import STRATEGY_NAMES
from tfdist.strategy.options import (ALLREDUCE_DTYPES, COMMUNICATIONS, CROSS_DEVICE_OPS,
                                    PARAMETER_SERVER)
from tfdist.train import LOOPS, communication, precision

_CONFIG = flags.DEFINE_string("config", None, "YAML experiment file (configs/experiments/...).")
_PARAMS_OVERRIDE = flags.DEFINE_string(
    "params_override", "", "Comma-separated section.key=value, e.g. "
    "'train.epochs=3,data.global_batch_size=128'; wins over --config.")
_CLUSTER_SPEC = flags.DEFINE_string(
    "cluster_spec", None, "Cluster spec file; with --task it sets this process's TF_CONFIG.")
_TASK = flags.DEFINE_string("task", None, "This process's task in --cluster_spec, TYPE:INDEX.")

# Flags that set one config field; given on the command line, they win over everything.
FIELD_FLAGS = {
    "slurm_tasks": ("cluster.slurm_tasks", flags.DEFINE_string(
        "slurm_tasks", None, "Inside a SLURM step without TF_CONFIG: the roles of its ranks, "
        "e.g. chief:1,worker:2,ps:1 (default: every task a worker).")),
    "slurm_base_port": ("cluster.slurm_base_port", flags.DEFINE_integer(
        "slurm_base_port", None, "Inside a SLURM step: the port of each node's first task.")),
    "strategy": ("strategy.name", flags.DEFINE_enum(
        "strategy", None, STRATEGY_NAMES, "Which tf.distribute strategy (auto: from the cluster).")),
    "cpu_replicas": ("strategy.cpu_replicas", flags.DEFINE_integer(
        "cpu_replicas", None, "Split the CPU into N logical devices (mirrored, no GPU).")),
    "cross_device_ops": ("strategy.cross_device_ops", flags.DEFINE_enum(
        "cross_device_ops", None, CROSS_DEVICE_OPS, "MirroredStrategy all-reduce.")),
    "communication": ("strategy.communication", flags.DEFINE_enum(
        "communication", None, COMMUNICATIONS, "MultiWorkerMirroredStrategy collectives.")),
    "allreduce_dtype": ("strategy.allreduce_dtype", flags.DEFINE_enum(
        "allreduce_dtype", None, ALLREDUCE_DTYPES, "The dtype gradients are summed across "
        "replicas in: bfloat16/float16 send half the bytes (Mirrored, MultiWorkerMirrored).")),
    "bytes_per_pack": ("strategy.bytes_per_pack", flags.DEFINE_integer(
        "bytes_per_pack", None, "MultiWorkerMirrored: pack gradients into all-reduces of about "
        "this many bytes (0: TensorFlow's default).")),
    "startup_timeout": ("strategy.startup_timeout_s", flags.DEFINE_float(
        "startup_timeout", None, "Seconds a multi-worker start may wait for its peers.")),
    "intra_op_threads": ("strategy.intra_op_threads", flags.DEFINE_integer(
        "intra_op_threads", None, "Threads inside one op (0: TensorFlow's default).")),
    "inter_op_threads": ("strategy.inter_op_threads", flags.DEFINE_integer(
        "inter_op_threads", None, "Ops run at once (0: TensorFlow's default).")),
    "ps_shard_min_bytes": ("strategy.ps_shard_min_bytes", flags.DEFINE_integer(
        "ps_shard_min_bytes", None, "Parameter servers: split variables of at least this many "
        "bytes over the ps tasks (0: never).")),
    "model": ("model.name", flags.DEFINE_string(
        "model", None, "Registry name (cnn, mlp) or package.module:function.")),
    "dataset": ("data.dataset", flags.DEFINE_string(
        "dataset", None, "mnist5k (embedded, offline), tfds:NAME[/CONFIG][:SPLIT] (a prepared "
        "TFDS dataset; the split may be sliced, train[:80%]) or package.module:function (your "
        "data: fn(split) returning a tf.data.Dataset of (features, label)).")),
    "eval_split": ("data.eval_split", flags.DEFINE_string(
        "eval_split", None, "The split evaluated after training (default: test, or TFDS's "
        "validation); may be sliced, e.g. train[80%:].")),
    "data_dir": ("data.data_dir", flags.DEFINE_string("data_dir", None, "TFDS data dir.")),
    "download": ("data.download", flags.DEFINE_boolean(
        "download", None, "Let TFDS download a tfds: dataset that is not prepared.")),
    "global_batch_size": ("data.global_batch_size", flags.DEFINE_integer(
        "global_batch_size", None, "Examples per step over all replicas (must divide by the "
        "replica count: each replica gets global / replicas).")),
    "epochs": ("train.epochs", flags.DEFINE_integer("epochs", None, "Epochs to train.")),
    "steps_per_epoch": ("train.steps_per_epoch", flags.DEFINE_integer(
        "steps_per_epoch", None, "Steps per epoch (default: one pass over the train split).")),
    "learning_rate": ("train.learning_rate", flags.DEFINE_float(
        "learning_rate", None, "Adam learning rate for uncompiled models.")),
    "seed": ("train.seed", flags.DEFINE_integer(
        "seed", None, "Seeds Python, NumPy, TensorFlow and the input shuffle.")),
    "deterministic": ("train.deterministic", flags.DEFINE_boolean(
        "deterministic", None, "Bit-identical runs: TensorFlow's op determinism and "
        "deterministic input (needs a seed; not under parameter servers).")),
    "model_dir": ("train.model_dir", flags.DEFINE_string(
        "model_dir", None, "Checkpoints, backups, TensorBoard, export, metrics.json (any "
        "TensorFlow file system, e.g. gs://; shared by every task of a multi-worker job).")),
    "init_checkpoint": ("train.init_checkpoint", flags.DEFINE_string(
        "init_checkpoint", None, "Start from these weights: a checkpoint (DIR/checkpoints/"
        "ckpt-0004) or a tfdist model dir (its final checkpoint). Only for a new --model_dir: "
        "a run to resume or continue starts from its own state.")),
    "loop": ("train.loop", flags.DEFINE_enum(
        "loop", None, LOOPS, "fit (Keras model.fit) or custom (tfdist's custom training loop).")),
    "mixed_precision": ("train.mixed_precision", flags.DEFINE_enum(
        "mixed_precision", None, precision.POLICIES, "auto: bfloat16 for built-in models on CPUs "
        "with native bfloat16; float16: GPUs, fit only.")),
    "steps_per_loop": ("train.steps_per_loop", flags.DEFINE_integer(
        "steps_per_loop", None, "Deprecated: --steps_per_execution.")),
    "backup_every_steps": ("train.backup_every_steps", flags.DEFINE_integer(
        "backup_every_steps", None, "The least interval between backups of the training state, in "
        "steps (0: each epoch); a backup also when training ends.")),
    "save_share": ("train.save_share", flags.DEFINE_float(
        "save_share", None, "Share of training time saving may cost, half for backups and "
        "half for epoch checkpoints: their intervals widen until it does (0: backups exactly "
        "every --backup_every_steps, a checkpoint after every epoch).")),
    "sparse_updates": ("train.sparse_updates", flags.DEFINE_enum(
        "sparse_updates", None, SPARSE_UPDATES, "Embedding tables: rows (a step reads and "
        "writes only its batch's rows; Adam and momentum lazily), dense (Keras's own rules), "
        "auto (rows under parameter servers).")),
    "steps_per_execution": ("train.steps_per_execution", flags.DEFINE_integer(
        "steps_per_execution", None, "Train steps per tf.function call, in both loops (a "
        "model you compiled keeps its own in fit).")),
}


def experiment_config() -> config_lib.ExperimentConfig:
  """Defaults < --config < --params_override < flags given on the command line."""
  layers = []
  if _CONFIG.value:
    layers.append(config_lib.read_yaml(_CONFIG.value))
  layers.append(config_lib.parse_overrides(_PARAMS_OVERRIDE.value))
  given: dict[str, dict] = {}
  for flag_name, (path, holder) in FIELD_FLAGS.items():
    if flags.FLAGS[flag_name].present:
      section, key = path.split(".")
      given.setdefault(section, {})[key] = holder.value
  layers.append(given)
  return config_lib.build(*layers)


def cluster_from_flags(options: ClusterOptions) -> Optional[TaskConfig]:
  """This process's cluster: --cluster_spec + --task (written to TF_CONFIG), else whatever
  `tfdist.cluster.environments.detect` finds (TF_CONFIG, a Kubernetes pod, a SLURM step).
  Detected once, here; the Job takes the result.
  """
  if _TASK.value and not _CLUSTER_SPEC.value:
    raise app.UsageError("--task needs --cluster_spec (or set TF_CONFIG instead)")
  if _CLUSTER_SPEC.value:
    if not _TASK.value:
      raise app.UsageError("--cluster_spec needs --task=TYPE:INDEX, e.g. --task=worker:0")
    spec = load_spec_file(_CLUSTER_SPEC.value)
    os.environ[tf_config.ENV_VAR] = tf_config.emit(spec, TaskId.parse(_TASK.value))
  return environments.detect(options)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
  config = experiment_config()
  task_config = cluster_from_flags(config.cluster)

  # TensorFlow is imported only now, so a bad flag or cluster fails in well under a second;
  # every check runs (building and preparing the Job) before anything is logged or written.
  with native_stderr_to_log():
    from tfdist.job import Job  # pylint: disable=import-outside-toplevel
    job = Job(config, task_config=task_config)
  verbose = flags.FLAGS["verbosity"].present
  if not verbose:
    logging.set_verbosity(logging.WARNING)
  job.prepare()  # the rendezvous, then the data's first read: still quiet
  if not verbose:
    logging.set_verbosity(logging.INFO)
  metrics = job.run()
  if metrics is not None and job.is_chief:
    print(summary_line(config, metrics), flush=True)
  if job.choice.name == PARAMETER_SERVER:
    end_coordinator_process()
  return EXIT_OK


def end_coordinator_process() -> NoReturn:
  """Ends a parameter-server chief's process once its outputs are written: Python's exit
  handlers run, TensorFlow's C++ teardown does not. (TensorFlow's ClusterCoordinator has no
  clean shutdown: after a worker was lost, its threads could abort the teardown, "terminate
  called after throwing", and turn a finished job into exit status -6.)"""
  atexit._run_exitfuncs()  # pylint: disable=protected-access  (the user's, absl's flush)
  logging.flush()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(EXIT_OK)  # pylint: disable=protected-access


def summary_line(config: config_lib.ExperimentConfig, metrics: dict) -> str:
  def shown(key: str, spec: str) -> str:  # None after a run resumed with nothing left to train
    return "n/a" if metrics.get(key) is None else format(metrics[key], spec)

  evaluation = [("eval_loss", metrics.get("eval_loss"))] + [
      (f"eval_{name}", value) for name, value in (metrics.get("eval_metrics") or {}).items()]
  figures = "".join(f"{name} {value:.4f}, " for name, value in evaluation if value is not None)
  return (f"tfdist: trained {config.model.name} on {metrics['dataset']} with {metrics['strategy']} "
          f"({metrics['num_workers']} worker(s), {metrics['num_replicas']} replica(s)): "
          f"{metrics['epochs_completed']} epochs, train_loss {shown('train_loss', '.4f')}, "
          f"{figures}{shown('examples_per_sec', ',.0f')} examples/s, "
          f"{communication.describe(metrics.get('communication'))}, "
          f"{metrics['wall_seconds']:.1f} s; "
          f"metrics in {os.path.join(metrics['model_dir'], 'metrics.json')}")


def run(argv: Sequence[str]) -> None:
  run_command("train", main, argv)
