"""Kubernetes manifests for a cluster spec: plain Kubernetes (no operator) runs the job.

One headless Service gives every pod a stable DNS name; one Indexed Job per task
type (chief, worker, ps, evaluator) runs its pods, pod `i` of Job `<name>-worker`
answering at `<name>-worker-i.<name>`; each pod computes its TF_CONFIG at start
from the cluster, its task type and `JOB_COMPLETION_INDEX` (tfdist.cluster.kubernetes_pod).
A NetworkPolicy admits the gRPC ports only from pods of the same job.

Failures: a failed pod comes back with the same index (restartPolicy Never, the Job
makes a new pod), up to `restarts` times per Job; a user error (status 2) fails the
Job at once; preemption (status 75, or an eviction) does not count. Parameter-server
workers and ps tasks exit 0 once the chief records the run finished, and the
success policy of their Jobs then ends what is left of them.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import re
from typing import Optional, Sequence

import yaml

from tfdist.cluster import (CHIEF, EVALUATOR, EXIT_PREEMPTED, EXIT_USER_ERROR, PS, WORKER,
                            ClusterSpec, ClusterSpecError, TaskId, tf_config)
from tfdist.cluster import kubernetes_pod as pod_env

CONTAINER = "tfdist"
JOB_LABEL = "tfdist.dev/job"
TASK_TYPE_LABEL = "tfdist.dev/task-type"
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 40  # `<name>-evaluator-<index>` must stay a 63-character DNS label
_JOB_TYPES = (CHIEF, WORKER, PS, EVALUATOR)
# Flags the manifest sets for the pods; the command must leave them out.
_MANIFEST_FLAGS = ("--model_dir", "--cluster_spec", "--task")


class ManifestError(ClusterSpecError):
  """A manifest option is invalid; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class ManifestOptions:
  """Attributes:
    image: the container image that has tfdist (and the user's code) installed.
    model_dir: where every pod writes; `gs://...` (any TensorFlow file system), or a path
      under `volume_mount` on the ReadWriteMany claim `volume_claim`. Never pod-local.
    command: what each pod runs, e.g. ["tfdist", "train", "--epochs=10"] (no --model_dir).
    name: the job's name: the Service, the Jobs' prefix and the pods' DNS names.
    namespace: where it all goes.
    base_port: the first task's gRPC port; each task has its own (chief, workers, ps order).
    restarts: new pods a Job may make for failed ones (its backoffLimit).
    cpu, memory, gpus: each pod's resources ('' / 0: none asked).
  """

  image: str
  model_dir: str
  command: Sequence[str] = ("tfdist", "train")
  name: str = "tfdist"
  namespace: str = "default"
  volume_claim: str = ""
  volume_mount: str = "/shared"
  base_port: int = 2222
  restarts: int = 3
  cpu: str = ""
  memory: str = ""
  gpus: int = 0
  termination_grace_s: int = 120

  def __post_init__(self):
    if not _NAME.match(self.name) or len(self.name) > _MAX_NAME:
      raise ManifestError(f"--name: {self.name!r} must be a DNS label of at most {_MAX_NAME} "
                          "characters (a-z, 0-9, '-', starting with a letter)")
    if not _NAMESPACE.match(self.namespace) or len(self.namespace) > 63:
      raise ManifestError(f"--namespace: {self.namespace!r} is not a Kubernetes namespace name")
    if not self.image or any(c.isspace() for c in self.image):
      raise ManifestError(f"--image: {self.image!r} must name a container image, e.g. "
                          "registry.example.com/team/tfdist:1.0")
    if not self.model_dir:
      raise ManifestError("--model_dir: required: storage every pod shares (gs://... or a path "
                          "on --volume_claim)")
    if "://" not in self.model_dir:
      mount = self.volume_mount.rstrip("/")
      if not self.volume_claim:
        raise ManifestError(f"--model_dir: {self.model_dir!r} would be local to each pod; give "
                            "a shared URL (gs://...) or --volume_claim (a ReadWriteMany claim)")
      if not posixpath.isabs(self.model_dir) or not (self.model_dir + "/").startswith(mount + "/"):
        raise ManifestError(f"--model_dir: {self.model_dir!r} must be under --volume_mount "
                            f"({self.volume_mount}), where --volume_claim is mounted")
    if not self.command:
      raise ManifestError("no command for the pods; put it after --, e.g. -- tfdist train")
    given = [a.split("=")[0] for a in self.command if a.split("=")[0] in _MANIFEST_FLAGS]
    if given:
      raise ManifestError(f"{given[0]}: set by the manifest (give --model_dir to tfdist cluster "
                          "k8s); leave it out of the pods' command")
    if not 1024 <= self.base_port <= 60000:
      raise ManifestError(f"--port: {self.base_port} must be from 1024 to 60000")
    if self.restarts < 0 or self.gpus < 0:
      raise ManifestError("--restarts and --gpus must be >= 0")


def pod_address(options: ManifestOptions, task: TaskId, port: int) -> str:
  """The stable DNS name and port of a task's pod, e.g. `mnist-worker-1.mnist:2223`."""
  return f"{options.name}-{task.type}-{task.index}.{options.name}:{port}"


def cluster_for_pods(spec: ClusterSpec, options: ManifestOptions) -> dict:
  """The spec's task counts at the pods' addresses, as TFDIST_K8S_CLUSTER carries it."""
  jobs: dict[str, list[str]] = {}
  training = [t for t in spec.tasks() if t.type != EVALUATOR]
  for rank, task in enumerate(training):
    jobs.setdefault(task.type, []).append(pod_address(options, task, options.base_port + rank))
  return {"cluster": jobs, "evaluator": spec.evaluators}


def manifests(spec: ClusterSpec, options: ManifestOptions) -> list[dict]:
  """The Service, NetworkPolicy and Jobs that run `spec` on Kubernetes."""
  cluster = cluster_for_pods(spec, options)
  num_training = sum(len(a) for a in cluster["cluster"].values())
  labels = {"app.kubernetes.io/name": "tfdist", "app.kubernetes.io/instance": options.name,
            JOB_LABEL: options.name}

  def meta(name: str, extra: Optional[dict] = None) -> dict:
    return {"name": name, "namespace": options.namespace, "labels": {**labels, **(extra or {})}}

  docs = [
      {"apiVersion": "v1", "kind": "Service", "metadata": meta(options.name),
       "spec": {"clusterIP": "None", "selector": {JOB_LABEL: options.name},
                # Pods must find each other while they start, before any is "ready".
                "publishNotReadyAddresses": True}},
      {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
       "metadata": meta(f"{options.name}-grpc"),
       "spec": {"podSelector": {"matchLabels": {JOB_LABEL: options.name}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {JOB_LABEL: options.name}}}],
                             "ports": [{"protocol": "TCP", "port": options.base_port,
                                        "endPort": options.base_port + num_training - 1}]}]}},
  ]
  counts = {t: len(cluster["cluster"].get(t, ())) for t in (CHIEF, WORKER, PS)}
  counts[EVALUATOR] = spec.evaluators
  rank = 0
  for task_type in _JOB_TYPES:
    if counts[task_type]:
      ports = (list(range(options.base_port + rank, options.base_port + rank + counts[task_type]))
               if task_type != EVALUATOR else [])
      rank += len(ports)
      docs.append(_job(spec, options, task_type, counts[task_type], ports, cluster, meta))
  return docs


def _job(spec: ClusterSpec, options: ManifestOptions, task_type: str, count: int,
         ports: list[int], cluster: dict, meta) -> dict:
  name = f"{options.name}-{task_type}"
  task_labels = {TASK_TYPE_LABEL: task_type}
  env = [
      {"name": pod_env.CLUSTER_VAR, "value": json.dumps(cluster, sort_keys=True)},
      {"name": pod_env.TASK_TYPE_VAR, "value": task_type},
      {"name": pod_env.POD_NAME_VAR, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
      {"name": tf_config.RUN_ID_VAR, "value": f"k8s-{options.namespace}-{options.name}"},
      {"name": "PYTHONUNBUFFERED", "value": "1"},
  ]
  container: dict = {
      "name": CONTAINER, "image": options.image,
      "command": [*options.command, f"--model_dir={options.model_dir}"], "env": env,
  }
  if ports:  # Each pod listens on one of these: its index picks it (TF_CONFIG says which).
    container["ports"] = [{"containerPort": p, "protocol": "TCP"} for p in ports]
  resources = {k: v for k, v in (("cpu", options.cpu), ("memory", options.memory)) if v}
  if options.gpus:
    resources["nvidia.com/gpu"] = options.gpus
  if resources:
    container["resources"] = {"requests": dict(resources), "limits": dict(resources)}
  pod_spec: dict = {
      "subdomain": options.name, "restartPolicy": "Never",
      # Time for a SIGTERM'd task to save at the next step (it exits 75 once saved).
      "terminationGracePeriodSeconds": options.termination_grace_s,
      "containers": [container],
  }
  if options.volume_claim:
    container["volumeMounts"] = [{"name": "model-dir", "mountPath": options.volume_mount}]
    pod_spec["volumes"] = [{"name": "model-dir",
                            "persistentVolumeClaim": {"claimName": options.volume_claim}}]
  job_spec: dict = {
      "completionMode": "Indexed", "completions": count, "parallelism": count,
      "backoffLimit": options.restarts,
      "podFailurePolicy": {"rules": [
          {"action": "FailJob",  # a user error: a new pod would fail the same way
           "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                           "values": [EXIT_USER_ERROR]}},
          {"action": "Ignore",  # preempted after saving: a new pod resumes, not a failure
           "onExitCodes": {"containerName": CONTAINER, "operator": "In",
                           "values": [EXIT_PREEMPTED]}},
          # `status` is optional from Kubernetes 1.35 on, required before.
          {"action": "Ignore",
           "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
      ]},
      "template": {"metadata": {"labels": {**meta(name)["labels"], **task_labels}},
                   "spec": pod_spec},
  }
  if spec.num_ps and task_type in (WORKER, PS):
    # Servers exit 0 once the run finished; the first that does completes its Job.
    job_spec["successPolicy"] = {"rules": [{"succeededCount": 1}]}
  return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(name, task_labels),
          "spec": job_spec}


def render(docs: list[dict], header: Optional[str] = None) -> str:
  """The manifests as one YAML stream (`kubectl apply -f -`)."""
  text = yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)
  return (header + "\n" if header else "") + text
