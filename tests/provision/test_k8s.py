"""`ollama-router k8s`: manifests checked against the Kubernetes API's own schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest
Kubernetes versions it ships, and the router's catalog inside them accepted by
`ollama-router validate`."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from router.catalog.loader import load_catalog
from router.cli import main

REPO = Path(__file__).resolve().parents[2]
VERSIONS = [all_versions()[0], all_versions()[-1]]
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")

PLACED = """\
version: 1
router:
  replicas: 3
defaults:
  node_selector: {pool: gpu}
  tolerations:
    - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
containers:
  big_Model.v2:
    gpus: [0, 1]
    port: 11501
    storage: 200Gi
    num_parallel: 2
    command: [serve]
    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
  small:
    port: 11502
  a-container-whose-name-goes-on-and-on-and-on-past-what-kubernetes-allows:
    gpus: [2]
    port: 11503
  elsewhere: {url: "http://10.1.2.3:11434"}
models:
  qwen2.5:72b: {containers: [big_Model.v2]}
  llama3.2: {containers: [small, a-container-whose-name-goes-on-and-on-and-on-past-what-kubernetes-allows]}
  llava: {containers: [elsewhere]}
"""


def render(tmp_path: Path, catalog: Path | str, *flags: str) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """Run `ollama-router k8s`; return the output directory and every file kustomization.yaml lists, parsed."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    if isinstance(catalog, str):
        path = tmp_path / "catalog.yaml"
        path.write_text(catalog)
        catalog = path
    out = tmp_path / "k8s"
    assert main(["k8s", str(catalog), "-o", str(out), *flags]) == 0
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(p.name for p in out.iterdir() if p.name != "kustomization.yaml")
    return out, {name: [d for d in yaml.safe_load_all((out / name).read_text()) if d] for name in listed}


def objects(files: dict[str, list[dict[str, Any]]], kind: str | None = None) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for docs in files.values() for d in docs if kind is None or d["kind"] == kind}


def workloads(files: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {**objects(files, "Deployment"), **objects(files, "StatefulSet")}


def pod_of(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def env_of(workload: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod_of(workload)["containers"][0]["env"]}


def router_catalog(files: dict[str, list[dict[str, Any]]], tmp_path: Path) -> Path:
    path = tmp_path / "router-catalog.yaml"
    path.write_text(objects(files, "ConfigMap")["router-catalog"]["data"]["catalog.yaml"])
    return path


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("catalog", ["4gpu", "placed", "placed-open"])
def test_every_object_passes_the_kubernetes_schema(tmp_path: Path, catalog: str, version: str) -> None:
    if catalog == "4gpu":
        _, files = render(tmp_path, REPO / "catalog" / "4gpu.yaml")
    else:
        _, files = render(tmp_path, PLACED, *(["--no-keys"] if catalog == "placed-open" else []))
    checked = 0
    for name, docs in files.items():
        for doc in docs:
            assert kubernetes_validate.validate(doc, version, strict=True), f"{name}: {doc['kind']}"
            assert DNS_LABEL.match(doc["metadata"]["name"]), doc["metadata"]["name"]
            checked += 1
    assert checked >= 10


def test_the_schema_check_catches_what_kubernetes_would_refuse(tmp_path: Path) -> None:
    """The check above can fail: a field Kubernetes does not know, or a wrong type, is refused."""
    _, files = render(tmp_path, PLACED)
    workload = workloads(files)["ollama-small"]
    unknown = copy.deepcopy(workload)
    pod_of(unknown)["containers"][0]["gpus"] = 1
    wrong_type = copy.deepcopy(workload)
    wrong_type["spec"]["replicas"] = "one"
    for bad in (unknown, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_each_container_requests_its_gpus_with_its_env_probes_and_placement(tmp_path: Path) -> None:
    _, files = render(tmp_path, PLACED)
    found = workloads(files)
    big = next(w for w in found.values() if w["metadata"].get("annotations", {}).get("ollama-router.io/container") == "big_Model.v2")
    assert big["kind"] == "StatefulSet"
    assert re.fullmatch(r"ollama-big-model-v2-[0-9a-f]{6}", big["metadata"]["name"])  # changed to fit: a hash keeps it unique
    main_container = pod_of(big)["containers"][0]
    assert main_container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert main_container["resources"]["requests"]["nvidia.com/gpu"] == 2
    assert main_container["args"] == ["serve"]
    env = env_of(big)
    assert (env["OLLAMA_HOST"], env["OLLAMA_NUM_PARALLEL"], env["OLLAMA_KEEP_ALIVE"]) == ("0.0.0.0:11434", "2", "24h")
    assert main_container["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert main_container["livenessProbe"]["httpGet"] == {"path": "/api/version", "port": "http"}
    assert {"name": "models", "mountPath": "/root/.ollama"} in main_container["volumeMounts"]
    [claim] = big["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "models" and claim["spec"]["resources"]["requests"]["storage"] == "200Gi"
    assert pod_of(big)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}  # its own, not the default
    assert pod_of(big)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]

    small = found["ollama-small"]
    assert small["kind"] == "Deployment" and small["spec"]["strategy"] == {"type": "Recreate"}
    assert pod_of(small)["volumes"] == [{"name": "models", "emptyDir": {}}]
    assert pod_of(small)["nodeSelector"] == {"pool": "gpu"}
    assert "resources" not in pod_of(small)["containers"][0]  # no GPU asked for
    long = [w for w in found.values() if "goes-on" in w["metadata"]["name"]]
    assert len(long) == 1 and len(long[0]["metadata"]["name"]) <= 52
    assert "elsewhere" not in str(list(found))  # a url container runs elsewhere


def test_selectors_reach_the_pods_they_mean(tmp_path: Path) -> None:
    """What the schema cannot see: each workload selects its own pods, each Service exactly one workload's."""
    _, files = render(tmp_path, PLACED)
    found = workloads(files)
    for workload in found.values():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name, service in objects(files, "Service").items():
        selector = service["spec"]["selector"].items()
        matched = [w for w in found.values() if selector <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert [w["metadata"]["name"] for w in matched] == [name]
        ports = {p["name"] for p in pod_of(matched[0])["containers"][0]["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    budget = objects(files, "PodDisruptionBudget")["router"]
    assert budget["spec"]["selector"]["matchLabels"] == found["router"]["spec"]["selector"]["matchLabels"]


def test_the_router_catalog_round_trips_through_validate_and_reaches_the_services(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, files = render(tmp_path, PLACED)
    path = router_catalog(files, tmp_path)
    capsys.readouterr()
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err
    catalog = load_catalog(path).catalog
    services = objects(files, "Service")
    source = load_catalog(tmp_path / "catalog.yaml").catalog
    for name, container in source.containers.items():
        routed = catalog.containers[name]
        assert not routed.managed
        if container.managed:
            host, port = re.fullmatch(r"http://([^:]+):(\d+)", routed.url).groups()  # type: ignore[union-attr]
            assert host in services and int(port) in {p["port"] for p in services[host]["spec"]["ports"]}
            assert routed.num_parallel == container.num_parallel
        else:
            assert routed.url == "http://10.1.2.3:11434"
    assert set(catalog.models) == set(source.models)
    # Three replicas and no Redis named: one is deployed, and the catalog sends them there.
    assert catalog.router["redis_url"] == "redis://router-redis:6379/0"
    assert objects(files, "Service")["router-redis"]["spec"]["ports"][0]["port"] == 6379
    assert "redis.yaml" in files


def test_the_router_deployment(tmp_path: Path) -> None:
    _, files = render(tmp_path, PLACED, "--router-image", "registry.example/ollama-router:1.2")
    router = workloads(files)["router"]
    assert router["spec"]["replicas"] == 3
    container = pod_of(router)["containers"][0]
    assert container["image"] == "registry.example/ollama-router:1.2"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][:2] == ["serve", "/etc/ollama-router/catalog/catalog.yaml"]
    assert container["args"][-2:] == ["--api-keys", "/etc/ollama-router/keys/keys.yaml"]
    volumes = {v["name"]: v for v in pod_of(router)["volumes"]}
    assert volumes["catalog"]["configMap"]["name"] == "router-catalog"
    assert volumes["keys"]["secret"]["secretName"] == "router-keys"
    assert objects(files, "PodDisruptionBudget")["router"]["spec"]["maxUnavailable"] == 1

    # Another catalog, another rollout: the pod template carries the catalog's hash.
    _, changed = render(tmp_path / "changed", PLACED.replace("num_parallel: 2", "num_parallel: 3"))
    key = "ollama-router.io/catalog-sha256"
    assert (router["spec"]["template"]["metadata"]["annotations"][key]
            != workloads(changed)["router"]["spec"]["template"]["metadata"]["annotations"][key])


def test_without_keys_the_router_is_open_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    _, files = render(tmp_path, PLACED, "--no-keys")
    assert "anyone who reaches" in capsys.readouterr().err
    router = workloads(files)["router"]
    assert "--api-keys" not in pod_of(router)["containers"][0]["args"]
    assert "keys" not in {v["name"] for v in pod_of(router)["volumes"]}


@pytest.mark.parametrize(
    ("router_section", "redis"),
    [("{}", False), ("{replicas: 2, redis_url: 'redis://redis.infra:6379/1'}", False), ("{replicas: 2}", True)],
    ids=["one-replica", "own-redis", "bundled-redis"],
)
def test_redis_only_for_several_replicas_without_one_of_their_own(
    tmp_path: Path, router_section: str, redis: bool
) -> None:
    text = PLACED.replace("router:\n  replicas: 3\n", f"router: {router_section}\n")
    _, files = render(tmp_path, text)
    assert ("redis.yaml" in files) is redis
    assert ("router-redis" in workloads(files)) is redis
    routed = load_catalog(router_catalog(files, tmp_path)).catalog.router
    expected = {"{}": None, "{replicas: 2}": "redis://router-redis:6379/0"}.get(router_section, "redis://redis.infra:6379/1")
    assert routed.get("redis_url") == expected


def test_a_bad_catalog_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    text = PLACED.replace("storage: 200Gi", "storage: lots")
    bad.write_text(text)
    assert main(["k8s", str(bad), "-o", str(tmp_path / "out")]) == 1
    line = text.splitlines().index("    storage: lots") + 1
    assert f"{bad}:{line}: containers.big_Model.v2.storage: 'lots' is not a Kubernetes quantity" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
