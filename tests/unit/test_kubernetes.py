"""The Helm chart (kubernetes/face-api), rendered by Helm's engine in every variant the README
deploys: each object valid against the Kubernetes API's schemas, and what the service needs of
its pods (README.md, "Kubernetes") held to the service's own code.

No cluster here: what a cluster adds (scheduling on GPU nodes, the probes' timing, Milvus's chart)
is not tested; tests/e2e/test_containers.py runs the CPU image under the chart's pod spec in Docker.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from bentoml._internal.container.generate import BENTO_HOME, BENTO_UID_GID

from face_api.ops.limits import BACKSTOP_TIMEOUT_S
from face_api.ops.settings import Settings
from tests.kubernetes import (
    CHART,
    CPU_VALUES,
    MILVUS_VALUES,
    REPLICAS_VALUES,
    K8sObject,
    container,
    plain_env,
    render,
    the,
)
from tests.paths import ROOT

# The API versions the chart uses are served by every Kubernetes since 1.25 (the oldest schemas
# kubernetes-validate bundles) up to the newest it knows; strict: an unknown field is an error.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Objects of custom resources, whose schemas come with their operators, not with Kubernetes.
CUSTOM_KINDS = {"ServiceMonitor"}
# Variables the chart may set that are BentoML's, not the service's settings: BENTOML_HOME moves
# BentoML's home (it writes its Prometheus folder there at start) off the read-only root
# filesystem (BentoML's documented environment, docs "Configuration").
BENTOML_VARIABLES = {"BENTOML_HOME"}
SETTING_NAMES = {f"FACE_{name.upper()}" for name in Settings.model_fields}
SERVER = {"gallery": {"uri": "http://milvus.faces.svc:19530", "tokenSecretName": "milvus-user"}}

VARIANTS: dict[str, list[Any]] = {
    "gpu": [],
    "cpu": [CPU_VALUES],
    "gpu-replicas": [REPLICAS_VALUES],
    "cpu-replicas": [CPU_VALUES, REPLICAS_VALUES],
    "gpu-3-replicas-no-hpa-no-ingress": [
        REPLICAS_VALUES,
        {"replicaCount": 3, "autoscaling": {"enabled": False}, "ingress": {"enabled": False}},
        {"serviceMonitor": {"enabled": False}, "metricsKeys": {"secretName": ""}},
    ],
    "cpu-lite-emptydir-no-pdb": [
        CPU_VALUES,
        {"gallery": {"persistence": {"enabled": False}}, "podDisruptionBudget": {"enabled": False}},
    ],
    "gpu-lite-existing-claim-ingress-tls": [
        {"gallery": {"persistence": {"existingClaim": "galleries"}}},
        {"ingress": {"enabled": True, "host": "f.example.com", "tls": [{"secretName": "tls"}]}},
        {"maxBodyBytes": 10_000_000, "requestTimeoutS": 30, "settings": {"FACE_DET_SIZE": 320}},
        {"resources": {"limits": {"cpu": "1500m"}, "requests": {"cpu": "500m"}}},
    ],
}


@functools.cache
def rendered(variant: str) -> list[K8sObject]:
    return render(*VARIANTS[variant])


def kinds(objects: list[K8sObject]) -> set[str]:
    return {o["kind"] for o in objects}


def pod_spec(objects: list[K8sObject]) -> dict[str, Any]:
    return the(objects, "Deployment")["spec"]["template"]["spec"]


def env_names(objects: list[K8sObject]) -> list[str]:
    return [variable["name"] for variable in container(objects)["env"]]


def mounts(objects: list[K8sObject]) -> dict[str, dict[str, Any]]:
    """The container's mounts by path, each with its volume."""
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    return {
        m["mountPath"]: {**m, "volume": volumes[m["name"]]}
        for m in container(objects)["volumeMounts"]
    }


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (``2``, ``500m``, ``3Gi``) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match, value
    return float(match[1]) * units.get(match[2], 1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_valid_for_kubernetes(variant):
    objects = rendered(variant)
    assert {"Deployment", "Service"} <= kinds(objects)
    for obj in objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue  # checked field by field below
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_variants_make_what_they_say():
    assert kinds(rendered("gpu")) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PersistentVolumeClaim",
    }
    assert kinds(rendered("cpu-replicas")) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "ServiceMonitor",
    }
    assert kinds(rendered("gpu-3-replicas-no-hpa-no-ingress")) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    assert kinds(rendered("cpu-lite-emptydir-no-pdb")) == {"Deployment", "Service"}


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("gpu")])
def test_a_gpu_replica_gets_exactly_one_gpu_and_the_gpu_image(variant):
    box = container(rendered(variant))
    assert box["image"] == "face-api:latest"
    assert box["resources"]["limits"]["nvidia.com/gpu"] == 1
    # An extended resource's request is its limit; one given must be the same.
    assert box["resources"].get("requests", {}).get("nvidia.com/gpu", 1) == 1
    tolerations = pod_spec(rendered(variant))["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("cpu")])
def test_a_cpu_replica_has_no_gpu(variant):
    objects = rendered(variant)
    assert container(objects)["image"] == "face-api-cpu:latest"
    assert "nvidia.com" not in json.dumps(objects)


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_are_bentomls_and_wait_long_enough_for_the_models(variant):
    box = container(rendered(variant))
    ports = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert ports == {"http": 3000}  # the images' port (BENTOML_PORT's default)
    for probe, path in (
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ):
        assert box[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    startup = box["startupProbe"]
    # Loading a large pack and running every padded batch size once on CUDA: minutes, not seconds.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_pod_runs_as_the_images_user_read_only_without_privileges(variant):
    objects = rendered(variant)
    pod = pod_spec(objects)["securityContext"]
    assert pod["runAsNonRoot"] is True
    # A user name cannot be checked against root: the number BentoML's Dockerfile gives `bentoml`.
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == BENTO_UID_GID
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(objects)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(objects)["automountServiceAccountToken"] is False
    assert pod_spec(objects)["enableServiceLinks"] is False


@pytest.mark.parametrize("variant", VARIANTS)
def test_everything_the_service_writes_is_on_a_writable_volume(variant):
    """What the CPU image needed under `docker run --read-only` (README.md, "Kubernetes"): /tmp,
    BentoML's home, and with Milvus Lite its folder and $HOME/.cache/milvus."""
    objects = rendered(variant)
    writable = {path for path, m in mounts(objects).items() if not m.get("readOnly")}
    lite = "FACE_GALLERY_URI" not in env_names(objects)
    expected = {"/tmp"} | ({"/data", f"{BENTO_HOME}.cache"} if lite else set())
    assert writable == expected
    assert plain_env(objects)["BENTOML_HOME"].startswith("/tmp/")
    assert mounts(objects)["/tmp"]["volume"]["emptyDir"]["sizeLimit"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variable_is_a_setting_the_service_reads(variant):
    names = env_names(rendered(variant))
    assert len(names) == len(set(names)), names
    for name in names:
        assert name in SETTING_NAMES or name in BENTOML_VARIABLES, name
    assert "FACE_GALLERY_CONSISTENCY" not in names


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_values_set_are_valid_settings(variant, monkeypatch, tmp_path):
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for name, value in plain_env(rendered(variant)).items():
        monkeypatch.setenv(name, value)
    Settings()  # raises on a value the service would refuse at start


def test_the_values_schema_names_only_settings_the_chart_leaves_open():
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_names = set(schema["properties"]["settings"]["propertyNames"]["enum"])
    assert open_names <= SETTING_NAMES
    # Names the chart sets itself: in the variants that give no `settings` of their own.
    by_chart = [
        v
        for v, layers in VARIANTS.items()
        if not any("settings" in x for x in layers if isinstance(x, dict))
    ]
    chart_sets = {name for v in by_chart for name in env_names(rendered(v))}
    assert not open_names & chart_sets
    # Keys belong in Secrets; the consistency is the service's to choose; /data is the chart's.
    assert not open_names & {"FACE_API_KEYS", "FACE_METRICS_KEYS", "FACE_GALLERY_CONSISTENCY"}
    assert "FACE_GALLERY_DIR" not in open_names
    assert plain_env(rendered("gpu-lite-existing-claim-ingress-tls"))["FACE_DET_SIZE"] == "320"
    with pytest.raises(helm_python.HelmError, match="FACE_DET_THRESHHOLD"):
        render({"settings": {"FACE_DET_THRESHHOLD": "0.6"}})


@pytest.mark.parametrize("cpu", ["500m", "1", "2", "1500m", "4", "8", "16"])
def test_workers_and_threads_follow_the_cpu_limit_as_the_service_would(cpu, monkeypatch):
    """A pod sees every CPU of its node; the chart sizes the service by its CPU limit, with the
    service's own rules (what Settings derives when that many CPUs are all it may run on)."""
    import face_api.ops.settings as settings_module

    env = plain_env(render({"resources": {"limits": {"cpu": cpu}, "requests": {"cpu": cpu}}}))
    cpus = max(1, -(-int(quantity(cpu) * 1000) // 1000))
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "available_cpu_count", lambda: cpus)
    derived = Settings()
    # Both thread counts default to the CPUs the process may use (read once, at class creation).
    assert int(env["FACE_INTRA_OP_THREADS"]) == int(env["FACE_IMAGE_THREADS"]) == cpus
    assert int(env["FACE_API_WORKERS"]) == derived.api_workers
    assert int(env["FACE_MAX_CONCURRENCY"]) == derived.max_concurrency


@pytest.mark.parametrize("variant", VARIANTS)
def test_keys_come_from_secrets_as_files(variant):
    objects = rendered(variant)
    env = plain_env(objects)
    files = {"FACE_API_KEYS_FILE": ("face-api-keys", "api-keys")}
    if "FACE_METRICS_KEYS_FILE" in env:
        files["FACE_METRICS_KEYS_FILE"] = ("face-api-metrics", "metrics-keys")
    for variable, (secret, key) in files.items():
        path = Path(env[variable])
        mount = mounts(objects)[str(path.parent)]
        assert mount["readOnly"] is True
        source = mount["volume"]["secret"]
        assert source["secretName"] == secret
        assert source["items"] == [{"key": key, "path": path.name}]
    assert "FACE_API_KEYS" not in env and "FACE_METRICS_KEYS" not in env


def test_replicas_share_a_milvus_server_with_its_token_from_a_secret():
    objects = rendered("gpu-replicas")
    env = {e["name"]: e for e in container(objects)["env"]}
    assert env["FACE_GALLERY_URI"]["value"].startswith("http://face-galleries-milvus.")
    token = env["FACE_GALLERY_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "face-api-gallery", "key": "token"}
    assert "FACE_METRICS_KEYS_FILE" in env  # Prometheus's key (test_keys_come_from_secrets...)
    assert "/data" not in mounts(objects) and "PersistentVolumeClaim" not in kinds(objects)
    assert the(objects, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "replicas" not in the(objects, "Deployment")["spec"]  # the autoscaler's to set
    assert the(rendered("gpu-3-replicas-no-hpa-no-ingress"), "Deployment")["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    "values",
    [
        {"replicaCount": 2},
        {"autoscaling": {"enabled": True}},
        {"gallery": {"tokenSecretName": "milvus-user"}},
    ],
)
def test_more_than_one_replica_without_a_milvus_server_is_refused(values):
    with pytest.raises(helm_python.HelmError, match="gallery.uri"):
        render(values)
    render(values, SERVER)


def test_milvus_lite_keeps_one_replica_on_its_volume():
    objects = rendered("gpu")
    deployment = the(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # the old pod lets go first
    claim = the(objects, "PersistentVolumeClaim")
    assert (
        mounts(objects)["/data"]["volume"]["persistentVolumeClaim"]["claimName"]
        == claim["metadata"]["name"]
    )
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    existing = rendered("gpu-lite-existing-claim-ingress-tls")
    assert mounts(existing)["/data"]["volume"]["persistentVolumeClaim"]["claimName"] == "galleries"
    assert mounts(rendered("cpu-lite-emptydir-no-pdb"))["/data"]["volume"] == {
        "name": "galleries",
        "emptyDir": {},
    }


def nginx_size(value: str) -> int:
    """nginx's size syntax (client_max_body_size): bytes, or k/m suffixes."""
    match = re.fullmatch(r"(\d+)([kKmM]?)", value)
    assert match, value
    return int(match[1]) * {"": 1, "k": 1024, "m": 1024**2}[match[2].lower()]


@pytest.mark.parametrize("variant", ["gpu-replicas", "gpu-lite-existing-claim-ingress-tls"])
def test_the_ingress_takes_what_the_service_takes_and_waits_for_its_answer(variant, monkeypatch):
    objects = rendered(variant)
    env = plain_env(objects)
    annotations = the(objects, "Ingress")["metadata"]["annotations"]
    body = nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"])
    assert body == int(env["FACE_MAX_BODY_BYTES"])
    waits = int(env["FACE_REQUEST_TIMEOUT_S"]) + BACKSTOP_TIMEOUT_S
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > waits
    backend = the(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {
        "name": the(objects, "Service")["metadata"]["name"],
        "port": {"name": "http"},
    }


def test_the_default_body_limit_is_the_services():
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("FACE_MAX_BODY_BYTES", raising=False)
    try:
        default = Settings().max_body_bytes
    finally:
        monkeypatch.undo()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["maxBodyBytes"] == default
    annotations = the(rendered("gpu-replicas"), "Ingress")["metadata"]["annotations"]
    assert nginx_size(annotations["nginx.ingress.kubernetes.io/proxy-body-size"]) == default


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_grace_period_covers_the_longest_request_after_the_prestop_sleep(variant):
    objects = rendered(variant)
    pod = pod_spec(objects)
    sleep = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep"
    longest = int(plain_env(objects)["FACE_REQUEST_TIMEOUT_S"]) + BACKSTOP_TIMEOUT_S
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + longest + 5


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_budget_and_autoscaler_point_at_the_deployment(variant):
    objects = rendered(variant)
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    service = the(objects, "Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    if "PodDisruptionBudget" in kinds(objects):
        budget = the(objects, "PodDisruptionBudget")["spec"]
        assert budget["selector"]["matchLabels"] == selector and budget["maxUnavailable"] == 1
    if "HorizontalPodAutoscaler" in kinds(objects):
        target = the(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert target == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": deployment["metadata"]["name"],
        }
    if "ServiceMonitor" in kinds(objects):
        monitor = the(objects, "ServiceMonitor")
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert (
            monitor["spec"]["selector"]["matchLabels"].items()
            <= service["metadata"]["labels"].items()
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        assert (
            endpoint["port"] == service["spec"]["ports"][0]["name"]
            and endpoint["path"] == "/metrics"
        )
        assert endpoint["authorization"] == {
            "type": "Bearer",
            "credentials": {"name": "face-api-metrics", "key": "metrics-keys"},
        }


@pytest.mark.parametrize("variant", VARIANTS)
def test_memory_and_cpu_are_requested_and_limited(variant):
    resources = container(rendered(variant))["resources"]
    for resource in ("cpu", "memory"):
        request = quantity(resources["requests"][resource])
        assert 0 < request <= quantity(resources["limits"][resource]), resource


def test_the_chart_lints_clean():
    report = helm_python.lint(CHART, strict=True, kube_version="v1.25.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_milvus_values_are_the_readmes():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(# milvus-values.yaml.*?)```", readme, flags=re.DOTALL)
    assert block, "README's milvus-values.yaml block"
    assert yaml.safe_load(block[1]) == yaml.safe_load(MILVUS_VALUES.read_text())
