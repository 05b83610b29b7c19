"""The Helm chart (kubernetes/face-api), rendered by Helm 4's engine and by Helm 3's `helm
template` in every variant its README deploys (and two that use the rest of its values): the two
engines' objects equal, each valid against the Kubernetes API's schemas, checkov's policies met or
each exception explained, and what the service needs of its pods (kubernetes/face-api/README.md)
held to the service's own code and to what was measured.

No cluster here: what a cluster adds (scheduling on GPU nodes, the probes' timing under a kubelet,
the NetworkPolicy's enforcement, Milvus's chart) is not tested; tests/e2e/test_containers.py runs
the CPU image under the chart's pod spec in Docker, tests/e2e/test_milvus_user.py the Milvus user
against a Milvus server with authorization on.
"""

from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from face_api.ops.bentoml_private import image_home, image_user
from face_api.ops.limits import BACKSTOP_TIMEOUT_S
from face_api.ops.settings import Settings
from tests.kubernetes import (
    CHART,
    CPU_VALUES,
    MILVUS_VALUES,
    REPLICAS_VALUES,
    Helm3Error,
    K8sObject,
    checkov,
    container,
    merged,
    plain_env,
    render,
    render_helm3,
    run_helm3,
    the,
    values_file,
)
from tests.paths import ROOT

# The chart's README, the operator's guide; its "Deploying" section, the documented install.
CHART_README = (CHART / "README.md").read_text()
DEPLOYING = CHART_README.split("\n## Deploying\n", 1)[1].split("\n## ", 1)[0]

# The API versions the chart uses are served by every Kubernetes since 1.25 (the oldest schemas
# kubernetes-validate bundles) up to the newest it knows; strict: an unknown field is an error.
KUBERNETES_VERSIONS = ("1.25.0", "1.37.0")
# Objects of custom resources, whose schemas come with their operators, not with Kubernetes.
CUSTOM_KINDS = {"ServiceMonitor", "HTTPRoute"}
# Variables the chart may set that are BentoML's, not the service's settings: BENTOML_HOME moves
# BentoML's home (it writes its Prometheus folder there at start) off the read-only root
# filesystem (BentoML's documented environment, docs "Configuration").
BENTOML_VARIABLES = {"BENTOML_HOME"}
SETTING_NAMES = {f"FACE_{name.upper()}" for name in Settings.model_fields}
SERVER = {"gallery": {"uri": "http://milvus.faces.svc:19530", "tokenSecretName": "milvus-user"}}
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
DIGEST = "sha256:" + "0123456789abcdef" * 4
INGRESS_NGINX = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}

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
        {"networkPolicy": {"ingressFrom": [INGRESS_NGINX]}},
        {"maxBodyBytes": 10_000_000, "requestTimeoutS": 30, "settings": {"FACE_DET_SIZE": 320}},
        {"resources": {"limits": {"cpu": "1500m"}, "requests": {"cpu": "500m"}}},
    ],
    # The rest of the values: a Gateway API route, the Prometheus Operator, everything published,
    # an image by digest, HAProxy's controller.
    "cpu-replicas-gateway-monitored-published-digest": [
        CPU_VALUES,
        REPLICAS_VALUES,
        {"gatewayRoute": {"enabled": True, "parentRefs": [{"name": "public", "namespace": "gw"}]}},
        {"gatewayRoute": {"hostnames": ["faces.example.com"]}},
        {"serviceMonitor": {"enabled": True}, "networkPolicy": {"metricsFrom": [MONITORING]}},
        {"publish": {"docs": True, "serverInfo": True, "metrics": True}},
        {"image": {"tag": "1.10", "digest": DIGEST}, "ingress": {"controller": "haproxy"}},
    ],
    # A Milvus outside the cluster, Contour's Ingress, no NetworkPolicy, no test pod.
    "gpu-external-milvus-contour-no-policy": [
        {"gallery": {"uri": "https://milvus.example.com:443", "tokenSecretName": "milvus-user"}},
        {"ingress": {"enabled": True, "controller": "contour", "className": "contour"}},
        {"networkPolicy": {"enabled": False}, "tests": {"enabled": False}},
    ],
}
# The variants kubernetes/face-api/README.md, "Deploying", documents.
DOCUMENTED = [
    v
    for v in VARIANTS
    if v
    not in {
        "cpu-replicas-gateway-monitored-published-digest",
        "gpu-external-milvus-contour-no-policy",
    }
]


@functools.cache
def rendered(variant: str) -> list[K8sObject]:
    return render(*VARIANTS[variant])


def values_of(variant: str) -> dict[str, Any]:
    """The values a variant renders with: the chart's, then its layers."""
    return merged(
        VALUES, *(values_file(x) if isinstance(x, Path) else x for x in VARIANTS[variant])
    )


def refused(values: dict[str, Any], match: str) -> None:
    """Both engines refuse these values, naming ``match``."""
    with pytest.raises(helm_python.HelmError, match=match):
        render(values)
    with pytest.raises(Helm3Error, match=match):
        render_helm3(values)


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
    always = {"Deployment", "Service", "NetworkPolicy", "Pod"}  # the Pod: `helm test`'s
    assert kinds(rendered("gpu")) == always | {"PodDisruptionBudget", "PersistentVolumeClaim"}
    assert kinds(rendered("cpu-replicas")) == always | {
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
    }
    assert kinds(rendered("gpu-3-replicas-no-hpa-no-ingress")) == always | {"PodDisruptionBudget"}
    assert kinds(rendered("cpu-lite-emptydir-no-pdb")) == always
    assert kinds(rendered("cpu-replicas-gateway-monitored-published-digest")) == always | {
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Ingress",
        "HTTPRoute",
        "ServiceMonitor",
    }
    assert kinds(rendered("gpu-external-milvus-contour-no-policy")) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Ingress",
    }
    # Every object in the release's namespace, as GitOps tools apply `helm template`'s output.
    for variant in VARIANTS:
        assert {o["metadata"]["namespace"] for o in rendered(variant)} == {"faces"}, variant


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("gpu")])
def test_a_gpu_replica_gets_exactly_one_gpu_and_the_gpu_image(variant):
    box = container(rendered(variant))
    assert box["image"] == f"face-api:{CHART_META['appVersion']}"
    assert box["resources"]["limits"]["nvidia.com/gpu"] == 1
    # An extended resource's request is its limit; one given must be the same.
    assert box["resources"].get("requests", {}).get("nvidia.com/gpu", 1) == 1
    tolerations = pod_spec(rendered(variant))["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v.startswith("cpu")])
def test_a_cpu_replica_has_no_gpu(variant):
    objects = rendered(variant)
    assert container(objects)["image"].startswith("face-api-cpu:")
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
    assert pod["runAsUser"] == pod["runAsGroup"] == pod["fsGroup"] == image_user()
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(objects)["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(objects)["automountServiceAccountToken"] is False
    assert pod_spec(objects)["enableServiceLinks"] is False


@pytest.mark.parametrize("variant", VARIANTS)
def test_everything_the_service_writes_is_on_a_writable_volume(variant):
    """What the CPU image needed under `docker run --read-only` (the chart's README): /tmp,
    BentoML's home, and with Milvus Lite its folder and $HOME/.cache/milvus."""
    objects = rendered(variant)
    writable = {path for path, m in mounts(objects).items() if not m.get("readOnly")}
    lite = "FACE_GALLERY_URI" not in env_names(objects)
    expected = {"/tmp"} | ({"/data", f"{image_home()}.cache"} if lite else set())
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
        if name.endswith("_FILE"):  # a Secret's file in the pod: one here, as its item
            value = str(tmp_path / Path(value).parent.name)
            Path(value).write_text("face_api:secret\n")
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

    values = {"resources": {"limits": {"cpu": cpu}, "requests": {"cpu": cpu}}}
    values |= {"requestsInFlight": {"bodyMemory": "1Ti"}}  # only the service's rule caps
    env = plain_env(render(values))
    cpus = max(1, -(-int(quantity(cpu) * 1000) // 1000))
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(settings_module, "available_cpu_count", lambda: cpus)
    derived = Settings()
    # Both thread counts default to the CPUs the process may use (read once, at class creation).
    assert int(env["FACE_INTRA_OP_THREADS"]) == int(env["FACE_IMAGE_THREADS"]) == cpus
    assert int(env["FACE_API_WORKERS"]) == derived.api_workers
    # The service's 32 per CPU, short of the runner client's connections (its /readyz's).
    headroom = VALUES["requestsInFlight"]["connectionsHeadroom"]
    assert int(env["FACE_MAX_CONCURRENCY"]) == min(derived.max_concurrency, 100 - headroom)


@pytest.mark.parametrize("variant", VARIANTS)
def test_keys_come_from_secrets_as_files(variant):
    """The API keys, the metrics keys and the Milvus token: files from Secrets, none in the
    environment (where `kubectl describe`, crash reporters and child processes see it)."""
    objects = rendered(variant)
    env = plain_env(objects)
    values = values_of(variant)
    files = {"FACE_API_KEYS_FILE": ("face-api-keys", "api-keys")}
    if "FACE_METRICS_KEYS_FILE" in env:
        files["FACE_METRICS_KEYS_FILE"] = ("face-api-metrics", "metrics-keys")
    if values["gallery"]["tokenSecretName"]:
        gallery = values["gallery"]
        files["FACE_GALLERY_TOKEN_FILE"] = (gallery["tokenSecretName"], gallery["tokenKey"])
    assert not [e for e in container(objects)["env"] if "valueFrom" in e]
    for variable, (secret, key) in files.items():
        path = Path(env[variable])
        mount = mounts(objects)[str(path.parent)]
        assert mount["readOnly"] is True
        source = mount["volume"]["secret"]
        assert source["secretName"] == secret
        assert source["items"] == [{"key": key, "path": path.name}]
    assert not {"FACE_API_KEYS", "FACE_METRICS_KEYS", "FACE_GALLERY_TOKEN"} & set(env)


def test_replicas_share_a_milvus_server_with_its_token_from_a_secret():
    objects = rendered("gpu-replicas")
    env = plain_env(objects)
    assert env["FACE_GALLERY_URI"].startswith("http://face-galleries-milvus.")
    token = mounts(objects)[str(Path(env["FACE_GALLERY_TOKEN_FILE"]).parent)]["volume"]["secret"]
    assert (token["secretName"], token["items"]) == (
        "face-api-gallery",
        [{"key": "token", "path": "token"}],
    )
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


def test_the_chart_lints_clean_in_helm_4_and_helm_3():
    report = helm_python.lint(CHART, strict=True, kube_version="v1.25.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    linted = run_helm3("lint", "--strict", "--kube-version", "v1.25.0", str(CHART))
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "[WARNING]" not in linted.stdout and "[ERROR]" not in linted.stdout


def test_milvus_values_are_the_docs():
    page = (ROOT / "docs" / "galleries.md").read_text()
    block = re.search(r"```yaml\n(# milvus-values.yaml.*?)```", page, flags=re.DOTALL)
    assert block, "docs/galleries.md's milvus-values.yaml block"
    assert yaml.safe_load(block[1]) == yaml.safe_load(MILVUS_VALUES.read_text())


# --- Helm 3 and Helm 4 ------------------------------------------------------------------------


def by_name(objects: list[K8sObject]) -> list[K8sObject]:
    return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_3_renders_what_helm_4_renders(variant):
    """GitOps tools (Argo CD, Flux) embed Helm 3's engine; `helm` is Helm 4 now."""
    assert by_name(render_helm3(*VARIANTS[variant])) == by_name(rendered(variant))


# --- an upgrade rolls ---------------------------------------------------------------------------


def test_the_image_is_the_charts_version_unless_told_and_the_version_is_the_projects():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert CHART_META["appVersion"] == project["version"]
    assert VALUES["image"]["tag"] == "" and VALUES["image"]["pullPolicy"] == "IfNotPresent"
    assert container(rendered("gpu"))["image"] == f"face-api:{project['version']}"
    pinned = container(rendered("cpu-replicas-gateway-monitored-published-digest"))["image"]
    assert pinned == f"face-api-cpu:1.10@{DIGEST}"
    labels = the(rendered("gpu"), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == project["version"]


def test_a_new_version_rolls_the_pods_and_a_reused_tag_is_refused():
    before = the(render({"image": {"tag": "0.1.0"}}), "Deployment")["spec"]["template"]
    after = the(render({"image": {"tag": "0.1.1"}}), "Deployment")["spec"]["template"]
    assert before != after  # a new pod template: the Deployment rolls on `helm upgrade`
    refused({"image": {"tag": "latest"}}, "latest: a reused tag does not roll")


@pytest.mark.parametrize("text", ["tag: 20261201", "tag: 1.10", "tag: 1", "digest: sha256:abc"])
def test_a_tag_yaml_reads_as_a_number_or_a_bad_digest_is_refused(text):
    """`tag: 1.10` in a values file is the number 1.1: rendered, it named another image."""
    refused({"image": yaml.safe_load(text)}, "image")


def test_the_readme_pushes_versioned_images():
    step = DEPLOYING.split("1. **Images**", 1)[1].split("2. **GPU nodes**", 1)[0]
    assert "appVersion" in step and "kubernetes/face-api/Chart.yaml" in step
    for image in ("face-api", "face-api-cpu"):
        assert f"-t registry.example.com/{image}:$VERSION" in step, image
        assert f"docker push registry.example.com/{image}:$VERSION" in step, image
    # `face-api:latest` is the Bento's tag in the local store; no image goes out as latest.
    assert not re.search(r"(-t|push) \S+:latest\b", step)


# --- a plain cluster ----------------------------------------------------------------------------

BUILT_IN_KINDS = {
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "PersistentVolumeClaim",
    "HorizontalPodAutoscaler",
    "Ingress",
    "NetworkPolicy",
    "Pod",
}


@pytest.mark.parametrize("variant", DOCUMENTED)
def test_the_documented_installs_need_no_custom_resource(variant):
    """A ServiceMonitor or an HTTPRoute fails `helm install` where their CRDs are missing: off
    unless asked, and the chart's README names what they need."""
    assert kinds(rendered(variant)) <= BUILT_IN_KINDS
    assert "Prometheus Operator" in DEPLOYING and "CRDs" in DEPLOYING
    assert "metrics-server" in DEPLOYING and "Gateway API" in DEPLOYING


def test_the_readmes_milvus_step_makes_a_least_privilege_user_and_retires_roots_password():
    step = DEPLOYING.split("3. **Milvus**", 1)[1].split("4. **Secrets**", 1)[0]
    assert "kubernetes/milvus-user.py" in step and "MILVUS_NEW_ROOT_PASSWORD" in step
    secrets = DEPLOYING.split("4. **Secrets**", 1)[1].split("5. **The API**", 1)[0]
    assert "token=" in secrets and "root" not in secrets.split("token=", 1)[1].split("\n")[0]
    assert (ROOT / "kubernetes" / "milvus-user.py").exists()


# --- timings and sizes, derived ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "podStartSeconds": 120,
            "probes": {"startup": {"periodSeconds": 5, "failureThreshold": 12}},
        },
    ],
)
def test_the_progress_deadline_covers_the_pull_and_the_whole_startup_budget(values):
    """`kubectl rollout status` fails a rollout past progressDeadlineSeconds (600 by default):
    with a startup budget of 600 s that left nothing for scheduling, a GPU node or the pull."""
    chart = merged(VALUES, values)
    startup, readiness = chart["probes"]["startup"], chart["probes"]["readiness"]
    deadline = the(render(values), "Deployment")["spec"]["progressDeadlineSeconds"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert deadline == chart["podStartSeconds"] + budget + readiness["periodSeconds"]
    assert deadline > budget


def in_flight(objects: list[K8sObject]) -> int:
    env = plain_env(objects)
    return int(env["FACE_API_WORKERS"]) * int(env["FACE_MAX_CONCURRENCY"])


@pytest.mark.parametrize(
    "variant, extra",
    [(v, {}) for v in VARIANTS]
    + [
        ("gpu", {"maxBodyBytes": 4 * 2**20}),
        ("cpu", {"maxBodyBytes": 2**20, "resources": {"limits": {"cpu": "16"}}}),
        ("gpu", {"requestsInFlight": {"bodyMemory": "512Mi"}}),
    ],
)
def test_tmp_and_memory_hold_the_body_bytes_in_flight(variant, extra):
    """Each API worker holds at most FACE_MAX_BODY_BYTES_IN_FLIGHT of bodies (the service answers
    429 past it): one copy of each spooled to /tmp (a multipart upload) and bodyCopies in memory
    (measured 8.7 for JSON bodies). Before, the GPU defaults let 256 bodies of 20 MiB in at once:
    5 GiB against a 2 GiB /tmp, and their copies against 6 GiB."""
    objects = render(*VARIANTS[variant], extra)
    values = merged(values_of(variant), extra)
    flight, body = values["requestsInFlight"], values["maxBodyBytes"]
    env = plain_env(objects)
    workers, per_worker = int(env["FACE_API_WORKERS"]), int(env["FACE_MAX_BODY_BYTES_IN_FLIGHT"])
    assert per_worker >= body  # a body at the limit always fits
    assert workers * per_worker * flight["bodyCopies"] <= max(
        quantity(flight["bodyMemory"]), workers * body * flight["bodyCopies"]
    )
    box = container(objects)
    tmp = quantity(mounts(objects)["/tmp"]["volume"]["emptyDir"]["sizeLimit"])
    assert tmp >= quantity(flight["tmpBase"]) + workers * per_worker
    assert quantity(box["resources"]["requests"]["ephemeral-storage"]) == tmp
    limit = quantity(box["resources"]["limits"]["memory"])
    bodies = workers * per_worker * flight["bodyCopies"]
    assert limit >= quantity(values["resources"]["limits"]["memory"]) + bodies
    assert quantity(box["resources"]["requests"]["memory"]) == quantity(
        values["resources"]["requests"]["memory"]
    )
    assert in_flight(objects) >= 1


def test_the_cpu_replica_takes_the_bars_32_clients_without_a_429():
    assert in_flight(rendered("cpu")) >= 32


@pytest.mark.parametrize("variant", VARIANTS)
def test_readiness_stays_green_while_a_replica_is_merely_busy(variant):
    """/readyz asks the model runner through BentoML's client, 100 connections per API worker
    shared with the requests in flight: with 128 in one worker 11 of 55 probes failed under
    load, none with 96 (benchmarks/probes/readiness.py). The chart keeps headroom."""
    env = plain_env(rendered(variant))
    assert (
        int(env["FACE_MAX_CONCURRENCY"]) <= 100 - VALUES["requestsInFlight"]["connectionsHeadroom"]
    )
    readiness = container(rendered(variant))["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"  # red while the runner cannot answer
    assert readiness["failureThreshold"] >= 3  # one slow probe does not take it out


# --- a strict schema ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, name",
    [
        ({"replicaCountt": 2}, "replicaCountt"),
        ({"image": {"tagg": "0.1.0"}}, "tagg"),
        ({"probes": {"startup": {"periodSecond": 5}}}, "periodSecond"),
        ({"ingress": {"tsl": []}}, "tsl"),
        ({"networkPolicy": {"ingresFrom": []}}, "ingresFrom"),
        ({"requestsInFlight": {"bodyMemroy": "1Gi"}}, "bodyMemroy"),
        ({"resources": {"limits": {"memroy": "1Gi"}}}, "memroy"),
        ({"gallery": {"persistence": {"sise": "1Gi"}}}, "sise"),
    ],
)
def test_an_unknown_key_is_refused_at_every_level(values, name):
    refused(values, name)


def test_auth_off_is_refused():
    refused({"settings": {"FACE_API_AUTH": "off"}}, "FACE_API_AUTH")


FREE_MAPS = {"settings", "global", "affinity", "behavior"}  # typed by their values or Kubernetes


def test_every_block_of_values_is_typed_and_closed():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return resolve(schema["definitions"][node["$ref"].rsplit("/", 1)[1]])
        return node

    def walk(values: dict[str, Any], node: dict[str, Any], path: str) -> None:
        node = resolve(node)
        assert node.get("additionalProperties") is False, f"{path or 'the values'} is open"
        for key, value in values.items():
            child = node.get("properties", {}).get(key)
            assert child is not None, f"{path}{key} has no schema"
            child = resolve(child)
            assert {"type", "enum"} & set(child), f"{path}{key} has no type"
            if isinstance(value, dict) and key not in FREE_MAPS and child.get("properties"):
                walk(value, child, f"{path}{key}.")

    walk(VALUES, schema, "")


# --- NetworkPolicy, spread, autoscaler, routes, `helm test` --------------------------------------


def policy_peers(objects: list[K8sObject]) -> list[dict[str, Any]]:
    (rule,) = the(objects, "NetworkPolicy")["spec"]["ingress"]
    return rule["from"]


def test_the_network_policy_admits_the_controller_and_the_test_pod_and_reaches_dns_and_milvus():
    objects = rendered("gpu-replicas")
    policy = the(objects, "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == the(objects, "Service")["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    peers = policy_peers(objects)
    assert INGRESS_NGINX in peers
    test_pod = the(objects, "Pod")["metadata"]["labels"]
    (client,) = [p for p in peers if "podSelector" in p and "namespaceSelector" not in p]
    assert client["podSelector"]["matchLabels"].items() <= test_pod.items()
    dns, milvus = policy["egress"]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert milvus["ports"] == [{"port": 19530, "protocol": "TCP"}]
    assert milvus["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "faces"}}}
    ]
    # Milvus Lite: DNS only. The scraper, where there is one.
    assert len(the(rendered("gpu"), "NetworkPolicy")["spec"]["egress"]) == 1
    assert MONITORING in policy_peers(rendered("cpu-replicas-gateway-monitored-published-digest"))


@pytest.mark.parametrize(
    "values, match",
    [
        ({"ingress": {"enabled": True}}, "networkPolicy.ingressFrom"),
        ({"gatewayRoute": {"enabled": True, "parentRefs": [{"name": "gw"}]}}, "ingressFrom"),
        ({"serviceMonitor": {"enabled": True}}, "networkPolicy.metricsFrom"),
        ({"gallery": {"uri": "https://milvus.example.com"}}, "networkPolicy.milvusTo"),
    ],
)
def test_a_network_policy_that_would_cut_off_a_peer_is_refused(values, match):
    refused(values, match)


def test_replicas_spread_over_nodes_and_zones_by_default():
    for variant in ("gpu-replicas", "cpu-replicas", "gpu-3-replicas-no-hpa-no-ingress"):
        spread = pod_spec(rendered(variant))["topologySpreadConstraints"]
        keys = [c["topologyKey"] for c in spread]
        assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"], variant
        selector = the(rendered(variant), "Deployment")["spec"]["selector"]["matchLabels"]
        assert all(c["labelSelector"]["matchLabels"] == selector for c in spread)
    assert "topologySpreadConstraints" not in pod_spec(rendered("gpu"))  # one replica


def test_the_autoscaler_waits_out_a_replicas_start_before_scaling_down():
    objects = rendered("gpu-replicas")
    behavior = the(objects, "HorizontalPodAutoscaler")["spec"]["behavior"]
    startup = VALUES["probes"]["startup"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= budget
    (policy,) = behavior["scaleDown"]["policies"]
    grace = pod_spec(objects)["terminationGracePeriodSeconds"]
    assert policy == {"type": "Pods", "value": 1, "periodSeconds": grace}
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def service_paths() -> set[str]:
    """Every path the service answers under /v1 (its POST methods and the routers mounted at
    /v1), with `{...}` segments as they are."""
    paths = set(re.findall(r'route="(/v1/[^"]+)"', (ROOT / "service.py").read_text()))
    for router in ("face_api/galleries/routes.py", "face_api/http/info.py"):
        found = re.findall(r'@router\.\w+\(\s*"([^"]+)"', (ROOT / router).read_text())
        paths |= {"/v1" + p for p in found}
    return paths


def route_prefixes(objects: list[K8sObject]) -> dict[str, list[str]]:
    out = {}
    if "Ingress" in kinds(objects):
        rule = the(objects, "Ingress")["spec"]["rules"][0]["http"]["paths"]
        assert {p["pathType"] for p in rule} == {"Prefix"}
        out["Ingress"] = [p["path"] for p in rule]
    if "HTTPRoute" in kinds(objects):
        (rule,) = the(objects, "HTTPRoute")["spec"]["rules"]
        assert {m["path"]["type"] for m in rule["matches"]} == {"PathPrefix"}
        out["HTTPRoute"] = [m["path"]["value"] for m in rule["matches"]]
    return out


def routed(path: str, prefixes: list[str]) -> bool:
    """Prefix matching by path element, as both APIs define it."""
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


HIDDEN = ["/metrics", "/docs", "/docs.json", "/v1/info/server", "/readyz", "/livez"]


@pytest.mark.parametrize(
    "variant", ["gpu-replicas", "cpu-replicas-gateway-monitored-published-digest"]
)
def test_public_routes_carry_the_api_and_keep_metrics_docs_and_versions_off_unless_asked(variant):
    objects = rendered(variant)
    published = values_of(variant)["publish"]
    api = service_paths()
    assert "/v1/detect" in api and "/v1/galleries/{gallery}/faces" in api  # the parse works
    for route, prefixes in route_prefixes(objects).items():
        for path in api - {"/v1/info/server"}:
            assert routed(path, prefixes), (route, path)
        assert routed("/schema.json", prefixes)  # BentoML's client reads it first
        for path in HIDDEN:
            asked = {
                "/metrics": published["metrics"],
                "/docs": published["docs"],
                "/docs.json": published["docs"],
                "/v1/info/server": published["serverInfo"],
            }.get(path, False)
            assert routed(path, prefixes) == asked, (route, path)


@pytest.mark.parametrize(
    "variant, annotation",
    [
        ("gpu-replicas", "nginx.ingress.kubernetes.io/proxy-read-timeout"),
        ("cpu-replicas-gateway-monitored-published-digest", "haproxy.org/timeout-server"),
        ("gpu-external-milvus-contour-no-policy", "projectcontour.io/response-timeout"),
    ],
)
def test_every_route_waits_for_the_services_answer(variant, annotation):
    """Controllers' own defaults (30-60 s) are below the deadline plus BentoML's backstop."""
    objects = rendered(variant)
    waits = int(plain_env(objects)["FACE_REQUEST_TIMEOUT_S"]) + BACKSTOP_TIMEOUT_S
    timeout = the(objects, "Ingress")["metadata"]["annotations"][annotation]
    assert int(timeout.rstrip("s")) > waits
    if "HTTPRoute" in kinds(objects):
        (rule,) = the(objects, "HTTPRoute")["spec"]["rules"]
        assert int(rule["timeouts"]["request"].rstrip("s")) > waits
        assert rule["backendRefs"] == [
            {"name": the(objects, "Service")["metadata"]["name"], "port": 3000}
        ]


def test_the_replicas_ingress_is_https_and_rate_limited():
    ingress = the(rendered("gpu-replicas"), "Ingress")
    host = ingress["spec"]["rules"][0]["host"]
    assert ingress["spec"]["tls"] == [{"secretName": "face-api-tls", "hosts": [host]}]
    assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/limit-rps"]) > 0


def test_helm_test_asks_the_service_with_and_without_a_key_as_a_client_the_policy_admits():
    objects = rendered("gpu-replicas")
    pod = the(objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (box,) = pod["spec"]["containers"]
    assert box["image"] == container(objects)["image"]  # no other image to pull or trust
    script = box["args"][0]
    assert f"http://{the(objects, 'Service')['metadata']['name']}:3000" in script
    assert '("/v1/galleries", None, 401)' in script and '("/v1/galleries", key, 200)' in script
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (volume,) = pod["spec"]["volumes"]
    assert volume["secret"]["secretName"] == "face-api-keys"
    compile(script, "helm-test", "exec")  # the script is Python the image can run


# --- checkov ------------------------------------------------------------------------------------

# checkov's Kubernetes checks that the chart fails on purpose, and why.
CHECKOV_EXCEPTIONS = {
    "CKV_K8S_15": "pull policy IfNotPresent, not Always: images are versions (a reused tag is "
    "refused) or digests, and a 2-4 GB pull at every restart would only slow recovery",
    "CKV_K8S_40": "the images' user is BentoML's `bentoml` (uid 1034), who owns /home/bentoml "
    "and the Bento; another uid could not read them",
    "CKV_K8S_43": "by digest when image.digest is given (the digest variant passes); by default "
    "the chart's version, immutable by the README's build steps",
    "CKV_K8S_8": "`helm test`'s pod runs once and exits: no liveness probe",
    "CKV_K8S_9": "`helm test`'s pod runs once and exits: no readiness probe",
}


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, dict[str, Any]]:
    variants = ["gpu", "cpu-replicas", "cpu-replicas-gateway-monitored-published-digest"]
    reports = {v: checkov(rendered(v), skip=list(CHECKOV_EXCEPTIONS)) for v in variants}
    reports["everything, no exception"] = checkov(rendered("gpu-replicas"), skip=[])
    return reports


def test_checkov_passes_every_check_but_the_explained_ones(checkov_reports):
    for variant, report in checkov_reports.items():
        if variant.startswith("everything"):
            continue
        failed = [(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]]
        assert failed == [], variant
        assert report["summary"]["passed"] > 50 and report["summary"]["parsing_errors"] == 0
    # Each exception is still needed (a fixed one leaves the list), and the digest passes.
    unexcused = checkov_reports["everything, no exception"]["results"]["failed_checks"]
    assert {c["check_id"] for c in unexcused} == set(CHECKOV_EXCEPTIONS)
    digest = checkov_reports["cpu-replicas-gateway-monitored-published-digest"]
    assert "CKV_K8S_43" not in {c["check_id"] for c in digest["results"]["failed_checks"]}


# --- the chart's README -------------------------------------------------------------------------


def leaves(values: dict[str, Any], path: str = "") -> list[tuple[str, Any]]:
    out = []
    for key, value in values.items():
        if isinstance(value, dict) and value and key != "settings":
            out += leaves(value, f"{path}{key}.")
        else:
            out.append((f"{path}{key}", value))
    return out


def test_the_chart_readme_lists_every_value_with_its_default():
    rows = dict(re.findall(r"^\| `([^`]+)` \| ([^|]*) \|", CHART_README, flags=re.MULTILINE))
    for path, value in leaves(VALUES):
        assert path in rows, f"{path} is not in kubernetes/face-api/README.md"
        if isinstance(value, bool | int | str) and not isinstance(value, dict):
            shown = json.dumps(value) if value == "" else str(value).lower()
            assert shown in rows[path].lower(), (path, rows[path])
        elif value in ([], {}):
            assert json.dumps(value) in rows[path], (path, rows[path])
    listed = {p for p in rows if "." in p or p in dict(leaves(VALUES))}
    assert listed <= set(dict(leaves(VALUES))) | {"settings"}, listed - set(dict(leaves(VALUES)))


def test_the_chart_readmes_derived_numbers_are_the_charts():
    derived = dict(re.findall(r"^\| ([^|]+?) \| [^|]+ \| ([^|]+) \|$", CHART_README, re.MULTILINE))
    gpu, cpu = rendered("gpu"), rendered("cpu")
    pair = lambda f: f"{f(gpu)}; {f(cpu)}"  # noqa: E731
    env = lambda name: lambda objects: plain_env(objects)[name]  # noqa: E731
    assert derived["requests per worker (`FACE_MAX_CONCURRENCY`)"] == pair(
        env("FACE_MAX_CONCURRENCY")
    )
    assert derived["requests in flight"] == pair(in_flight)
    limit = lambda objects: container(objects)["resources"]["limits"]["memory"]  # noqa: E731
    assert derived["memory limit"] == pair(limit)
    tmp = lambda objects: mounts(objects)["/tmp"]["volume"]["emptyDir"]["sizeLimit"]  # noqa: E731
    assert derived["`/tmp` sizeLimit, ephemeral-storage request"] == pair(tmp)
    deployment = the(gpu, "Deployment")["spec"]
    assert derived["`progressDeadlineSeconds`"] == str(deployment["progressDeadlineSeconds"])
    grace = deployment["template"]["spec"]["terminationGracePeriodSeconds"]
    assert derived["`terminationGracePeriodSeconds`"] == str(grace)
