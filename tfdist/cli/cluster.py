"""`tfdist cluster validate PATH`, `tfdist cluster tf-config PATH --task=TYPE:INDEX`, and
`tfdist cluster k8s PATH --image=IMAGE --model_dir=DIR [...] -- tfdist train ...`."""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from tfdist.cli.app import EXIT_OK, run_command
from tfdist.cluster import TaskId, load_spec_file, tf_config
from tfdist.launch import kubernetes_manifests as kubernetes
from tfdist.strategy import StrategyOptions, choose

_TASK = flags.DEFINE_string("task", None, "tf-config: the task, TYPE:INDEX (e.g. worker:1).")
# k8s: the manifest's options (see tfdist.launch.kubernetes_manifests.ManifestOptions).
_IMAGE = flags.DEFINE_string("image", None, "k8s: container image with tfdist installed.")
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None, "k8s: storage every pod shares: gs://... (any TensorFlow file system), or "
    "a path under --volume_mount on --volume_claim.")
_NAME = flags.DEFINE_string("name", "tfdist", "k8s: the job's name (Service, Jobs, DNS names).")
_NAMESPACE = flags.DEFINE_string("namespace", "default", "k8s: the namespace.")
_VOLUME_CLAIM = flags.DEFINE_string(
    "volume_claim", "", "k8s: a ReadWriteMany PersistentVolumeClaim to mount in every pod.")
_VOLUME_MOUNT = flags.DEFINE_string("volume_mount", "/shared", "k8s: where the claim is mounted.")
_PORT = flags.DEFINE_integer("port", 2222, "k8s: the first task's gRPC port (one per task).")
_RESTARTS = flags.DEFINE_integer("restarts", 3, "k8s: new pods per Job for failed ones.")
_CPU = flags.DEFINE_string("cpu", "", "k8s: CPU per pod, e.g. 4 ('' asks none).")
_MEMORY = flags.DEFINE_string("memory", "", "k8s: memory per pod, e.g. 16Gi.")
_GPUS = flags.DEFINE_integer("gpus", 0, "k8s: GPUs per pod (nvidia.com/gpu).")

_USAGE = ("expected `tfdist cluster validate PATH`, `tfdist cluster tf-config PATH "
          "--task=TYPE:INDEX` or `tfdist cluster k8s PATH --image=IMAGE --model_dir=DIR -- "
          "tfdist train ...`")


def main(argv: Sequence[str]) -> int:
  if len(argv) < 3 or argv[1] not in ("validate", "tf-config", "k8s"):
    raise app.UsageError(_USAGE)
  action, path, rest = argv[1], argv[2], list(argv[3:])
  if rest and action != "k8s":
    raise app.UsageError(_USAGE)
  spec = load_spec_file(path)
  if action == "validate":
    tasks = list(spec.tasks())
    # The choice a trainer would make on this cluster (auto, no GPUs assumed).
    choice = choose(StrategyOptions(), tf_config.TaskConfig(spec, tasks[0]), num_gpus=0)
    print(f"{path}: valid; {len(tasks)} task(s): {', '.join(map(str, tasks))}; "
          f"--strategy=auto picks {choice.class_name}")
    return EXIT_OK
  if action == "k8s":
    if not _IMAGE.value:
      raise app.UsageError("--image: required, the container image with tfdist installed")
    options = kubernetes.ManifestOptions(
        image=_IMAGE.value, model_dir=_MODEL_DIR.value or "", command=rest or ("tfdist", "train"),
        name=_NAME.value, namespace=_NAMESPACE.value, volume_claim=_VOLUME_CLAIM.value,
        volume_mount=_VOLUME_MOUNT.value, base_port=_PORT.value, restarts=_RESTARTS.value,
        cpu=_CPU.value, memory=_MEMORY.value, gpus=_GPUS.value)
    print(kubernetes.render(kubernetes.manifests(spec, options), header=(
        f"# tfdist cluster k8s {path}: {', '.join(map(str, spec.tasks()))}\n"
        "# kubectl apply -f this.yaml   (gRPC is unauthenticated: see the NetworkPolicy)")), end="")
    return EXIT_OK
  if not _TASK.value:
    raise app.UsageError("--task: required, TYPE:INDEX such as worker:1")
  print(tf_config.emit(spec, TaskId.parse(_TASK.value)))
  return EXIT_OK


def run(argv: Sequence[str]) -> None:
  run_command("cluster", main, argv)
