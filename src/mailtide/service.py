"""`mailtide serve`: the worker, the HTTP API and the other background services in one process.

Every part is a BackgroundService: `run()` works until `stop(grace)` asks it to finish. The
Service starts them all, and when a stop is requested (SIGTERM/SIGINT, wired by the command) or
one of them ends on its own, stops them all together: the API stops accepting connections, the
worker stops claiming, finishes in-flight jobs for up to the grace period, then cancels and
releases the rest back to the queue. The whole shutdown is bounded by grace + SHUTDOWN_MARGIN.

Optional services (the periodic scheduler, Pub/Sub listeners) plug in through
`optional_services()`: a factory per feature, each returning None when the feature is absent or
not configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import uvicorn
from fastapi import APIRouter, FastAPI

from mailtide.api import create_api
from mailtide.config import ConfigError, Settings
from mailtide.queue.worker import Worker
from mailtide.runtime import Runtime

logger = logging.getLogger(__name__)

SHUTDOWN_MARGIN_SECONDS = 5.0
API_GRACE_SECONDS = 3.0  # open HTTP requests get this long to finish at shutdown


class ServiceFailed(Exception):
    """A part of the service stopped with an error (the service stopped the others and exits)."""


class BackgroundService(Protocol):
    name: str

    async def run(self) -> None:
        """Work until stop() is called (or fail)."""

    async def stop(self, grace_seconds: float) -> None:
        """Ask run() to return, finishing what is in progress within `grace_seconds`. Must not block."""


@dataclass
class WorkerService:
    worker: Worker
    name: str = "worker"
    running: bool = False  # for /readyz
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)

    async def run(self) -> None:
        self.running = True
        self._task = asyncio.current_task()
        try:
            await self.worker.run()
        finally:
            self.running = False

    async def stop(self, grace_seconds: float) -> None:
        self.worker.request_stop(grace_seconds)
        if grace_seconds <= 0 and self._stopping and self._task is not None and not self._task.done():
            # Forced while draining: the drain's wait cannot be shortened, so stop the worker now and
            # give its in-flight jobs back to the queue ourselves (release is guarded: never twice).
            in_flight = self.worker.running_jobs
            self._task.cancel()
            released = await self.worker.queue.release(in_flight)
            logger.warning("service.worker_forced jobs_released=%d", released)
        self._stopping = True


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the Service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the API's listening socket up front, so a busy port fails at start with a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto TCP: asyncio then sets TCP_NODELAY on accepted connections (no 40 ms Nagle stalls).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"api_host/api_port: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(128)
    return sock


@dataclass
class ApiService:
    app: FastAPI
    sock: socket.socket
    name: str = "api"
    server: uvicorn.Server = field(init=False)

    def __post_init__(self) -> None:
        config = uvicorn.Config(
            self.app,
            log_config=None,  # keep mailtide's logging
            access_log=False,
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=int(API_GRACE_SECONDS),
        )
        self.server = _EmbeddedServer(config)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def run(self) -> None:
        logger.info("api.listening url=%s", self.url)
        await self.server.serve(sockets=[self.sock])

    async def stop(self, grace_seconds: float) -> None:
        self.server.should_exit = True
        if grace_seconds <= 0:
            self.server.force_exit = True


ServiceFactory = Callable[[Runtime], "BackgroundService | None"]


def optional_services(runtime: Runtime) -> list[BackgroundService]:
    """The periodic scheduler and Pub/Sub listeners, for whichever of them exists and is configured."""
    found: list[BackgroundService] = []
    for factory in _optional_factories():
        service = factory(runtime)
        if service is not None:
            found.append(service)
    return found


def _optional_factories() -> list[ServiceFactory]:
    # Each feature module exposes `background_service(runtime) -> BackgroundService | None`.
    factories: list[ServiceFactory] = []
    for module_name in ("mailtide.queue.periodic", "mailtide.pubsub.service"):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                continue  # the feature is not part of this build
            raise
        factory = getattr(module, "background_service", None)
        if factory is not None:
            factories.append(factory)
    return factories


def extra_api_routers(runtime: Runtime) -> tuple[list[APIRouter], list[str]]:
    """Routers other features mount on the API (e.g. the Pub/Sub push endpoint) and their public paths."""
    try:
        push = importlib.import_module("mailtide.pubsub.push")
    except ModuleNotFoundError as exc:
        if exc.name is not None and "mailtide.pubsub.push".startswith(exc.name):
            return [], []  # the feature is not part of this build
        raise
    router_for = getattr(push, "api_router", None)
    if router_for is None:
        return [], []
    router = router_for(runtime)
    if router is None:
        return [], []
    return [router], list(getattr(push, "PUBLIC_PATHS", ()))


class Service:
    """Runs background services together and stops them together, within a bounded time."""

    def __init__(self, services: Sequence[BackgroundService], *, grace_seconds: float) -> None:
        self.services = list(services)
        self.grace_seconds = grace_seconds
        self._stop = asyncio.Event()
        self._force = False
        self._forced: set[asyncio.Task[None]] = set()

    def request_stop(self) -> None:
        """First call: graceful stop. A second call: stop now (in-flight jobs are released at once)."""
        if self._stop.is_set():
            self._force = True
            logger.warning("service.forced_stop")
            loop = asyncio.get_running_loop()
            for service in self.services:
                task = loop.create_task(service.stop(0.0))
                self._forced.add(task)
                task.add_done_callback(self._forced.discard)
        self._stop.set()

    async def run(self) -> None:
        tasks = {asyncio.create_task(s.run(), name=f"service-{s.name}"): s for s in self.services}
        stop_wait = asyncio.create_task(self._stop.wait())
        logger.info("service.started parts=%s", ",".join(s.name for s in self.services))
        try:
            done, _ = await asyncio.wait({*tasks, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            for task in done & tasks.keys():
                # A part ended on its own: that is a failure of the whole service.
                error = task.exception() if not task.cancelled() else None
                logger.error("service.part_ended part=%s error=%r", tasks[task].name, error)
        finally:
            stop_wait.cancel()
            await self._shutdown(tasks)
        for task, service in tasks.items():
            if not task.cancelled() and task.exception() is not None:
                raise ServiceFailed(f"the {service.name} of the service failed") from task.exception()

    async def _shutdown(self, tasks: dict[asyncio.Task[None], BackgroundService]) -> None:
        grace = 0.0 if self._force else self.grace_seconds
        logger.info("service.stopping grace=%.1fs", grace)
        for service in self.services:
            try:
                await service.stop(grace)
            except Exception:
                logger.exception("service.stop_failed part=%s", service.name)
        pending = [t for t in tasks if not t.done()]
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace + SHUTDOWN_MARGIN_SECONDS)
            for task in still:
                logger.error("service.stop_timeout part=%s: cancelling", tasks[task].name)
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        # A forced stop releases in-flight jobs in tasks of its own: let them finish before the runtime closes.
        await asyncio.gather(*self._forced, return_exceptions=True)
        logger.info("service.stopped")


def build_service(
    runtime: Runtime,
    settings: Settings,
    *,
    sock: socket.socket | None = None,
    extra: Iterable[BackgroundService] = (),
) -> tuple[Service, ApiService, WorkerService]:
    """The worker, the API on `sock` (default: bound to api_host:api_port) and the optional services."""
    worker = WorkerService(runtime.worker())
    routers, public_paths = extra_api_routers(runtime)
    app = create_api(
        runtime, settings, worker_running=lambda: worker.running, extra_routers=routers, public_paths=public_paths
    )
    api = ApiService(app, sock or bind_socket(settings.api_host, settings.api_port))
    parts: list[BackgroundService] = [worker, api, *optional_services(runtime), *extra]
    return Service(parts, grace_seconds=settings.shutdown_grace_seconds), api, worker
