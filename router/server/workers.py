"""`serve --workers N`: N router processes on one port (SO_REUSEPORT).

The parent loads the catalog, reserves the address (a socket bound with
SO_REUSEPORT, never listening, so the kernel hands it no connections; it also
turns port 0 into a real port every worker shares), forks N workers and
supervises them: a worker that dies is started again, SIGINT/SIGTERM stop them
all. Each worker binds its own listening socket on that port with
SO_REUSEPORT, and the kernel spreads new connections over them.

A SIGHUP to the supervisor (or a worker's `POST /router/reload`, which sends
one) is passed on to every worker, and each reloads its catalog; a worker
started again after a crash reads the catalog file as it is then.

Each worker is a whole router: its own fleet state, health probes and
keep-warm. Nothing is shared, so nothing can go stale between processes:
every worker learns by itself (probes, passive health) that a container is
down, and none routes on another's outdated view. The cost is N times the
probe traffic (four small GETs per container per `health_interval`) and up to
N keep-alive pings for a model near its expiry, which Ollama answers without
generating. A container's in-flight cap (`num_parallel`) is divided among the
workers (rounded up), so together they do not oversubscribe it; its queue
(`max_queue`) is per worker. With `--redis` the workers hold the caps, queues
and key limits in Redis instead, exactly as replicas do, and nothing is divided.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

import structlog

from router.catalog import Catalog
from router.settings import RouterSettings

log = structlog.get_logger("router.workers")

RESTART_BACKOFF_S = 1.0
STOP_TIMEOUT_S = 10.0
START_GRACE_S = 10.0  # a worker exiting 1 sooner than this failed to start


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and never listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def capacity_shares(settings: RouterSettings) -> int:
    """Into how many parts each container's `num_parallel` is divided: one per worker, unless
    the workers share Redis-held slots (then the cap is exact across them)."""
    return 1 if settings.redis_url else settings.workers


def share_capacity(catalog: Catalog, workers: int) -> Catalog:
    """Each container's `num_parallel` divided among the workers, rounded up."""
    if workers <= 1:
        return catalog
    containers = {
        name: dataclasses.replace(c, num_parallel=max(1, -(-c.num_parallel // workers)))
        for name, c in catalog.containers.items()
    }
    return dataclasses.replace(catalog, containers=containers)


def supervise(workers: int, serve_worker: Callable[[int], int]) -> int:
    """Fork `workers` processes running `serve_worker(index)`; restart those that die.
    A SIGHUP (a reload) is passed on to every worker."""
    context = multiprocessing.get_context("fork")
    stopping = False
    reload_asked = False
    procs: dict[int, BaseProcess] = {}
    started: dict[int, float] = {}

    def start(index: int) -> None:
        proc = context.Process(target=_child, args=(serve_worker, index), name=f"router-worker-{index}", daemon=False)
        proc.start()
        procs[index] = proc
        started[index] = time.monotonic()
        log.info("worker_started", worker=index, pid=proc.pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    def ask_reload(signum: int, _frame: object) -> None:
        nonlocal reload_asked
        reload_asked = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, ask_reload)
    try:
        for index in range(workers):
            start(index)
        failed_at_start = 0
        while not stopping:
            time.sleep(0.2)
            if reload_asked:
                reload_asked = False
                for proc in procs.values():
                    if proc.is_alive() and proc.pid is not None:
                        os.kill(proc.pid, signal.SIGHUP)
            for index, proc in list(procs.items()):
                if stopping or proc.is_alive():
                    continue
                log.warning("worker_exited", worker=index, pid=proc.pid, exitcode=proc.exitcode)
                if proc.exitcode == 1 and time.monotonic() - started[index] < START_GRACE_S:
                    failed_at_start += 1
                    if failed_at_start >= 3:
                        stopping = True  # a worker that cannot start (port, keys file): give up
                        break
                time.sleep(RESTART_BACKOFF_S)
                start(index)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for proc in procs.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in procs.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(5)
    codes = [proc.exitcode for proc in procs.values()]
    return 0 if all(code in (0, -signal.SIGTERM) for code in codes) else 1


def _child(serve_worker: Callable[[int], int], index: int) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)  # the worker's event loop installs its own
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until its loop listens: a reload must not kill it
    sys.exit(serve_worker(index))
