"""What the provisioning commands show: pull progress bars and tables (rich)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table

from router.catalog.model import Catalog, Host
from router.provision.docker import Notify, Outcome
from router.provision.preload import PreloadResult
from router.provision.pull import PullEvent, PullResult
from router.provision.spec import ContainerSpec
from router.provision.status import StatusRow


def console(stderr: bool = False) -> Console:
    # Wide enough that tables stay readable when output is captured (no terminal).
    return Console(stderr=stderr, width=max(Console(stderr=stderr).width, 160))


class PullBars:
    """A progress bar per (container, model); a line per finished or failed pull."""

    def __init__(self, out: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.fields[label]}"),
            TextColumn("[dim]{task.fields[status]}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out,
        )
        self._tasks: dict[tuple[str, str], TaskID] = {}

    def __enter__(self) -> PullBars:
        self._progress.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._progress.stop()

    def __call__(self, event: PullEvent) -> None:
        key = (event.container, event.model)
        task = self._tasks.get(key)
        if task is None:
            label = f"{event.container}: {event.model}"
            task = self._tasks[key] = self._progress.add_task(label, total=None, label=label, status="")
        self._progress.update(task, completed=event.completed, total=event.total or None, status=event.status[:24])
        if event.error:
            self._progress.console.print(f"[red]pull failed[/] {event.container}: {event.model}: {event.error}")
        elif event.done:
            self._progress.update(task, total=event.total or 1, completed=event.total or 1)
            self._progress.console.print(f"pulled {event.model} on {event.container}")


class HostLines:
    """One progress line per host while a command works on all of them at once:
    containers done out of the host's total (when it has one), and what happened
    last. Each event is also printed on a line of its own (`container: what`), as a log."""

    def __init__(self, out: Console, hosts: list[Host], totals: dict[str, int]) -> None:
        width = max((len(h.name) for h in hosts), default=0)
        self._progress = Progress(
            TextColumn("{task.fields[mark]}"),
            TextColumn("{task.fields[host]}", table_column=Column(no_wrap=True, min_width=width)),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            console=out,
            expand=True,
        )
        self._totals = totals
        self._done = {h.name: 0 for h in hosts}
        self._tasks = {h.name: self._progress.add_task(h.name, host=h.name, mark="·", count=self._count(h.name), status="connecting")
                       for h in hosts}

    def _count(self, host: str) -> str:
        total = self._totals.get(host)
        return f"{self._done[host]}/{total}" if total else ""

    def __enter__(self) -> HostLines:
        self._progress.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._progress.stop()

    def notifier(self, host: str) -> Notify:
        def notify(name: str, what: str) -> None:
            self._progress.console.print(f"{name}: {what}", highlight=False)
            if what == "ready" or what.startswith("failed"):
                self._done[host] += 1
            self._progress.update(self._tasks[host], count=self._count(host), status=escape(f"{name}: {what}"))

        return notify

    def finish(self, host: str, summary: str, ok: bool = True) -> None:
        status = escape(summary) if ok else f"[red]failed[/]: {escape(summary)}"
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        self._progress.update(self._tasks[host], count=self._count(host), status=status, mark=mark)
        self._progress.stop_task(self._tasks[host])


def outcome_summary(outcomes: list[Outcome]) -> str:
    """`2 unchanged, 1 created` for a host's line."""
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    return ", ".join(f"{n} {action}" for action, n in counts.items()) or "nothing to do"


@dataclass(slots=True)
class ContainerReport:
    spec: ContainerSpec | None
    outcome: Outcome
    pulled: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.outcome.ok and not self.errors


def merge_reports(
    outcomes: list[Outcome], specs: list[ContainerSpec], pulls: list[PullResult], loads: list[PreloadResult]
) -> list[ContainerReport]:
    by_name = {s.name: s for s in specs}
    reports = {o.name: ContainerReport(by_name.get(o.name), o) for o in outcomes}
    for pull in pulls:
        report = reports.get(pull.container)
        if report is None:
            continue
        if pull.ok:
            report.pulled.append(pull.model)
        else:
            report.errors.append(f"pull {pull.model}: {pull.error}" if pull.model != "*" else pull.error)
    for load in loads:
        report = reports.get(load.container)
        if report is None:
            continue
        if load.ok:
            report.loaded.append(load.model)
        else:
            report.errors.append(f"load {load.model}: {load.error}")
    return list(reports.values())


def up_table(catalog: Catalog, reports: list[ContainerReport]) -> Table:
    table = Table(title=f"ollama-router up: {catalog.path}")
    hosts = bool(catalog.hosts)
    for column in ("container", *(("host",) if hosts else ()), "action", "GPUs", "address", "models", "result"):
        table.add_column(column, overflow="fold")
    for report in reports:
        spec = report.spec
        gpus = ",".join(map(str, spec.gpus)) if spec and spec.gpus else "-"
        models = []
        for model in catalog.models_on(report.outcome.name):
            notes = [w for w, hit in (("pulled", model.tag in report.pulled), ("loaded", model.tag in report.loaded)) if hit]
            models.append(model.tag + (f" ({', '.join(notes)})" if notes else ""))
        problems = ([report.outcome.message] if not report.outcome.ok else []) + report.errors
        result = "[green]ok[/]" if report.ok else "[red]failed[/]: " + "; ".join(problems)
        if report.ok and report.outcome.message:
            result += f" ({report.outcome.message})"
        address = spec.url if spec else "-"
        host = (report.outcome.host or "-",) if hosts else ()
        table.add_row(report.outcome.name, *host, report.outcome.action, gpus, address, "\n".join(models) or "-", result)
    return table


def down_table(project: str, outcomes: list[Outcome], hosts: bool = False) -> Table:
    table = Table(title=f"ollama-router down: project {project}")
    for column in ("container", *(("host",) if hosts else ()), "docker name", "result"):
        table.add_column(column)
    for outcome in outcomes:
        result = outcome.action if outcome.ok else f"[red]failed[/]: {outcome.message}"
        host = (outcome.host or "-",) if hosts else ()
        table.add_row(outcome.name, *host, outcome.docker_name or "-", result)
    return table


def status_table(title: str, rows: list[StatusRow], hosts: bool = False) -> Table:
    table = Table(title=title)
    for column in ("container", "state", *(("host",) if hosts else ()), "GPUs", "image", "health", "loaded models", "uptime"):
        table.add_column(column, overflow="fold")
    for row in rows:
        loaded = "?" if row.loaded is None and row.url else ("\n".join(row.loaded) if row.loaded else "-")
        host = (row.host or "-",) if hosts else ()
        table.add_row(row.container, row.state, *host, row.gpus, row.image, row.health, loaded, row.uptime)
    return table
