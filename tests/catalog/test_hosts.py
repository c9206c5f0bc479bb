"""Several Docker hosts in one catalog, Kubernetes placement, and the deployment
settings of the `router:` section: what `validate` refuses (file:line), what it
warns about, and what the program then reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.catalog.loader import parse_catalog
from router.settings import RouterSettings
from tests.catalog.support import M, Validate, assert_refused_at_mark, assert_warned_at_mark, edit

# Two hosts, the same GPU index and port on each: valid, no warning.
HOSTS = """\
version: 1
hosts:
  box1:
    docker: unix:///var/run/docker.sock
    address: 127.0.0.1
  box2:
    docker: tcp://box2.lan:2376
    address: 10.0.0.2
    tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}
containers:
  llama-a:
    gpus: [0]
    port: 11501
    host: box1
  llama-b:
    gpus: [0]
    port: 11501
    host: box2
    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
    tolerations:
      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
    storage: 200Gi
models:
  llama3.2:3b:
    containers: [llama-a, llama-b]
"""

RULES: list[tuple[str, str, str]] = [
    ("unknown-host", edit("    host: box2\n", f"    host: box9{M}\n", HOSTS), "container 'llama-b' names host 'box9', which is not in hosts:"),
    ("same-port-one-host", edit("    port: 11501\n    host: box2\n", f"    port: 11501{M}\n    host: box1\n", HOSTS),
     "port 11501 is already used by container 'llama-a' on host 'box1'"),
    ("docker-scheme", edit("    docker: tcp://box2.lan:2376\n", f"    docker: https://box2.lan:2376{M}\n", HOSTS),
     "hosts.box2.docker: docker 'https://box2.lan:2376' must start with unix://, tcp://, ssh://"),
    ("docker-relative-socket", edit("    docker: unix:///var/run/docker.sock\n", f"    docker: unix://docker.sock{M}\n", HOSTS),
     "must name a socket by its absolute path"),
    ("docker-bad-port", edit("    docker: tcp://box2.lan:2376\n", f"    docker: tcp://box2.lan:port{M}\n", HOSTS),
     "docker 'tcp://box2.lan:port' has an invalid port"),
    ("address-with-scheme", edit("    address: 10.0.0.2\n", f"    address: http://10.0.0.2{M}\n", HOSTS),
     "hosts.box2.address: address 'http://10.0.0.2' must be a host name or an IP address"),
    ("address-with-port", edit("    address: 10.0.0.2\n", f"    address: '10.0.0.2:80'{M}\n", HOSTS),
     "must be a host name or an IP address"),
    ("host-missing-docker", edit("    docker: unix:///var/run/docker.sock\n", "", HOSTS).replace("  box1:\n", f"  box1:{M}\n"),
     "missing required key 'docker' in hosts.box1"),
    ("host-unknown-key", edit("    address: 127.0.0.1\n", f"    address: 127.0.0.1\n    adress: 127.0.0.1{M}\n", HOSTS),
     "unknown key 'adress' in hosts.box1"),
    ("tls-without-tcp", edit("    address: 127.0.0.1\n", f"    address: 127.0.0.1\n    tls: {{ca: ca.pem}}{M}\n", HOSTS),
     "host 'box1': tls is for tcp:// engines only"),
    ("tls-cert-without-key", edit("    tls: {ca: certs/ca.pem, cert: certs/cert.pem, key: certs/key.pem}\n",
                                  f"    tls: {{cert: certs/cert.pem}}{M}\n", HOSTS), "tls needs both cert and key"),
    ("host-name-chars", edit("  box2:\n", f"  'box 2':{M}\n", HOSTS).replace("host: box2", "host: box 2"),
     "host name 'box 2' may hold only letters"),
    ("host-on-remote", edit("  llama-a:\n    gpus: [0]\n    port: 11501\n    host: box1\n",
                            f"  llama-a:\n    url: http://10.0.0.5:11434{M}\n    host: box1\n", HOSTS),
     "container 'llama-a' has a url (not managed here) and also host"),
    ("node-selector-bad-key", edit("    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}\n",
                                   f"    node_selector: {{'-gpu': yes}}{M}\n", HOSTS), "'-gpu' is not a Kubernetes label key"),
    ("node-selector-bool-value", edit("    node_selector: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}\n",
                                      f"    node_selector: {{gpu: true}}{M}\n", HOSTS),
     "containers.llama-b.node_selector.gpu: Input should be a valid string"),
    ("toleration-operator", edit("      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n",
                                 f"      - {{key: nvidia.com/gpu, operator: exists}}{M}\n", HOSTS),
     "containers.llama-b.tolerations.0.operator: Input should be 'Exists' or 'Equal'"),
    ("toleration-effect", edit("      - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}\n",
                               f"      - {{key: nvidia.com/gpu, effect: Never}}{M}\n", HOSTS),
     "Input should be 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'"),
    ("storage-quantity", edit("    storage: 200Gi\n", f"    storage: 200GB{M}\n", HOSTS),
     "containers.llama-b.storage: '200GB' is not a Kubernetes quantity"),
    ("replicas-zero", edit("hosts:\n", f"router:\n  replicas: 0{M}\nhosts:\n", HOSTS),
     "router.replicas: Input should be greater than or equal to 1"),
    ("redis-url-scheme", edit("hosts:\n", f"router:\n  redis_url: http://redis:6379{M}\nhosts:\n", HOSTS),
     "router.redis_url: redis_url must start with redis://, rediss:// or unix://"),
    ("redis-url-no-host", edit("hosts:\n", f"router:\n  redis_url: 'redis://:secret@/0'{M}\nhosts:\n", HOSTS),
     "redis_url 'redis://:***@/0' must name a host"),
    ("redis-url-database", edit("hosts:\n", f"router:\n  redis_url: redis://redis:6379/zero{M}\nhosts:\n", HOSTS),
     "the path must be a database number"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _, t, e in RULES], ids=[i for i, _, _ in RULES])
def test_rule_names_file_and_line(validate: Validate, text: str, expected: str) -> None:
    assert_refused_at_mark(validate, text, expected)


def test_a_password_in_a_bad_redis_url_is_not_printed(validate: Validate) -> None:
    _, outcome = validate(edit("hosts:\n", "router:\n  redis_url: 'redis://:hunter2@/0'\nhosts:\n", HOSTS))
    assert outcome.code == 1 and "redis_url" in outcome.err
    assert "hunter2" not in outcome.err


def test_a_gpu_claimed_twice_on_one_host_is_a_warning(validate: Validate) -> None:
    text = edit("  llama-b:\n    gpus: [0]\n", f"  llama-c:\n    gpus: [0]{M}\n    port: 11502\n    host: box1\n  llama-b:\n    gpus: [0]\n", HOSTS)
    text = text.replace("[llama-a, llama-b]", "[llama-a, llama-b, llama-c]")
    assert_warned_at_mark(validate, text, "GPU 0 is shared by containers 'llama-a' and 'llama-c' on host 'box1'")


def test_a_host_no_container_runs_on_is_a_warning(validate: Validate) -> None:
    box3 = f"key: certs/key.pem}}\n  box3: {{docker: 'ssh://ops@box3', address: box3.lan}}{M}\n"
    assert_warned_at_mark(validate, edit("key: certs/key.pem}\n", box3, HOSTS), "host 'box3' runs no container")


def test_the_same_gpu_and_port_on_two_hosts_is_fine(validate: Validate) -> None:
    path, outcome = validate(HOSTS)
    assert (outcome.code, outcome.problems(path)) == (0, [])
    assert "box1" in outcome.out and "box2" in outcome.out  # the table says where each container runs


def test_hosts_resolve_to_urls_placement_and_absolute_tls_files(tmp_path: Path) -> None:
    text = edit("    port: 11501\n    host: box1\n", "    port: 11501\n    host: box1\n  plain:\n    port: 11600\n", HOSTS)
    text = text.replace("[llama-a, llama-b]", "[llama-a, llama-b, plain]")
    catalog = parse_catalog(text, str(tmp_path / "catalog.yaml")).catalog
    a, b, plain = catalog.containers["llama-a"], catalog.containers["llama-b"], catalog.containers["plain"]
    assert (a.url, a.host) == ("http://127.0.0.1:11501", "box1")
    assert (b.url, b.host) == ("http://10.0.0.2:11501", "box2")
    assert (plain.url, plain.host) == ("http://127.0.0.1:11600", "local")  # no host: the local engine
    box2 = catalog.host_of(b)
    assert box2.docker == "tcp://box2.lan:2376" and box2.bind == "10.0.0.2"
    assert box2.tls is not None and box2.tls.ca == str(tmp_path / "certs" / "ca.pem")
    assert catalog.host_of(plain).docker is None  # DOCKER_HOST or the default socket
    assert b.node_selector == (("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),)
    assert [(t.key, t.operator, t.effect) for t in b.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert (b.storage, a.storage) == ("200Gi", None)


def test_a_host_named_local_is_the_engine_of_containers_without_host() -> None:
    text = HOSTS.replace("  box1:\n", "  local:\n").replace("    host: box1\n", "")
    catalog = parse_catalog(text, "c.yaml").catalog
    a = catalog.containers["llama-a"]
    assert a.host == "local" and catalog.host_of(a).docker == "unix:///var/run/docker.sock"


def test_an_ipv6_address_is_bracketed_and_a_host_name_binds_every_interface() -> None:
    text = HOSTS.replace("address: 10.0.0.2", "address: 'fd00::2'").replace("address: 127.0.0.1", "address: box1.lan")
    catalog = parse_catalog(text, "c.yaml").catalog
    assert catalog.containers["llama-b"].url == "http://[fd00::2]:11501"
    assert catalog.containers["llama-a"].url == "http://box1.lan:11501"
    assert catalog.host_of(catalog.containers["llama-a"]).bind == "0.0.0.0"


def test_placement_in_defaults_applies_to_every_container() -> None:
    text = HOSTS.replace("containers:\n", "defaults:\n  node_selector: {pool: gpu}\n  storage: 50Gi\ncontainers:\n", 1)
    catalog = parse_catalog(text, "c.yaml").catalog
    assert catalog.containers["llama-a"].node_selector == (("pool", "gpu"),)
    assert catalog.containers["llama-a"].storage == "50Gi"
    assert catalog.containers["llama-b"].storage == "200Gi"  # its own wins
    assert catalog.containers["llama-b"].node_selector == (("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),)


def test_replicas_and_redis_url_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    text = HOSTS.replace("hosts:\n", "router:\n  replicas: 3\n  redis_url: redis://redis.infra:6379/2\nhosts:\n", 1)
    settings = RouterSettings.load(parse_catalog(text, "c.yaml").catalog.router)
    assert (settings.replicas, settings.redis_url) == (3, "redis://redis.infra:6379/2")
    assert (RouterSettings.load({}).replicas, RouterSettings.load({}).redis_url) == (1, None)

    from pydantic import ValidationError

    monkeypatch.setenv("ROUTER_REDIS_URL", "redis.infra:6379")
    with pytest.raises(ValidationError, match="redis_url must start with"):
        RouterSettings.load({})
