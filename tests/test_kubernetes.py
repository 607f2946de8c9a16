"""Kubernetes: the manifests (validated offline against the API schemas), the TF_CONFIG each pod
computes, and local runs of the pods with exactly the manifests' commands and environments."""

import json
import os
import re
import signal

import pytest
import yaml

from tfdist.cluster import ClusterSpecError, TaskId, load_spec_file
from tfdist.cluster import kubernetes_pod as pod_env
from tfdist.launch import kubernetes_manifests as kubernetes
from tests.cluster_scripts import read_counts
from tests.helpers import k8s_sim
from tests.helpers import REPO, THREAD_FLAGS, cli_env, read_metrics, run_tfdist

SPECS = os.path.join(REPO, "configs", "clusters")
# Every Kubernetes release still in support (each validates the manifests with its own schemas).
KUBERNETES_VERSIONS = ("1.32.0", "1.33.0", "1.34.0", "1.35.0")


def manifests(spec_name, **options):
  options = {"image": "registry.example.com/tfdist:0.1", "model_dir": "gs://bucket/run",
             "name": "mnist", **options}
  return kubernetes.manifests(load_spec_file(os.path.join(SPECS, spec_name)),
                              kubernetes.ManifestOptions(**options))


def kinds(docs):
  return [(d["kind"], d["metadata"]["name"]) for d in docs]


@pytest.mark.parametrize("spec_name, options", [
    ("local-2workers.yaml", {}),
    ("local-ps.yaml", {"cpu": "2", "memory": "4Gi", "gpus": 1}),
    ("local-ps-eval.yaml", {"model_dir": "/shared/runs/a", "volume_claim": "runs",
                            "namespace": "team-a"}),
])
def test_manifests_validate_against_the_kubernetes_schemas(spec_name, options):
  import kubernetes_validate
  docs = manifests(spec_name, **options)
  for version in KUBERNETES_VERSIONS:
    for doc in docs:
      kubernetes_validate.validate(doc, version, strict=True)
  # What `tfdist cluster k8s` prints is the same, as one YAML stream.
  args = [f"--{k}={v}" for k, v in options.items()]
  result = run_tfdist("cluster", "k8s", os.path.join(SPECS, spec_name),
                      "--image=registry.example.com/tfdist:0.1", "--name=mnist",
                      *([] if "model_dir" in options else ["--model_dir=gs://bucket/run"]), *args,
                      "--", "tfdist", "train")
  assert result.returncode == 0, result.stderr
  assert list(yaml.safe_load_all(result.stdout)) == docs


def test_the_pieces_of_a_parameter_server_job():
  docs = manifests("local-ps-eval.yaml")
  assert kinds(docs) == [("Service", "mnist"), ("NetworkPolicy", "mnist-grpc"),
                         ("Job", "mnist-chief"), ("Job", "mnist-worker"), ("Job", "mnist-ps"),
                         ("Job", "mnist-evaluator")]
  service, policy, chief, worker, ps, evaluator = docs
  assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
  # The fence: only pods of this job reach the gRPC ports (2222..2225, one per training task).
  rule, = policy["spec"]["ingress"]
  assert policy["spec"]["podSelector"] == {"matchLabels": {"tfdist.dev/job": "mnist"}}
  assert rule["from"] == [{"podSelector": {"matchLabels": {"tfdist.dev/job": "mnist"}}}]
  assert rule["ports"] == [{"protocol": "TCP", "port": 2222, "endPort": 2225}]
  for job, count in ((chief, 1), (worker, 2), (ps, 1), (evaluator, 1)):
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == count
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "mnist" and pod["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"]["tfdist.dev/job"] == "mnist"
    codes = {r["action"]: r.get("onExitCodes", {}).get("values") for r in
             spec["podFailurePolicy"]["rules"] if "onExitCodes" in r}
    assert codes == {"FailJob": [2], "Ignore": [75]}
    assert pod["containers"][0]["command"] == ["tfdist", "train", "--model_dir=gs://bucket/run"]
  # Servers exit 0 when the run finished; their Jobs' success rule ends the rest.
  assert worker["spec"]["successPolicy"] == ps["spec"]["successPolicy"] == {
      "rules": [{"succeededCount": 1}]}
  assert "successPolicy" not in chief["spec"] and "successPolicy" not in evaluator["spec"]
  assert "successPolicy" not in manifests("local-2workers.yaml")[2]["spec"]  # MWMS: all finish


def test_each_pod_computes_its_tf_config():
  docs = manifests("local-ps-eval.yaml")
  configs = {}
  for pod, _, env in k8s_sim.pods(docs):
    config = pod_env.task_config(env)
    configs[str(config.task)] = config
    assert config.origin == f"Kubernetes pod {pod}"
  assert sorted(configs) == ["chief:0", "evaluator:0", "ps:0", "worker:0", "worker:1"]
  assert configs["worker:1"].cluster.as_dict() == {
      "chief": ["mnist-chief-0.mnist:2222"],
      "worker": ["mnist-worker-0.mnist:2223", "mnist-worker-1.mnist:2224"],
      "ps": ["mnist-ps-0.mnist:2225"]}
  assert configs["evaluator:0"].cluster.evaluators == 1


@pytest.mark.parametrize("env, message", [
    ({pod_env.CLUSTER_VAR: "{", pod_env.TASK_TYPE_VAR: "worker", pod_env.INDEX_VAR: "0"},
     "TFDIST_K8S_CLUSTER: not valid JSON"),
    ({pod_env.CLUSTER_VAR: '{"cluster": {"worker": ["w-0.s:1"]}}', pod_env.TASK_TYPE_VAR: "boss",
      pod_env.INDEX_VAR: "0"}, "TFDIST_K8S_TASK_TYPE: 'boss' is not one of"),
    ({pod_env.CLUSTER_VAR: '{"cluster": {"worker": ["w-0.s:1"]}}', pod_env.TASK_TYPE_VAR: "worker"},
     "JOB_COMPLETION_INDEX: '' is not a pod index"),
    ({pod_env.CLUSTER_VAR: '{"cluster": {"worker": ["w-0.s:1"]}}', pod_env.TASK_TYPE_VAR: "worker",
      pod_env.INDEX_VAR: "3"}, "index: 3 is out of range for 'worker'"),
])
def test_malformed_pod_environments_are_one_line(env, message):
  with pytest.raises(ClusterSpecError, match=message):
    pod_env.task_config(env)


@pytest.mark.parametrize("args, fragment", [
    (["--model_dir=/data/run"], "--model_dir: '/data/run' would be local to each pod"),
    (["--model_dir=/data/run", "--volume_claim=runs"], "must be under --volume_mount (/shared)"),
    ([], "--model_dir: required"),
    (["--model_dir=gs://b/r", "--name=Big_Name"], "--name: 'Big_Name' must be a DNS label"),
    (["--model_dir=gs://b/r", "--", "tfdist", "train", "--model_dir=/tmp/x"],
     "--model_dir: set by the manifest"),
])
def test_manifest_errors_exit_2(args, fragment):
  result = run_tfdist("cluster", "k8s", os.path.join(SPECS, "local-2workers.yaml"),
                      "--image=img:1", *args)
  assert result.returncode == 2 and fragment in result.stderr, result.stderr
  assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.cluster
@pytest.mark.parametrize("spec_name, strategy, pods", [
    ("local-2workers.yaml", "MultiWorkerMirroredStrategy", 2),
    ("local-ps.yaml", "ParameterServerStrategy", 4),
])
def test_the_manifests_pods_train_when_started_as_kubernetes_would(tmp_path, data_dir, spec_name,
                                                                    strategy, pods):
  if not k8s_sim.can_run():
    if os.environ.get("TFDIST_REQUIRE_SYSTEM_TESTS"):
      pytest.fail("the Kubernetes simulation needs root and `unshare --mount`")
    pytest.skip("the Kubernetes simulation needs root and `unshare --mount`")
  shared = tmp_path / "shared"  # what the ReadWriteMany claim would be
  docs = manifests(spec_name, model_dir=f"{shared}/run", volume_claim="runs",
                   volume_mount=str(shared), base_port=_free_base_port(),
                   command=["tfdist", "train", f"--data_dir={data_dir}", "--epochs=4",
                            *THREAD_FLAGS])
  results = k8s_sim.run(docs, str(tmp_path), cli_env())
  assert len(results) == pods
  for pod, (code, output) in results.items():
    assert code == 0, f"{pod} exited {code}:\n{output[-3000:]}"
  chief = results["mnist-chief-0-sim" if "ps" in spec_name else "mnist-worker-0-sim"][1]
  assert f"Strategy: {strategy} (Kubernetes pod mnist-" in chief
  metrics = read_metrics(str(shared / "run"))
  assert metrics["strategy"] == strategy and metrics["epochs_completed"] == 4
  assert metrics["eval_accuracy"] >= 0.93


@pytest.mark.cluster
def test_a_job_replaced_by_one_with_fewer_workers_resumes_there(tmp_path):
  """docs/clusters.md's way to shrink a job: the 2-worker Job's pods get SIGTERM mid-epoch (as
  `kubectl delete job` sends), save and exit 75; the manifests for 1 worker, same name and
  model dir, resume from the backup there, and every id is read once an epoch."""
  if not k8s_sim.can_run():
    if os.environ.get("TFDIST_REQUIRE_SYSTEM_TESTS"):
      pytest.fail("the Kubernetes simulation needs root and `unshare --mount`")
    pytest.skip("the Kubernetes simulation needs root and `unshare --mount`")
  shared = tmp_path / "shared"
  spec = load_spec_file(os.path.join(SPECS, "local-2workers.yaml"))
  command = ["tfdist", "train", "--dataset=tests.cluster_scripts.read_counts:ids",
             "--model=tests.cluster_scripts.read_counts:counter", "--global_batch_size=16",
             "--epochs=2", "--backup_every_steps=10", "--save_share=0",
             "--params_override=train.export=false", *THREAD_FLAGS]
  options = dict(image="registry.example.com/tfdist:0.1", name="mnist",
                 model_dir=f"{shared}/run", volume_claim="runs", volume_mount=str(shared),
                 command=command)
  backups = shared / "run" / "backup" / "chief" / "checkpoint"
  signalled = []

  def delete_the_job_once_backed_up(procs):
    latest = re.search(r"ckpt-(\d+)", backups.read_text()) if backups.exists() else None
    if not signalled and latest and int(latest.group(1)) >= 3:
      signalled.append(True)
      for proc in procs.values():
        proc.send_signal(signal.SIGTERM)

  env = cli_env(PYTHONPATH=REPO)
  for name in ("before", "after"):
    (tmp_path / name).mkdir()
  before = k8s_sim.run(kubernetes.manifests(spec, kubernetes.ManifestOptions(
      base_port=_free_base_port(), **options)), str(tmp_path / "before"), env,
      while_running=delete_the_job_once_backed_up)
  assert signalled and [code for code, _ in before.values()] == [75, 75], before
  smaller = spec.without(TaskId("worker", 1))
  after = k8s_sim.run(kubernetes.manifests(smaller, kubernetes.ManifestOptions(
      base_port=_free_base_port(), **options)), str(tmp_path / "after"), env)
  (code, output), = after.values()
  assert code == 0, output[-3000:]
  assert "Input: this run has 1 worker(s), the run it goes on with had 2" in output
  assert read_metrics(str(shared / "run"))["resumed_from"]["step"] > 0  # mid-epoch
  assert read_counts.distinct_counts_by_epoch(shared / "run", 2) == {1: {1}, 2: {2}}


def _free_base_port() -> int:
  """A base with 4 free ports after it (the manifest gives each task its own)."""
  import socket
  for _ in range(50):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      base = s.getsockname()[1]
    if base > 60000:
      continue
    try:
      for port in range(base, base + 4):
        with socket.socket() as s:
          s.bind(("0.0.0.0", port))
      return base
    except OSError:
      continue
  raise RuntimeError("no 4 free consecutive ports")
