"""`tfdist train`: the same command on a laptop and on every task of a cluster."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

from absl import app, flags, logging

import tfdist

from tfdist.cli import config as config_lib
from tfdist.cli.errors import EXIT_OK, native_stderr_to_log, run_command
from tfdist.cluster import (ClusterOptions, TaskConfig, TaskId, kubernetes, load_spec_file, slurm,
                            tf_config)
from tfdist.data import per_replica_batch_size
from tfdist.models import BUILTIN_MODELS
from tfdist.strategy import ROLE_EVALUATOR, ROLE_SERVER, STRATEGY_NAMES
from tfdist.strategy.options import COMMUNICATIONS, CROSS_DEVICE_OPS
from tfdist.strategy.startup import StartupWatchdog
from tfdist.train import LOOPS, ModelDir, precision
from tfdist.train.outputs import PARAMS

_CONFIG = flags.DEFINE_string("config", None, "YAML experiment file (configs/experiments/...).")
_PARAMS_OVERRIDE = flags.DEFINE_string(
    "params_override", "", "Comma-separated section.key=value, e.g. "
    "'train.epochs=3,data.global_batch_size=128'; wins over --config.")
_CLUSTER_SPEC = flags.DEFINE_string(
    "cluster_spec", None, "Cluster spec file; with --task it sets this process's TF_CONFIG.")
_TASK = flags.DEFINE_string("task", None, "This process's task in --cluster_spec, TYPE:INDEX.")
_INTRA_OP_THREADS = flags.DEFINE_integer(
    "intra_op_threads", 0, "Threads inside one op (0: TensorFlow's default).", lower_bound=0)
_INTER_OP_THREADS = flags.DEFINE_integer(
    "inter_op_threads", 0, "Ops run at once (0: TensorFlow's default).", lower_bound=0)

# Flags that set one config field; given on the command line, they win over everything.
_FIELD_FLAGS = {
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
    "startup_timeout": ("strategy.startup_timeout_s", flags.DEFINE_float(
        "startup_timeout", None, "Seconds a multi-worker start may wait for its peers.")),
    "ps_shard_min_bytes": ("strategy.ps_shard_min_bytes", flags.DEFINE_integer(
        "ps_shard_min_bytes", None, "Parameter servers: split variables of at least this many "
        "bytes over the ps tasks (0: never).")),
    "model": ("model.name", flags.DEFINE_string(
        "model", None, "Registry name (cnn, mlp) or package.module:function.")),
    "dataset": ("data.dataset", flags.DEFINE_string(
        "dataset", None, "mnist5k (embedded, offline) or tfds:NAME[:SPLIT].")),
    "data_dir": ("data.data_dir", flags.DEFINE_string("data_dir", None, "TFDS data dir.")),
    "download": ("data.download", flags.DEFINE_boolean(
        "download", None, "Let TFDS download a tfds: dataset that is not prepared.")),
    "global_batch_size": ("data.global_batch_size", flags.DEFINE_integer(
        "global_batch_size", None, "Examples per step over all replicas.")),
    "epochs": ("train.epochs", flags.DEFINE_integer("epochs", None, "Epochs to train.")),
    "steps_per_epoch": ("train.steps_per_epoch", flags.DEFINE_integer(
        "steps_per_epoch", None, "Steps per epoch (default: one pass over the train split).")),
    "learning_rate": ("train.learning_rate", flags.DEFINE_float(
        "learning_rate", None, "Adam learning rate for uncompiled models.")),
    "seed": ("train.seed", flags.DEFINE_integer("seed", None, "Random seed.")),
    "model_dir": ("train.model_dir", flags.DEFINE_string(
        "model_dir", None, "Checkpoints, backups, TensorBoard, export, metrics.json.")),
    "loop": ("train.loop", flags.DEFINE_enum(
        "loop", None, LOOPS, "fit (Keras model.fit) or custom (tfdist's custom training loop).")),
    "mixed_precision": ("train.mixed_precision", flags.DEFINE_enum(
        "mixed_precision", None, precision.POLICIES, "auto: bfloat16 for built-in models on CPUs "
        "with native bfloat16; float16: GPUs, fit only.")),
    "steps_per_loop": ("train.steps_per_loop", flags.DEFINE_integer(
        "steps_per_loop", None, "Custom loop: train steps per tf.function call.")),
    "backup_every_steps": ("train.backup_every_steps", flags.DEFINE_integer(
        "backup_every_steps", None, "Back up training state every N steps (0: each epoch).")),
    "steps_per_execution": ("train.steps_per_execution", flags.DEFINE_integer(
        "steps_per_execution", None, "Train steps per tf.function call in fit.")),
}


def experiment_config() -> config_lib.ExperimentConfig:
  """Defaults < --config < --params_override < flags given on the command line."""
  layers = []
  if _CONFIG.value:
    layers.append(config_lib.read_yaml(_CONFIG.value))
  layers.append(config_lib.parse_overrides(_PARAMS_OVERRIDE.value))
  given: dict[str, dict] = {}
  for flag_name, (path, holder) in _FIELD_FLAGS.items():
    if flags.FLAGS[flag_name].present:
      section, key = path.split(".")
      given.setdefault(section, {})[key] = holder.value
  layers.append(given)
  return config_lib.build(*layers)


def cluster_from_flags(options: ClusterOptions) -> Optional[TaskConfig]:
  """This process's cluster: --cluster_spec + --task, else TF_CONFIG, else a Kubernetes pod
  of a tfdist manifest, else a SLURM step, else None. Whatever the source, TF_CONFIG ends up in
  the environment (TensorFlow reads it).
  """
  if _TASK.value and not _CLUSTER_SPEC.value:
    raise app.UsageError("--task needs --cluster_spec (or set TF_CONFIG instead)")
  if _CLUSTER_SPEC.value:
    if not _TASK.value:
      raise app.UsageError("--cluster_spec needs --task=TYPE:INDEX, e.g. --task=worker:0")
    spec = load_spec_file(_CLUSTER_SPEC.value)
    os.environ[tf_config.ENV_VAR] = tf_config.emit(spec, TaskId.parse(_TASK.value))
  config = tf_config.from_environment()
  if config is None and kubernetes.in_pod(os.environ):
    config = kubernetes.task_config(os.environ)
    os.environ[tf_config.ENV_VAR] = tf_config.emit(config.cluster, config.task)
  elif config is None and slurm.in_step(os.environ):
    config = slurm.task_config(os.environ, options.slurm_tasks, options.slurm_base_port)
    os.environ[tf_config.ENV_VAR] = tf_config.emit(config.cluster, config.task)
    # One run id for the whole step (a requeued job resumes the same run).
    os.environ.setdefault(tf_config.RUN_ID_VAR, "slurm-{}.{}".format(
        os.environ.get("SLURM_JOB_ID", "0"), os.environ.get("SLURM_STEP_ID", "0")))
    gpus = slurm.gpus_for_task(os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ)
    if gpus is not None:  # Before TensorFlow starts: each task sees only its own GPUs.
      os.environ["CUDA_VISIBLE_DEVICES"] = gpus
  return config


def check_model_dir(path: str) -> None:
  """A local model dir must be a directory or not exist yet (remote ones are checked by TF)."""
  if "://" in path:
    return
  existing = path
  while existing and not os.path.exists(existing):
    existing = os.path.dirname(existing.rstrip(os.sep)) if existing != os.sep else ""
  if existing == path and not os.path.isdir(path):
    raise app.UsageError(f"--model_dir: {path} exists and is not a directory")
  if existing and (not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK)):
    raise app.UsageError(f"--model_dir: cannot create or write {path} ({existing} is not a "
                         "writable directory)")


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {' '.join(argv[1:])!r}; flags look like --name=value")
  from tfdist.cli.main import PROCESS_START  # pylint: disable=import-outside-toplevel
  config = experiment_config()
  task_config = cluster_from_flags(config.cluster)
  check_model_dir(config.train.model_dir)

  # TensorFlow is imported only now, so a bad flag fails in well under a second; every
  # check that needs it runs before anything is logged or written.
  with native_stderr_to_log():
    from tfdist.data import load_source  # pylint: disable=import-outside-toplevel
    from tfdist.models import resolve  # pylint: disable=import-outside-toplevel
    from tfdist.strategy import devices, factory  # pylint: disable=import-outside-toplevel
    from tfdist.strategy import parameter_server  # pylint: disable=import-outside-toplevel
    from tfdist.train import (  # pylint: disable=import-outside-toplevel
        run_sidecar_evaluator, train_with_custom_loop, train_with_fit)
    choice = factory.decide(config.strategy, task_config)
    devices.configure_host(cpu_replicas=config.strategy.cpu_replicas,
                           intra_op_threads=_INTRA_OP_THREADS.value,
                           inter_op_threads=_INTER_OP_THREADS.value)
    if choice.role != ROLE_SERVER:  # Servers run no Python model or input.
      model_fn = resolve(config.model.name)
      source = load_source(config.data)
      per_replica_batch_size(config.data.global_batch_size,
                             factory.expected_replicas(choice, config.strategy, task_config))

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.INFO)
  if choice.role == ROLE_SERVER:
    logging.info(choice.log_line())
    # Serves until the chief records the run finished, so that job systems see every task end.
    model_dir, run_id = ModelDir(config.train.model_dir, is_chief=False), tf_config.run_id()
    parameter_server.serve(task_config, stop_when=lambda: model_dir.run_finished(run_id))
    logging.flush()
    os._exit(EXIT_OK)  # pylint: disable=protected-access  (TF's server has no clean shutdown)
  if choice.role == ROLE_EVALUATOR:
    logging.info(choice.log_line())
    run_sidecar_evaluator(source=source, model_fn=model_fn, options=config.train)
    return EXIT_OK

  if task_config is not None and len(list(task_config.cluster.tasks())) > 1:
    # Creating a multi-worker strategy is the rendezvous: it returns once every peer is up.
    # The deadline covers only that; building, restoring and tracing may take what they take.
    with StartupWatchdog(task_config, config.strategy.startup_timeout_s):
      strategy = factory.make_strategy(config.strategy, task_config, choice)
  else:
    strategy = factory.make_strategy(config.strategy, task_config, choice)
  is_chief = task_config is None or task_config.is_chief
  policy, reason = precision.decide(
      config.train.mixed_precision, builtin_model=config.model.name in BUILTIN_MODELS,
      gpu=devices.num_gpus() > 0, native_bfloat16=precision.cpu_has_native_bfloat16())
  logging.info("Mixed precision: %s (%s)", policy, reason)
  config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                 mixed_precision=policy))
  if is_chief:  # The resolved config: `--config=MODEL_DIR/params.yaml` runs it again.
    ModelDir(config.train.model_dir).write_text(PARAMS, config_lib.to_yaml(
        config, header=f"{versions_line()}\n# Run again: tfdist train --config=<this file>"))
  train = train_with_custom_loop if config.train.loop == "custom" else train_with_fit
  _, metrics = train(
      strategy=strategy, source=source, model_fn=model_fn, options=config.train,
      global_batch_size=config.data.global_batch_size, is_chief=is_chief,
      num_workers=task_config.cluster.num_compute_workers if task_config else 1,
      started=PROCESS_START)
  if is_chief:
    print(summary_line(config, metrics), flush=True)
  return EXIT_OK


def versions_line() -> str:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  return (f"# tfdist {tfdist.__version__}, TensorFlow {tf.__version__}, "
          f"Keras (tf_keras) {tf_keras.__version__}")


def summary_line(config: config_lib.ExperimentConfig, metrics: dict) -> str:
  def shown(key: str, spec: str) -> str:  # None after a run resumed with nothing left to train
    return "n/a" if metrics[key] is None else format(metrics[key], spec)

  return (f"tfdist: trained {config.model.name} on {metrics['dataset']} with {metrics['strategy']} "
          f"({metrics['num_workers']} worker(s), {metrics['num_replicas']} replica(s)): "
          f"{metrics['epochs_completed']} epochs, train_loss {shown('train_loss', '.4f')}, "
          f"eval_accuracy {shown('eval_accuracy', '.4f')}, "
          f"{shown('examples_per_sec', ',.0f')} examples/s, {metrics['wall_seconds']:.1f} s; "
          f"metrics in {os.path.join(metrics['model_dir'], 'metrics.json')}")


def run(argv: Sequence[str]) -> None:
  run_command("train", main, argv)
