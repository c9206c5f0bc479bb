"""Load a catalog YAML file into a `Catalog`, refusing bad input with `file:line: message`.

YAML is composed into nodes first so that every key and list item keeps its
line; pydantic and the cross-reference checks report against those lines.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from router.catalog.model import (
    DEFAULT_IMAGE,
    DEFAULT_KEEP_ALIVE,
    DEFAULT_NUM_PARALLEL,
    LOCAL,
    LOCAL_HOST,
    Catalog,
    CatalogSpec,
    Container,
    ContainerSpec,
    DefaultsSpec,
    Host,
    HostSpec,
    Model,
    ModelSpec,
    TlsFiles,
    Toleration,
    default_routing,
)
from router.catalog.names import MAX_NAME_CHARS, InvalidModelName, is_cloud_name, parse_model_name
from router.catalog.placement import url_host

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        # one problem, one line: a name holding a line break must not split it
        return f"{self.path}:{self.line}: {self.message.translate(_ONE_LINE)}"


# Every character str.splitlines() breaks on, shown escaped.
_ONE_LINE = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


class CatalogError(Exception):
    """One or more problems that make the catalog unusable."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class LoadResult:
    catalog: Catalog
    warnings: list[Problem]


# ---------------------------------------------------------------------------
# YAML with line marks


def _key_text(node: yaml.Node) -> str:
    """A mapping key as the loaded document spells it (`~` is None, `0x1F` is 31), to match pydantic's locs."""
    if not isinstance(node, yaml.ScalarNode):
        return str(node.start_mark)
    try:
        value = yaml.constructor.SafeConstructor().construct_object(node)
    except Exception:
        return str(node.value)
    return str(int(value) if isinstance(value, bool) else value)  # pydantic's loc holds `yes:` as 1


def _walk(
    node: yaml.Node,
    path: Path_,
    lines: dict[Path_, int],
    dupes: list[tuple[Path_, int]],
    seen_nodes: set[int] | None = None,
) -> None:
    # An alias (`*x`) is the very node its anchor marks: walk each node once, so a
    # recursive anchor cannot loop forever and a "billion laughs" stays linear.
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = _key_text(key_node)
            child = (*path, key)
            if key in seen:
                dupes.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines, dupes, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines, dupes, seen_nodes)


class _Lines:
    """Line numbers by path into the document, falling back to the nearest parent."""

    def __init__(self, lines: dict[Path_, int]) -> None:
        self._lines = lines

    def __call__(self, *path: str | int) -> int:
        return self._match(path)[0]

    def known(self, *path: str | int) -> list[str]:
        """The parts of a pydantic loc that are in the document (union member names dropped)."""
        return [str(part) for part in self._match(path)[1]]

    def _match(self, path: tuple[str | int, ...]) -> tuple[int, Path_]:
        best, current = 1, cast(Path_, ())
        for part in path:
            candidate = (*current, str(part) if not isinstance(part, int) else part)
            if candidate not in self._lines and isinstance(part, int):
                candidate = (*current, str(part))  # a mapping key YAML read as a number
            if candidate not in self._lines:
                continue  # pydantic inserts type names into union locs
            current = candidate
            best = self._lines[current]
        return best, current


class _Loader(yaml.SafeLoader):
    """SafeLoader whose constructors fail with a marked YAML error, never a bare one.

    An explicit tag on a value it does not fit (`!!int abc`, `!!timestamp x`)
    makes PyYAML's constructors raise ValueError or AttributeError without a line.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.tag} value {node.value!r} ({exc})", node.start_mark
            ) from None


def _parse_yaml(text: str, file: str) -> tuple[Any, _Lines]:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark and exc.context_mark.line + 1 != line:
            what += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise CatalogError([Problem(file, line, f"YAML syntax error: {what}")]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow; it has a position, not a mark
        line = len(re.findall(r"\r\n|[\r\n\x85\u2028\u2029]", text[: exc.position])) + 1
        raise CatalogError([Problem(file, line, f"YAML syntax error: character {exc.character!r} is not allowed")]) from None
    except yaml.YAMLError as exc:
        raise CatalogError([Problem(file, 1, f"YAML error: {exc}")]) from None
    except RecursionError:
        raise CatalogError([Problem(file, 1, "YAML nested too deeply")]) from None
    lines: dict[Path_, int] = {}
    dupes: list[tuple[Path_, int]] = []
    if node is not None:
        _walk(node, (), lines, dupes)
    if dupes:
        raise CatalogError(
            [Problem(file, line, f"duplicate key '{path[-1]}'") for path, line in dupes]
        )
    return data, _Lines(lines)


# ---------------------------------------------------------------------------
# pydantic errors to file:line


def _describe(error: Any, line: _Lines) -> tuple[str, str]:
    """(where, message) of one pydantic error, `where` naming the document's own keys."""
    raw = list(error["loc"])
    loc = line.known(*raw)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = ".".join(loc[:-1])
        return parent, f"unknown key '{raw[-1]}'" + (f" in {parent}" if parent else "")
    if kind == "missing":
        parent = ".".join(loc)
        return parent, f"missing required key '{raw[-1]}'" + (f" in {parent}" if parent else "")
    where = ".".join(loc) or "catalog"
    if "[key]" in raw:
        where += " (the key)"
    return where, str(error["msg"]).removeprefix("Value error, ")


def _schema_problems(exc: ValidationError, file: str, line: _Lines) -> list[Problem]:
    """One problem per offending value: a union's several 'should be' messages are joined."""
    messages: dict[tuple[int, str], list[str]] = {}
    plain: dict[tuple[int, str], None] = {}
    for error in exc.errors():
        where, message = _describe(error, line)
        at = line(*error["loc"])
        if error["type"] in ("extra_forbidden", "missing"):
            plain.setdefault((at, message))
            continue
        known = messages.setdefault((at, where), [])
        if message not in known:
            known.append(message)
    problems = [Problem(file, at, message) for at, message in plain]
    for (at, where), found in messages.items():
        alternatives = [found[0], *(m.removeprefix("Input should be ") for m in found[1:])]
        problems.append(Problem(file, at, f"{where}: {' or '.join(alternatives)}"))
    return problems


# ---------------------------------------------------------------------------
# cross-reference checks


def _merge(defaults: DefaultsSpec, spec: ContainerSpec, name: str, hosts: dict[str, Host]) -> Container:
    env = {**(defaults.env or {}), **(spec.env or {})}
    command = spec.command if spec.command is not None else defaults.command
    if isinstance(command, str):
        command = command.split()
    managed = spec.url is None
    host = hosts.get(spec.host or LOCAL_HOST, LOCAL)
    url = spec.url.rstrip("/") if spec.url else f"http://{url_host(host.address)}:{spec.port}"
    node_selector = spec.node_selector if spec.node_selector is not None else defaults.node_selector
    tolerations = spec.tolerations if spec.tolerations is not None else defaults.tolerations
    return Container(
        name=name,
        url=url,
        managed=managed,
        gpus=tuple(spec.gpus or ()),
        port=spec.port,
        image=spec.image or defaults.image or DEFAULT_IMAGE,
        command=tuple(command or ()),
        env=tuple(sorted((k, _env_value(v)) for k, v in env.items())),
        volumes=tuple(spec.volumes if spec.volumes is not None else defaults.volumes or ()),
        network=spec.network or defaults.network or "host",
        num_parallel=spec.num_parallel or defaults.num_parallel or DEFAULT_NUM_PARALLEL,
        keep_alive=_first(spec.keep_alive, defaults.keep_alive, DEFAULT_KEEP_ALIVE),
        max_loaded_models=_first(spec.max_loaded_models, defaults.max_loaded_models, None),
        host=host.name,
        node_selector=tuple(sorted((node_selector or {}).items())),
        tolerations=tuple(Toleration(**t.model_dump()) for t in tolerations or ()),
        storage=_first(spec.storage, defaults.storage, None),
    )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _env_value(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _valid_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "-_." for c in name)


# What only a managed container can have: a remote one is not provisioned.
_MANAGED_ONLY = ("gpus", "image", "command", "volumes", "network", "host", "node_selector", "tolerations", "storage")


def _check_containers(spec: CatalogSpec, file: str, line: _Lines) -> tuple[list[Problem], list[Problem]]:
    errors: list[Problem] = []
    warnings: list[Problem] = []
    # GPUs and ports are claimed per host: GPU 0 of one box is not GPU 0 of another.
    ports: dict[tuple[str, int], str] = {}
    gpu_owner: dict[tuple[str, int], str] = {}
    for name, container in spec.containers.items():
        if not _valid_name(name):
            errors.append(Problem(file, line("containers", name), f"container name '{name}' may hold only letters, digits, '-', '_' and '.'"))
        if container.url is not None:
            clashing = [k for k in _MANAGED_ONLY if getattr(container, k) is not None]
            if clashing:
                errors.append(Problem(file, line("containers", name, "url"),
                                      f"container '{name}' has a url (not managed here) and also {', '.join(clashing)}: a remote container is not provisioned, drop one"))
            if not container.url.startswith(("http://", "https://")):
                errors.append(Problem(file, line("containers", name, "url"), f"url '{container.url}' must start with http:// or https://"))
        elif container.port is None:
            errors.append(Problem(file, line("containers", name),
                                  f"container '{name}' needs a port (where its Ollama listens) or a url (a server that runs elsewhere)"))
        if container.host is not None and container.host not in spec.hosts:
            errors.append(Problem(file, line("containers", name, "host"), f"container '{name}' names host '{container.host}', which is not in hosts:"))
        host = container.host or LOCAL_HOST
        on_host = f" on host '{host}'" if spec.hosts else ""
        for index, gpu in enumerate(container.gpus or ()):
            owner = gpu_owner.get((host, gpu))
            if gpu < 0:
                errors.append(Problem(file, line("containers", name, "gpus", index), f"GPU index {gpu} is negative"))
            elif owner == name:
                errors.append(Problem(file, line("containers", name, "gpus", index), f"GPU {gpu} is listed twice for container '{name}'"))
            elif owner is not None:
                warnings.append(Problem(file, line("containers", name, "gpus", index),
                                        f"GPU {gpu} is shared by containers '{owner}' and '{name}'{on_host}"))
            else:
                gpu_owner[(host, gpu)] = name
        if container.port is not None:
            if (host, container.port) in ports:
                errors.append(Problem(file, line("containers", name, "port"),
                                      f"port {container.port} is already used by container '{ports[(host, container.port)]}'{on_host}"))
            else:
                ports[(host, container.port)] = name
    return errors, warnings


def _check_hosts(spec: CatalogSpec, file: str, line: _Lines) -> tuple[list[Problem], list[Problem]]:
    errors: list[Problem] = []
    warnings: list[Problem] = []
    used = {c.host or LOCAL_HOST for c in spec.containers.values() if c.url is None}
    for name, host in spec.hosts.items():
        if not _valid_name(name):
            errors.append(Problem(file, line("hosts", name), f"host name '{name}' may hold only letters, digits, '-', '_' and '.'"))
        if host.tls is not None:
            if not host.docker.startswith("tcp://"):
                errors.append(Problem(file, line("hosts", name, "tls"), f"host '{name}': tls is for tcp:// engines only (docker is {host.docker})"))
            if (host.tls.cert is None) != (host.tls.key is None):
                errors.append(Problem(file, line("hosts", name, "tls"), f"host '{name}': tls needs both cert and key, or neither"))
        if name not in used:
            warnings.append(Problem(file, line("hosts", name), f"host '{name}' runs no container"))
    return errors, warnings


def _resolve_hosts(spec: CatalogSpec, file: str) -> dict[str, Host]:
    """Hosts with TLS file paths made absolute, relative to the catalog file."""
    base = Path(file).resolve().parent

    def path(value: str | None) -> str | None:
        return None if value is None else str(base / Path(value).expanduser())

    def host(name: str, entry: HostSpec) -> Host:
        tls = None if entry.tls is None else TlsFiles(path(entry.tls.ca), path(entry.tls.cert), path(entry.tls.key))
        return Host(name, entry.docker, entry.address, tls)

    return {name: host(name, entry) for name, entry in spec.hosts.items()}


def _check_models(spec: CatalogSpec, file: str, line: _Lines) -> tuple[list[Problem], dict[str, str]]:
    """Names, container references, aliases. Returns problems and raw tag -> model key."""
    errors: list[Problem] = []
    keys: dict[str, str] = {}
    key_owner: dict[str, str] = {}
    for tag, model in spec.models.items():
        try:
            key = parse_model_name(tag).key
        except InvalidModelName as exc:
            errors.append(Problem(file, line("models", tag), f"'{tag}' is not a valid Ollama model name ({exc})"))
            continue
        if key in key_owner:
            errors.append(Problem(file, line("models", tag), f"model '{tag}' is the same model as '{key_owner[key]}'"))
            continue
        key_owner[key] = tag
        keys[tag] = key
        for index, container in enumerate(model.containers):
            if container not in spec.containers:
                errors.append(Problem(file, line("models", tag, "containers", index),
                                      f"model '{tag}' names container '{container}', which is not in containers:"))
        for name, count in Counter(model.containers).items():
            if count > 1:
                errors.append(Problem(file, line("models", tag, "containers"), f"container '{name}' is listed twice for model '{tag}'"))

    alias_owner: dict[str, str] = {}
    for tag, model in spec.models.items():
        for index, alias in enumerate(model.aliases):
            where = line("models", tag, "aliases", index)
            alias_lower = alias.strip().lower()
            try:
                alias_key = parse_model_name(alias).key
            except InvalidModelName:
                alias_key = None
            clash_model = next((t for t, k in keys.items() if t.lower() == alias_lower or k == alias_key), None)
            if not alias_lower:
                errors.append(Problem(file, where, "empty alias"))
            elif len(alias) > MAX_NAME_CHARS:
                errors.append(Problem(file, where, f"alias is {len(alias)} characters long; clients can send at most {MAX_NAME_CHARS}"))
            elif clash_model is not None:
                errors.append(Problem(file, where, f"alias '{alias}' is the name of model '{clash_model}'"))
            elif alias_lower in alias_owner or (alias_key and alias_key in alias_owner):
                other = alias_owner.get(alias_lower) or alias_owner.get(alias_key or "")
                errors.append(Problem(file, where, f"alias '{alias}' is already an alias of model '{other}'"))
            else:
                alias_owner[alias_lower] = tag
                if alias_key:
                    alias_owner[alias_key] = tag
    return errors, keys


def _check_fallbacks(spec: CatalogSpec, keys: dict[str, str], file: str, line: _Lines) -> tuple[list[Problem], dict[str, tuple[str, ...]]]:
    errors: list[Problem] = []
    tag_by_key = {k: t for t, k in keys.items()}
    graph: dict[str, tuple[str, ...]] = {}
    for tag, model in spec.models.items():
        if tag not in keys:
            continue
        targets: list[str] = []
        for index, fallback in enumerate(model.fallback):
            try:
                target = parse_model_name(fallback).key
            except InvalidModelName:
                target = None
            if target is None or target not in tag_by_key:
                errors.append(Problem(file, line("models", tag, "fallback", index),
                                      f"fallback '{fallback}' of model '{tag}' is not a model in this catalog"))
            elif target == keys[tag]:
                errors.append(Problem(file, line("models", tag, "fallback", index), f"model '{tag}' falls back to itself"))
            else:
                targets.append(target)
        graph[keys[tag]] = tuple(targets)

    # A cycle is reported once, at the fallback entry that closes it.
    state: dict[str, int] = {}

    def visit(key: str, trail: list[str]) -> None:
        state[key] = 1
        for _index, target in enumerate(graph.get(key, ())):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target):], key, target] if target in trail else [key, target]
                names = " -> ".join(tag_by_key[k] for k in cycle)
                tag = tag_by_key[key]
                fb_index = next(i for i, f in enumerate(spec.models[tag].fallback) if _key(f) == target)
                errors.append(Problem(file, line("models", tag, "fallback", fb_index), f"fallback cycle: {names}"))
            elif state.get(target) is None:
                visit(target, [*trail, key])
        state[key] = 2

    for key in graph:
        if key not in state:
            visit(key, [])
    return errors, graph


def _key(name: str) -> str | None:
    try:
        return parse_model_name(name).key
    except InvalidModelName:
        return None


GO_FALSE = frozenset({"", "0", "f", "F", "false", "FALSE", "False"})  # what Ollama's env switches read as off


def _check_context_lengths(
    spec: CatalogSpec, containers: dict[str, Container], file: str, line: _Lines
) -> tuple[list[Problem], dict[str, int]]:
    """Models that share a container pin one context window: the container's
    OLLAMA_CONTEXT_LENGTH, which also sizes their loads from the /v1 APIs (they
    cannot name a num_ctx). Returns problems and each container's window."""
    errors: list[Problem] = []
    windows: dict[str, int] = {}
    owner: dict[str, str] = {}
    for tag, model in spec.models.items():
        if model.context_length is None:
            continue
        for name in model.containers:
            if name not in windows:
                windows[name], owner[name] = model.context_length, tag
            elif windows[name] != model.context_length:
                errors.append(Problem(file, line("models", tag, "context_length"),
                                      f"model '{tag}' pins context_length {model.context_length} on container '{name}', "
                                      f"where model '{owner[name]}' pins {windows[name]}: models that share a container "
                                      "share its window (OLLAMA_CONTEXT_LENGTH)"))
    for name, window in windows.items():
        set_in_env = dict(containers[name].env).get("OLLAMA_CONTEXT_LENGTH")
        if set_in_env is not None and set_in_env.strip() != str(window):
            where = ("containers", name, "env") if "OLLAMA_CONTEXT_LENGTH" in (spec.containers[name].env or {}) else ("defaults", "env")
            errors.append(Problem(file, line(*where, "OLLAMA_CONTEXT_LENGTH"),
                                  f"OLLAMA_CONTEXT_LENGTH {set_in_env} for container '{name}' disagrees with "
                                  f"context_length {window} of model '{owner[name]}'"))
    return errors, windows


def _advice(spec: CatalogSpec, containers: dict[str, Container], file: str, line: _Lines) -> list[Problem]:
    """What is valid but will not do what it seems to."""
    warnings: list[Problem] = []
    for tag, model in spec.models.items():
        if model.on_overflow == "refuse":
            warnings.append(Problem(file, line("models", tag, "on_overflow"),
                                    f"on_overflow refuse: requests to '{tag}' through /api are refused when too long, but "
                                    "Ollama's /v1 APIs cannot turn the context shift off: a /v1 request reloads the model "
                                    "with the shift on (unless its family never shifts, as deepseek2)"))
        if is_cloud_name(tag):
            for name in model.containers:
                container = containers[name]
                if container.managed and dict(container.env).get("OLLAMA_NO_CLOUD", "1") not in GO_FALSE:
                    warnings.append(Problem(file, line("models", tag),
                                            f"cloud model '{tag}' is on managed container '{name}', which runs with "
                                            "OLLAMA_NO_CLOUD=1: set OLLAMA_NO_CLOUD: \"0\" in its env to reach ollama.com"))
    return warnings


def _default_capabilities(tag: str) -> tuple[str, ...]:
    return ("embedding",) if "embed" in tag.lower() else ("completion",)


def build_catalog(spec: CatalogSpec, file: str, line: _Lines) -> LoadResult:
    container_errors, warnings = _check_containers(spec, file, line)
    host_errors, host_warnings = _check_hosts(spec, file, line)
    model_errors, keys = _check_models(spec, file, line)
    fallback_errors, graph = _check_fallbacks(spec, keys, file, line)
    errors = container_errors + host_errors + model_errors + fallback_errors
    if errors:
        raise CatalogError(errors)

    defaults = spec.defaults
    hosts = _resolve_hosts(spec, file)
    warnings += host_warnings
    containers = {name: _merge(defaults, c, name, hosts) for name, c in spec.containers.items()}
    window_errors, windows = _check_context_lengths(spec, containers, file, line)
    if window_errors:
        raise CatalogError(window_errors)
    containers = {name: replace(c, context_length=windows.get(name)) for name, c in containers.items()}
    warnings.extend(_advice(spec, containers, file, line))
    tag_by_key = {k: parse_model_name(t).display for t, k in keys.items()}
    models: dict[str, Model] = {}
    aliases: dict[str, str] = {}
    for tag, model in spec.models.items():
        key = keys[tag]
        name = parse_model_name(tag)
        first_container = containers[model.containers[0]]
        models[key] = Model(
            tag=name.display,
            key=key,
            containers=tuple(model.containers),
            aliases=tuple(model.aliases),
            fallback=tuple(tag_by_key[k] for k in graph[key]),
            context_length=model.context_length,
            keep_alive=_first(model.keep_alive, first_container.keep_alive, defaults.keep_alive, DEFAULT_KEEP_ALIVE),
            owned_by=model.owned_by or name.owned_by,
            capabilities=tuple(model.capabilities) if model.capabilities else _default_capabilities(tag),
            description=model.description,
            on_overflow=model.on_overflow or "truncate",
            routing=model.routing or default_routing(len(model.containers)),
        )
        for alias in model.aliases:
            aliases[alias.strip().lower()] = key
            alias_key = _key(alias)
            if alias_key:
                aliases[alias_key] = key

    used = {c for m in spec.models.values() for c in m.containers}
    for container_name in spec.containers:
        if container_name not in used:
            warnings.append(Problem(file, line("containers", container_name), f"container '{container_name}' serves no model"))

    catalog = Catalog(
        path=file,
        version=spec.version,
        containers=containers,
        models=models,
        aliases=aliases,
        router=spec.router.model_dump(exclude_none=True),
        hosts=hosts,
    )
    return LoadResult(catalog, sorted(warnings, key=lambda p: p.line))


def parse_catalog(text: str, file: str = "<catalog>") -> LoadResult:
    data, line = _parse_yaml(text, file)
    if data is None:
        raise CatalogError([Problem(file, 1, "the catalog is empty (expected version, containers and models)")])
    if not isinstance(data, dict):
        raise CatalogError([Problem(file, 1, "the catalog must be a mapping with version, containers and models")])
    try:
        spec = CatalogSpec.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(_schema_problems(exc, file, line)) from None
    return build_catalog(spec, file, line)


def load_catalog(path: str | Path) -> LoadResult:
    """Read and validate a catalog file; raises CatalogError with file:line problems."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogError([Problem(file, 0, "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError([Problem(file, 0, f"cannot read: {exc}")]) from None
    return parse_catalog(text, file)


__all__ = [
    "DEFAULT_NUM_PARALLEL",
    "Catalog",
    "CatalogError",
    "Container",
    "LoadResult",
    "Model",
    "ModelSpec",
    "Problem",
    "load_catalog",
    "parse_catalog",
]
