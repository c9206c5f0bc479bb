"""`ollama-router up / down / status / compose / k8s`: Docker containers for a catalog, or
the files that run it under Compose or Kubernetes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from docker import DockerClient
from docker.errors import DockerException
from rich.console import Console

from router.catalog.command import load_or_report
from router.catalog.model import Catalog, Host
from router.provision import compose, k8s, report
from router.provision.docker import Notify, Outcome, Reconciler, down, inspect
from router.provision.engines import HostResult, on_every_host
from router.provision.errors import ProvisionError, explain
from router.provision.k8s import KEYS_FILE, KEYS_SECRET, ROUTER_IMAGE, K8sOptions
from router.provision.preload import PreloadResult, preload
from router.provision.pull import PullResult, pull_missing
from router.provision.spec import ContainerSpec, catalog_specs, project_name, valid_project
from router.provision.status import Inspected, fill_loaded, status_rows

T = TypeVar("T")

_PROJECT_HELP = (
    "name that marks this catalog's containers (label and name prefix); "
    "default: $ROUTER_PROJECT, else the catalog file's name without .yaml"
)


def register(subparsers: Any) -> None:
    up = subparsers.add_parser(
        "up",
        help="create or reconcile the catalog's Docker containers, pull and load models",
        description=(
            "Create one Docker container per managed catalog container (GPUs pinned by device requests), "
            "recreate those whose spec changed, leave the others running; then pull the models each lacks "
            "and load them. Exit 1 when any container, pull or load failed."
        ),
    )
    _common(up)
    up.add_argument("--prune", action="store_true", help="remove this project's containers that the catalog no longer lists")
    up.add_argument("--no-pull", dest="pull", action="store_false", help="do not pull missing models")
    up.add_argument("--no-preload", dest="preload", action="store_false", help="do not load models after pulling")
    up.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                    help="how long to wait for each container's Ollama to answer (default 120)")
    up.add_argument("--parallel", type=int, default=3, metavar="N", help="models pulled at once (default 3)")
    up.set_defaults(func=run_up)

    down_parser = subparsers.add_parser(
        "down",
        help="remove the catalog's Docker containers",
        description="Remove this project's containers (only those labelled as ours). Models stay unless --volumes.",
    )
    _common(down_parser)
    down_parser.add_argument("--volumes", action="store_true", help="also remove the named volumes holding the models")
    down_parser.set_defaults(func=run_down)

    status = subparsers.add_parser(
        "status",
        help="show the catalog's containers, GPUs, health and loaded models",
        description="A table of the catalog's containers: Docker state, GPUs, image, health, loaded models (/api/ps), uptime.",
    )
    _common(status)
    status.set_defaults(func=run_status)

    compose_parser = _render_command(
        subparsers,
        "compose",
        "write a Docker Compose file for the catalog",
        (
            "Write DIR/compose.yaml (the router plus one Ollama service per managed container, GPUs reserved by "
            "device id) and DIR/catalog.yaml (the router's catalog, reaching each Ollama by service name). "
            "A catalog with hosts: gets DIR/compose-<host>.yaml per host (its Ollama services, published at the "
            "host's address) and compose.yaml holds only the router."
        ),
    )
    compose_parser.set_defaults(func=run_compose)

    k8s_parser = _render_command(
        subparsers,
        "k8s",
        "write Kubernetes manifests for the catalog (kustomize-ready)",
        (
            "Write one file per managed container (a StatefulSet with a volume claim when it has `storage`, else a "
            "Deployment, requesting nvidia.com/gpu, and a Service), router.yaml (the router's Deployment, Service, "
            "PodDisruptionBudget and catalog ConfigMap), redis.yaml when several router replicas need one, and "
            "kustomization.yaml listing them: `kubectl apply -k DIR`."
        ),
    )
    k8s_parser.add_argument("--router-image", default=ROUTER_IMAGE, metavar="IMAGE",
                            help=f"the router's image, as your cluster pulls it (default: {ROUTER_IMAGE})")
    keys = k8s_parser.add_mutually_exclusive_group()
    keys.add_argument("--keys-secret", default=KEYS_SECRET, metavar="NAME",
                      help=f"the Secret holding the API keys file as {KEYS_FILE} (default: {KEYS_SECRET}); you create it")
    keys.add_argument("--no-keys", action="store_true", help="no API keys: anyone who reaches the router's Service may use it")
    k8s_parser.set_defaults(func=run_k8s)


def _render_command(subparsers: Any, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    """A command that writes files for the catalog into DIR (default: the command's name)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(name, help=help_text, description=description)
    parser.add_argument("catalog", help="path to the catalog YAML file")
    parser.add_argument("-o", "--output", default=name, metavar="DIR", help=f"output directory (default: {name})")
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalog", help="path to the catalog YAML file")
    parser.add_argument("-p", "--project", default=None, help=_PROJECT_HELP)


def _project(args: argparse.Namespace) -> str | None:
    project = args.project or os.environ.get("ROUTER_PROJECT") or project_name(args.catalog)
    if not valid_project(project):
        print(f"invalid project name {project!r}: letters, digits, '_', '.', '-', starting with a letter or digit",
              file=sys.stderr)
        return None
    return project


def _guarded(body: Callable[[], int]) -> int:
    """Expected failures as one clear message and exit 1, never a traceback."""
    try:
        return body()
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except DockerException as exc:
        print(f"error: Docker: {explain(exc)}", file=sys.stderr)
    return 1


def _load(args: argparse.Namespace) -> tuple[Catalog, str] | None:
    result = load_or_report(args.catalog)
    if result is None:
        return None
    project = _project(args)
    if project is None:
        return None
    return result.catalog, project


# ---------------------------------------------------------------------------


def run_up(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    catalog, project = loaded
    return _guarded(lambda: _up(catalog, project, args))


def _up(catalog: Catalog, project: str, args: argparse.Namespace) -> int:
    out = report.console()
    specs = catalog_specs(catalog, project)
    if not specs:
        out.print(f"{catalog.path}: no managed containers (every container has a url); nothing to do")
    hosts = catalog.docker_hosts()
    on_host = {h.name: [s for s in specs if s.host == h.name] for h in hosts}

    def reconcile(host: Host, client: DockerClient, notify: Notify) -> tuple[list[Outcome], str, bool]:
        outcomes = Reconciler(client, project, ready_timeout=args.timeout, notify=notify).up(on_host[host.name], prune=args.prune)
        return outcomes, report.outcome_summary(outcomes), all(o.ok for o in outcomes)

    results = _each_host(out, hosts, {name: len(v) for name, v in on_host.items()}, reconcile)
    outcomes = [o for r in results for o in _host_outcomes(r, on_host[r.host.name])]

    ready = [o.name for o in outcomes if o.ok and o.action not in ("removed", "kept")]
    pulls: list[PullResult] = []
    loads: list[PreloadResult] = []
    if ready and args.pull:
        with report.PullBars(out) as bars:
            pulls = asyncio.run(pull_missing(catalog, containers=ready, on_progress=bars, parallel=args.parallel))
    if ready and args.preload:
        failed_pulls = {p.container for p in pulls if not p.ok}
        out.print("loading models ...")
        loads = asyncio.run(preload(catalog, containers=[n for n in ready if n not in failed_pulls]))
    reports = report.merge_reports(outcomes, specs, pulls, loads)
    out.print(report.up_table(catalog, reports))
    failed = [r.outcome.name for r in reports if not r.ok]
    _report_hosts(results)
    if failed:
        print(f"error: {len(failed)} container(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed or not all(r.ok for r in results) else 0


def _each_host(
    out: Console, hosts: list[Host], totals: dict[str, int], work: Callable[[Host, DockerClient, Notify], tuple[T, str, bool]]
) -> list[HostResult[T]]:
    """`work` on every host at once, one progress line per host, ending with what `work`
    says of it (summary, ok) or why the host failed."""
    with report.HostLines(out, hosts, totals) as lines:

        def run(host: Host, client: DockerClient) -> T:
            value, summary, ok = work(host, client, lines.notifier(host.name))
            lines.finish(host.name, summary, ok)
            return value

        results = on_every_host(hosts, run)
        for result in results:
            if not result.ok:
                lines.finish(result.host.name, result.error, ok=False)
    return results


def _host_outcomes(result: HostResult[list[Outcome]], specs: list[ContainerSpec]) -> list[Outcome]:
    """A host's outcomes, each marked with the host; for a host that failed, one per container."""
    outcomes = result.value if result.value is not None else [
        Outcome(s.name, "not reached", ok=False, message=f"host {result.host.name} failed", docker_name=s.docker_name) for s in specs
    ]
    for outcome in outcomes:
        outcome.host = result.host.name
    return outcomes


def _report_hosts(results: list[HostResult[Any]]) -> None:
    """Each host that failed, with why, on stderr."""
    for result in results:
        if not result.ok:
            print(f"error: {result.error}", file=sys.stderr)


def run_down(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    catalog, project = loaded

    def body() -> int:
        out = report.console()

        def remove(host: Host, client: DockerClient, notify: Notify) -> tuple[list[Outcome], str, bool]:
            outcomes = down(client, project, volumes=args.volumes)
            return outcomes, report.outcome_summary(outcomes), all(o.ok for o in outcomes)

        results = _each_host(out, catalog.docker_hosts(), {}, remove)
        outcomes = [o for r in results for o in _host_outcomes(r, [])]
        if outcomes:
            out.print(report.down_table(project, outcomes, hosts=bool(catalog.hosts)))
        elif all(r.ok for r in results):
            out.print(f"no containers of project {project} to remove")
        _report_hosts(results)
        return 0 if all(o.ok for o in outcomes) and all(r.ok for r in results) else 1

    return _guarded(body)


def run_status(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    catalog, project = loaded

    def body() -> int:
        out = report.console()
        hosts = catalog.docker_hosts()

        def look(host: Host, client: DockerClient, notify: Notify) -> tuple[Inspected, str, bool]:
            found = inspect(client, project)
            return found, f"{len(found)} container(s) of project {project} on its engine", True

        results = _each_host(out, hosts, {}, look)
        rows = status_rows(catalog, {r.host.name: r.value for r in results})
        asyncio.run(fill_loaded(rows))
        out.print(report.status_table(f"{catalog.path} (project {project})", rows, hosts=bool(catalog.hosts)))
        _report_hosts(results)
        return 0 if all(r.ok for r in results) else 1

    return _guarded(body)


def run_compose(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    out_dir = Path(args.output)
    try:
        written = compose.write_compose(result.catalog, out_dir, args.catalog)
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if result.catalog.hosts:
        for host in result.catalog.docker_hosts():
            engine = f"DOCKER_HOST={host.docker} " if host.docker else ""
            path = out_dir / compose.host_compose_file(host.name)
            if path in written:
                print(f"host {host.name}: {engine}docker compose -f {path} up -d")
        print(f"the router, anywhere that reaches the hosts' addresses: docker compose -f {written[0]} up -d")
    else:
        print(f"run it on a GPU box: docker compose -f {written[0]} up -d")
    return 0


def run_k8s(args: argparse.Namespace) -> int:
    result = load_or_report(args.catalog)
    if result is None:
        return 1
    out_dir = Path(args.output)
    options = K8sOptions(router_image=args.router_image, keys_secret=None if args.no_keys else args.keys_secret)
    try:
        written = k8s.write_k8s(result.catalog, out_dir, args.catalog, options)
    except OSError as exc:
        print(f"error: cannot write to {out_dir}: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path}")
    if options.keys_secret:
        print(f"the router reads its API keys from Secret {options.keys_secret}: "
              f"kubectl create secret generic {options.keys_secret} --from-file={KEYS_FILE}=keys.yaml")
    else:
        print("warning: --no-keys: the router answers anyone who reaches its Service", file=sys.stderr)
    print(f"then: kubectl apply -k {out_dir}")
    return 0
