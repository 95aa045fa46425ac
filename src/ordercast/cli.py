"""The command line: ``ordercast run | worker | migrate | demo | tenants | apps``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import json
import shlex
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from ordercast import observability
from ordercast.errors import ConfigError, OrdercastError
from ordercast.gateway.server import MAX_FRAME_SIZE
from ordercast.logs import configure_logging
from ordercast.runtime import Runtime
from ordercast.services.directory import app_dict
from ordercast.settings import Settings, load_settings

T = TypeVar("T")

cli = typer.Typer(help="ordercast: the order events hub.", no_args_is_help=True)
apps_cli = typer.Typer(help="Manage apps.", no_args_is_help=True)
tenants_cli = typer.Typer(help="Manage tenants.", no_args_is_help=True)
cli.add_typer(apps_cli, name="apps")
cli.add_typer(tenants_cli, name="tenants")
console = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _default(name: str) -> str:
    """A setting's default as ``--help`` shows it (from the one Settings model)."""
    return str(Settings.model_fields[name].default)


def _env(name: str) -> str:
    return f"ORDERCAST_{name.upper()}"


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar=_env("database_url"),
        show_default=_default("database_url"),
        help="sqlite:///path.db or postgresql://user@host:5432/db",
    ),
]
BusUrl = Annotated[
    str | None,
    typer.Option(
        "--bus-url",
        envvar=_env("bus_url"),
        show_default=_default("bus_url"),
        help="memory:// (one process) or redis://host:6379/0 (several)",
    ),
]
Host = Annotated[
    str | None,
    typer.Option(
        "--host", envvar=_env("host"), show_default=_default("host"), help="address to bind"
    ),
]
HttpPort = Annotated[
    int | None,
    typer.Option(
        "--http-port",
        envvar=_env("http_port"),
        show_default=_default("http_port"),
        help="HTTP port: REST API, docs, metrics, dashboard",
    ),
]
WsPort = Annotated[
    int | None,
    typer.Option(
        "--ws-port",
        envvar=_env("ws_port"),
        show_default=_default("ws_port"),
        help="WebSocket gateway port: Pusher and STOMP",
    ),
]
LogJson = Annotated[
    bool | None,
    typer.Option(
        "--log-json/--log-text",
        envvar=_env("log_json"),
        show_default="text",
        help="one JSON object per log line (for log shippers) or readable text",
    ),
]
LogLevel = Annotated[
    str | None,
    typer.Option(
        "--log-level",
        envvar=_env("log_level"),
        show_default=_default("log_level"),
        help="debug, info, warning or error",
    ),
]


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main())


#: The youngest generation's collection threshold (CPython's default is 700). At a few
#: hundred changes a second a request's objects are still alive at most of those frequent
#: collections, so they get promoted, and the full collections that follow scanned ~230,000
#: objects (110-345 ms each, every 2-7 s) while nothing was garbage: every socket message
#: queued behind one was late by it (docs/benchmarks.md, session 9). Collected 30 times less
#: often, most of them die young, by reference count, before any collection sees them.
GC_GEN0_THRESHOLD = 20_000


def _tune_gc() -> None:
    """Once the process is set up: what exists now (modules, the app, the runtime) lives as
    long as the process, so the collector stops scanning it (``gc.freeze``), and young
    objects are collected less often (:data:`GC_GEN0_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def _with_runtime(settings: Settings, fn: Callable[[Runtime], Awaitable[T]]) -> T:
    try:
        runtime = await Runtime.open(settings)
    except OrdercastError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    try:
        return await fn(runtime)
    finally:
        await runtime.close()


def _print_demo(demo: dict[str, Any], settings: Settings, admin_token: str) -> None:
    base = settings.base_url
    console.print("[bold]Demo credentials[/bold] (shown again by `ordercast demo`):")
    console.print(f"  tenant_id    {demo['tenant_id']}")
    console.print(f"  location_id  {demo['location_id']}")
    console.print(f"  app key      {demo['app_key']}")
    console.print(f"  app secret   {demo['app_secret']}")
    console.print(f"  admin token  {admin_token}")
    console.print('  shell:       eval "$(.venv/bin/ordercast demo --env)"')
    console.print(f"  try:         curl -s -u $OC_KEY:$OC_SECRET {base}/v1/orders")


@cli.command()
def run(
    host: Host = None,
    http_port: HttpPort = None,
    ws_port: WsPort = None,
    database_url: DatabaseUrl = None,
    bus_url: BusUrl = None,
    tls_cert: Annotated[
        str | None,
        typer.Option("--tls-cert", help="PEM certificate chain: serve both ports over TLS"),
    ] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="PEM private key")] = None,
    log_json: LogJson = None,
    log_level: LogLevel = None,
) -> None:
    """Start ordercast in one process: HTTP API and dashboard, WebSocket gateway (Pusher and
    STOMP), webhook delivery and POS timers. Every setting also reads its ORDERCAST_*
    environment variable (shown below); the rest are listed in the README."""
    settings = _settings(
        host=host,
        http_port=http_port,
        ws_port=ws_port,
        database_url=database_url,
        bus_url=bus_url,
        tls_cert=tls_cert,
        tls_key=tls_key,
        log_json=log_json,
        log_level=log_level,
    )
    _run(lambda: _serve(settings))


@cli.command()
def worker(
    host: Host = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            "--http-port",
            envvar=_env("worker_http_port"),
            show_default="none",
            help="serve /health and /metrics on this port (the worker's own attempts and "
            "latencies are counted only here)",
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    bus_url: BusUrl = None,
    log_json: LogJson = None,
    log_level: LogLevel = None,
) -> None:
    """Deliver webhooks and run POS timers in a process of their own, beside `ordercast run`
    nodes started with ORDERCAST_WEBHOOK_WORKER=false: no HTTP, no WebSocket. Any number
    may run on one database (claims are leased). On a redis:// bus it wakes on every order
    change the nodes publish; on memory:// (SQLite, one box) on its polls."""
    settings = _settings(
        host=host,
        worker_http_port=http_port,
        database_url=database_url,
        bus_url=bus_url,
        log_json=log_json,
        log_level=log_level,
    )
    _run(lambda: _work(_worker_defaults(settings)))


def _worker_defaults(settings: Settings) -> Settings:
    """A worker's own defaults where the operator set nothing (docs/benchmarks.md, "Webhook
    delivery in a process of its own"): on memory:// no wake-up crosses processes, so it
    polls every 50 ms instead of 500; on SQLite each claim and each batch of outcomes takes
    the file's one write lock from the serving process, so it claims at most every 100 ms
    while busy instead of 20."""
    given = settings.model_fields_set
    changes: dict[str, float] = {}
    if settings.bus_url.startswith("memory://") and "webhook_poll_seconds" not in given:
        changes["webhook_poll_seconds"] = 0.05
    if settings.database_url.startswith("sqlite") and "webhook_coalesce_seconds" not in given:
        changes["webhook_coalesce_seconds"] = 0.1
    return settings.model_copy(update=changes) if changes else settings


async def _start_delivery(runtime: Runtime) -> None:
    try:
        await runtime.start_delivery()
    except OrdercastError as exc:  # a bad retry schedule
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc


async def _work(settings: Settings) -> None:
    configure_logging(settings.log_level, json_lines=settings.log_json)
    port = settings.worker_http_port
    sock = None if port is None else _listen(settings.host, port, "/health", "--http-port")
    try:
        await _with_runtime(settings, lambda runtime: _deliver(runtime, sock))
    finally:
        if sock is not None:
            sock.close()


async def _deliver(runtime: Runtime, sock: socket.socket | None) -> None:
    """``ordercast worker`` on an opened runtime, until SIGINT or SIGTERM; ``sock``: its
    /health and /metrics port, bound and listening already."""
    import uvicorn

    from ordercast.api.worker import create_worker_app

    settings = runtime.settings
    await _start_delivery(runtime)
    await runtime.start_timers()
    shared = not settings.bus_url.startswith("memory://")
    if shared:
        runtime.follow_bus()
    _tune_gc()
    console.print("[bold green]ordercast worker[/bold green]: webhooks and POS timers")
    console.print(f"  storage      {settings.database_url}")
    console.print(f"  bus          {settings.bus_url}")
    if shared:
        console.print("  wakes        on every order change published on the bus")
    else:
        console.print(
            f"  wakes        every {settings.webhook_poll_seconds:g} s (webhooks) and "
            f"{settings.pos_timer_poll_seconds:g} s (timers): nothing crosses processes "
            "on memory://"
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if sock is None:
        sys.stdout.flush()
        await stop.wait()
        return
    observability.install(runtime)  # the metrics' storage gauges
    config = uvicorn.Config(
        create_worker_app(runtime),
        http="httptools",
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    console.print(f"  health       http://{host}:{port}/health   metrics: /metrics")
    sys.stdout.flush()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    await stop.wait()
    server.should_exit = True
    await serving


def _listen(host: str, port: int, what: str, flag: str) -> socket.socket:
    """Bind and listen now, so that a taken port fails before anything is printed or
    started, with one line that says what to do."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot listen on {host}:{port} for {what}: {exc}")
        raise typer.Exit(2) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        reason = (
            "the port is in use (another ordercast?)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        err.print(
            f"[red]error:[/red] cannot listen on {host}:{port} for {what}: {reason}; "
            f"choose another with {flag} or {_env(flag[2:].replace('-', '_'))}"
        )
        raise typer.Exit(2) from exc
    sock.set_inheritable(True)
    return sock


async def _serve(settings: Settings) -> None:
    import uvicorn

    from ordercast.app import create_app

    configure_logging(settings.log_level, json_lines=settings.log_json)
    tls = _tls_context(settings)
    http_socket = _listen(settings.host, settings.http_port, "the HTTP API", "--http-port")
    try:
        runtime = await Runtime.open(settings)
    except OrdercastError as exc:
        http_socket.close()
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(2) from exc
    try:
        app = create_app(runtime)
        # Served inside this process's loop (uvloop, see ``_run``): uvicorn's ``loop`` option
        # is not used by ``Server.serve``. httptools is a dependency ("auto" would pick it
        # too); no access log. The Date and Server headers stay: uvicorn encodes them once a
        # second, turning them off measured no difference per request.
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.http_port,
            http="httptools",
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=settings.http_keep_alive_seconds,
            # STOMP over WebSocket and SockJS on this port too (gateway/stomp_http.py).
            ws="websockets-sansio",
            ws_max_size=MAX_FRAME_SIZE,
            ssl_certfile=settings.tls_cert,
            ssl_keyfile=settings.tls_key,
            # The client's address (login limits) behind the proxies the gateway port trusts
            # too (ORDERCAST_TRUSTED_PROXIES, parsed once by Runtime.open): X-Forwarded-For.
            proxy_headers=True,
            forwarded_allow_ips=[str(net) for net in runtime.gateway.trusted_proxies],
        )
        server = uvicorn.Server(config)
        runtime.gateway.ssl = tls
        observability.install(runtime)  # metrics sources and the console's fan-out trace
        try:
            await runtime.gateway.start()
        except OSError as exc:
            reason = (
                "the port is in use (another ordercast?)"
                if exc.errno == errno.EADDRINUSE
                else exc.strerror or str(exc)
            )
            err.print(
                f"[red]error:[/red] cannot listen on {settings.host}:{settings.ws_port} for the "
                f"WebSocket gateway: {reason}; choose another with --ws-port or "
                "ORDERCAST_WS_PORT"
            )
            raise typer.Exit(2) from exc
        if settings.webhook_worker:
            await _start_delivery(runtime)
        await runtime.start_timers()  # POS flow: fire times and callback deadlines
        _tune_gc()
        base = settings.base_url
        console.print(f"[bold green]ordercast[/bold green] is starting ({settings.mode} mode)")
        console.print(f"  storage      {settings.database_url}")
        console.print(f"  bus          {settings.bus_url}")
        cluster = runtime.pusher.cluster
        if cluster.registry.shared:
            console.print(f"  cluster      node {cluster.node_id} (prefix {settings.prefix})")
        console.print(f"  HTTP API     {base}/v1")
        console.print(f"  API docs     {base}/docs  (OpenAPI: {base}/openapi.json)")
        console.print(
            f"  health       {base}/health   ready: {base}/ready   metrics: {base}/metrics"
        )
        console.print(f"  dashboard    {base}/dashboard")
        if runtime.delivery is not None:
            console.print(f"  webhooks     delivering ({base}/v1/apps/{{app_id}}/endpoints)")
        else:
            console.print(
                "  webhooks     queued, not delivered here (ORDERCAST_WEBHOOK_WORKER=false): "
                "`ordercast worker` delivers them"
            )
        console.print(f"  WebSocket    {runtime.gateway.url()}")
        console.print(f"  Pusher       {runtime.gateway.url('/app/{app_key}')}")
        console.print(f"  STOMP        {runtime.gateway.url('/ws')}")
        same_origin = base.replace("http", "ws", 1)
        console.print(f"  STOMP (HTTP) {same_origin}/ws  (and SockJS: {base}/ws)")
        console.print(
            f"  Doshii       {base}/partner/v3  socket: {runtime.gateway.url('/app/socket')}"
        )
        if settings.mode == "dev":
            console.print(f"  admin token  {runtime.admin_token}")
            if settings.demo:
                demo, created = await runtime.ensure_demo()
                if demo:
                    if created:
                        console.print("  created a demo tenant, location and app")
                    _print_demo(demo, settings, runtime.admin_token)
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        drains: set[asyncio.Task[None]] = set()

        def drain() -> None:  # SIGUSR1 (`ordercast drain PID`): clients move to other nodes
            task = asyncio.ensure_future(runtime.gateway.drain())
            drains.add(task)
            task.add_done_callback(drains.discard)

        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGUSR1, drain)
        await server.serve(sockets=[http_socket])
    finally:
        http_socket.close()
        await runtime.close()


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The gateway port's TLS context (uvicorn builds its own from the same files)."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    except (OSError, ssl.SSLError) as exc:
        err.print(f"[red]error:[/red] cannot load the TLS certificate or key: {exc}")
        raise typer.Exit(2) from exc
    return context


@cli.command()
def drain(
    pid: Annotated[int, typer.Argument(help="process id of an `ordercast run` node")],
) -> None:
    """Drain a node (SIGUSR1): its WebSocket clients reconnect to other nodes (Pusher 4200,
    STOMP ERROR + close), new upgrades get 503 and GET /ready answers 503; the HTTP API keeps
    answering until the node is stopped (SIGTERM)."""
    import os

    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError as exc:
        err.print(f"[red]error:[/red] no process {pid}")
        raise typer.Exit(2) from exc
    console.print(f"asked node {pid} to drain")


@cli.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Apply database migrations (``run`` does this too)."""
    settings = _settings(database_url=database_url)

    async def go(_rt: Runtime) -> None:
        console.print(f"database at {settings.database_url} is up to date")

    _run(lambda: _with_runtime(settings, go))


@cli.command()
def demo(
    host: Host = None,
    http_port: HttpPort = None,
    ws_port: WsPort = None,
    database_url: DatabaseUrl = None,
    env: Annotated[bool, typer.Option("--env", help="print shell exports")] = False,
) -> None:
    """Print the demo tenant's ids and credentials (creating them if needed), with the URLs
    of the server started with the same flags or ORDERCAST_* variables."""
    settings = _settings(host=host, http_port=http_port, ws_port=ws_port, database_url=database_url)

    async def go(rt: Runtime) -> None:
        if settings.mode != "dev":
            err.print("[red]error:[/red] the demo exists only in dev mode")
            raise typer.Exit(2)
        info, _ = await rt.ensure_demo()
        if env:
            exports = {
                "OC_URL": settings.base_url,
                "OC_WS": settings.ws_url,
                "OC_ADMIN_TOKEN": rt.admin_token,
                "OC_TENANT": info["tenant_id"],
                "OC_LOCATION": info["location_id"],
                "OC_APP": info["app_id"],
                "OC_KEY": info["app_key"],
                "OC_SECRET": info["app_secret"],
            }
            for name, value in exports.items():
                print(f"export {name}={shlex.quote(value)}")
        else:
            _print_demo(info, settings, rt.admin_token)

    _run(lambda: _with_runtime(settings, go))


@tenants_cli.command("create")
def tenants_create(
    name: Annotated[str, typer.Option("--name")],
    database_url: DatabaseUrl = None,
) -> None:
    """Create a tenant."""
    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        tenant = await rt.directory.create_tenant(name)
        print(json.dumps({"id": tenant.id, "name": tenant.name}))

    _run(lambda: _with_runtime(settings, go))


@apps_cli.command("create")
def apps_create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    name: Annotated[str, typer.Option("--name")],
    kind: Annotated[str, typer.Option("--kind", help="channel|pos|rider|loyalty|kds")],
    location: Annotated[
        list[str] | None, typer.Option("--location", help="granted location id")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an app; prints its key and secret (the secret is shown once)."""
    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        try:
            created = await rt.directory.create_app(
                tenant_id=tenant, name=name, kind=kind, location_ids=location or []
            )
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        print(json.dumps({**app_dict(created.app), "secret": created.secret}))

    _run(lambda: _with_runtime(settings, go))


accounts_cli = typer.Typer(
    help="Logins with a password (staff, kds, customer): the OAuth2 password grant.",
    no_args_is_help=True,
)
cli.add_typer(accounts_cli, name="accounts")


@accounts_cli.command("create")
def accounts_create(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    username: Annotated[str, typer.Option("--username")],
    role: Annotated[list[str], typer.Option("--role", help="staff|kds|customer (repeatable)")],
    password: Annotated[
        str,
        typer.Option(
            "--password",
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="ORDERCAST_ACCOUNT_PASSWORD",
            help="asked for when not given (or ORDERCAST_ACCOUNT_PASSWORD)",
        ),
    ],
    location: Annotated[
        list[str] | None, typer.Option("--location", help="granted location id (staff, kds)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an account; its password is stored as an argon2 hash."""
    from ordercast.services.accounts import account_dict

    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        try:
            account = await rt.accounts.create(
                tenant_id=tenant,
                username=username,
                password=password,
                roles=role,
                location_ids=location or [],
            )
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        print(json.dumps(account_dict(account)))

    _run(lambda: _with_runtime(settings, go))


@accounts_cli.command("list")
def accounts_list(
    tenant: Annotated[str, typer.Option("--tenant", help="tenant id")],
    database_url: DatabaseUrl = None,
) -> None:
    """A tenant's accounts (one JSON object per line; no password hashes)."""
    from ordercast.services.accounts import account_dict

    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        try:
            accounts = await rt.accounts.list(tenant)
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        for account in accounts:
            print(json.dumps(account_dict(account)))

    _run(lambda: _with_runtime(settings, go))


def _setting_value(text: str) -> Any:
    """``--set`` values: JSON when they parse (true, 3, "x", {...}), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


@apps_cli.command("update")
def apps_update(
    app_id: Annotated[str, typer.Argument(help="app id (app_…)")],
    name: Annotated[str | None, typer.Option("--name", help="new name")] = None,
    location: Annotated[
        list[str] | None,
        typer.Option("--location", help="granted location id (repeatable; replaces the grants)"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="setting KEY=VALUE (VALUE as JSON), e.g. client_events=true"),
    ] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", help="remove setting KEY")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change an app's name, grants or settings (as PATCH /v1/apps/{id} does). A running
    server picks the change up within 30 seconds."""
    settings = _settings(database_url=database_url)
    changes: dict[str, Any] = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"[red]error:[/red] --set takes KEY=VALUE, got {item!r}")
            raise typer.Exit(2)
        changes[key] = _setting_value(value)
    for key in unset or []:
        changes[key] = None

    async def go(rt: Runtime) -> None:
        try:
            app = await rt.directory.update_app(
                app_id, name=name, location_ids=location, settings=changes or None
            )
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        print(json.dumps(app_dict(app)))

    _run(lambda: _with_runtime(settings, go))


deliveries_cli = typer.Typer(
    help="Webhook deliveries: endpoints, messages, attempts, replay.", no_args_is_help=True
)
cli.add_typer(deliveries_cli, name="deliveries")
EndpointOpt = Annotated[str, typer.Option("--endpoint", help="endpoint id (ep_…)")]


async def _endpoint_app(rt: Runtime, endpoint_id: str) -> str:
    assert rt.webhooks is not None
    ep = await rt.webhooks.outbox.get_endpoint(endpoint_id)
    if ep is None:
        err.print(f"[red]error:[/red] endpoint {endpoint_id} not found")
        raise typer.Exit(2)
    return str(ep["app_id"])


@deliveries_cli.command("list")
def deliveries_list(
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="list this endpoint's messages")
    ] = None,
    app: Annotated[str | None, typer.Option("--app", help="only this app's endpoints")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="pending|delivering|delivered|failed|skipped")
    ] = None,
    order: Annotated[str | None, typer.Option("--order", help="only this order")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    database_url: DatabaseUrl = None,
) -> None:
    """Without --endpoint: every endpoint. With it: its messages, newest first (one JSON
    object per line); ``--status failed`` is the dead letter."""
    from ordercast.domain.access import Admin
    from ordercast.services.webhooks import endpoint_view

    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        assert rt.webhooks is not None
        try:
            if endpoint is None:
                now = time.time()
                for ep in await rt.webhooks.outbox.list_endpoints(app):
                    view = endpoint_view(ep, now)
                    view["messages"] = await rt.webhooks.outbox.count_messages(ep["id"])
                    print(json.dumps(view))
                return
            app_id = await _endpoint_app(rt, endpoint)
            rows = await rt.webhooks.messages(
                Admin(), app_id, endpoint, status=status, order_id=order, limit=limit
            )
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        for row in rows:
            print(json.dumps(row))

    _run(lambda: _with_runtime(settings, go))


@deliveries_cli.command("attempts")
def deliveries_attempts(
    endpoint: EndpointOpt,
    message: Annotated[str | None, typer.Option("--message", help="one message (msg_…)")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 50,
    database_url: DatabaseUrl = None,
) -> None:
    """Delivery attempts of an endpoint, newest first (one JSON object per line)."""
    from ordercast.domain.access import Admin

    settings = _settings(database_url=database_url)

    async def go(rt: Runtime) -> None:
        assert rt.webhooks is not None
        app_id = await _endpoint_app(rt, endpoint)
        rows = await rt.webhooks.attempts(
            Admin(), app_id, endpoint, limit=limit, message_id=message
        )
        for row in rows:
            print(json.dumps(row))

    _run(lambda: _with_runtime(settings, go))


@deliveries_cli.command("replay")
def deliveries_replay(
    endpoint: EndpointOpt,
    since: Annotated[str | None, typer.Option("--since", help="ISO 8601 time")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO 8601 time")] = None,
    order: Annotated[str | None, typer.Option("--order", help="one order's events")] = None,
    event: Annotated[str | None, typer.Option("--event", help="one event (evt_…)")] = None,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="only messages in this state (repeatable), e.g. failed"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Send events again with their original webhook-id; a running `ordercast run` (or any
    worker on this database) delivers them."""
    from ordercast.domain.access import Admin
    from ordercast.domain.isotime import iso, parse_iso

    settings = _settings(database_url=database_url)

    def when(value: str | None, name: str) -> str | None:
        if value is None:
            return None
        try:
            return iso(parse_iso(value))
        except ValueError as exc:
            err.print(f"[red]error:[/red] --{name} must be an ISO 8601 time")
            raise typer.Exit(2) from exc

    since_iso, until_iso = when(since, "since"), when(until, "until")

    async def go(rt: Runtime) -> None:
        assert rt.webhooks is not None
        app_id = await _endpoint_app(rt, endpoint)
        try:
            count = await rt.webhooks.replay(
                Admin(),
                app_id,
                endpoint,
                since=since_iso,
                until=until_iso,
                order_id=order,
                event_id=event,
                statuses=status,
            )
        except OrdercastError as exc:
            err.print(f"[red]error:[/red] {exc.detail}")
            raise typer.Exit(2) from exc
        print(json.dumps({"replayed": count}))

    _run(lambda: _with_runtime(settings, go))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
