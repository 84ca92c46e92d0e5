"""``tongbu iot``: run the MQTT consumer, the embedded broker, and review devices.

* ``tongbu iot run [--connection iot] [--embedded-broker]`` — the long-running consumer (MQTT → hub,
  alerts for new cases); ``--embedded-broker`` starts tongbu's own broker when nothing listens at the
  configured address (a demo or a fresh machine needs nothing else);
* ``tongbu iot broker [--port 1883]`` — only the embedded broker, in the foreground;
* ``tongbu iot register FILE.csv`` — registration records (``serial,account`` per line);
* ``tongbu iot unlinked`` / ``tongbu iot silent`` / ``tongbu iot cases`` — lists for review.
"""

from __future__ import annotations

import csv
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    help="IoT devices over MQTT: the consumer, the embedded broker, device review.", no_args_is_help=True
)

ProjectOpt = Annotated[
    Path | None, typer.Option("--project", "-p", help="Project file (default: ./tongbu.yaml)")
]
ConnectionOpt = Annotated[
    str, typer.Option("--connection", "-c", help="The IoT connection in the project file")
]


def _fail(message: str) -> None:
    from tongbu.cli_output import error_line as _error_line

    _error_line(message)
    raise typer.Exit(1)


def _context(project: Path | None, connection: str) -> tuple[Any, Any, Any]:
    """(runner, settings, tenant) for an IoT connection; a missing connection means the defaults."""
    from connectors.iot.settings import IotSettings
    from pipelines.project import load_project
    from pipelines.runner import Runner
    from tongbu.db import get_engine

    engine = get_engine()  # the hub first: a damaged hub is reported before anything else
    runner = Runner(load_project(project), engine)
    conns = runner.project.connections
    if connection in conns:
        if conns[connection].connector != "iot":
            _fail(f"connection {connection!r} is a {conns[connection].connector} connection, not iot")
        cfg = runner.connection_config(connection)
    else:
        iot = sorted(n for n, c in conns.items() if c.connector == "iot")
        if iot:
            _fail(f"no connection {connection!r}; IoT connections: {', '.join(iot)}")
        cfg = {}
    try:
        settings = IotSettings.from_config(cfg)
    except ValueError as exc:
        _fail(str(exc))
    return runner, settings, runner.project.tenant


@app.command("run")
def run(
    project: ProjectOpt = None,
    connection: ConnectionOpt = "iot",
    embedded_broker: Annotated[
        bool, typer.Option(help="Start tongbu's own broker if nothing listens at the broker address")
    ] = False,
    status_every: Annotated[float, typer.Option(help="Seconds between status lines (0 = none)")] = 10.0,
) -> None:
    """Consume device messages into the hub until stopped (SIGTERM or Ctrl-C finish the batch in hand)."""
    from tongbu.cli_output import exit_code, handled

    _handled = handled(exit_code)

    _handled(_run)(project, connection, embedded_broker, status_every)


def _run(project: Path | None, connection: str, embedded_broker: bool, status_every: float) -> None:
    from connectors.iot.linking import link_devices
    from connectors.kit.mqtt import EmbeddedBroker, broker_reachable
    from pipelines.iot import IotService, notifier_alerter

    runner, settings, tenant = _context(project, connection)
    address = settings.address
    broker = None
    if not broker_reachable(address.host, address.port):
        if not embedded_broker:
            _fail(f"no MQTT broker at {address.url}; start one, or add --embedded-broker")
        broker = EmbeddedBroker(address.host, address.port)
        address = broker.start()
        import dataclasses

        settings = dataclasses.replace(settings, broker=address.url)
        print(f"embedded MQTT broker listening on {address.url}", flush=True)
    alerter = None
    if settings.alert_channel:
        try:
            alerter = notifier_alerter(runner.project, runner.engine, settings.alert_channel)
        except ModuleNotFoundError:
            _fail("alert_channel is set but this build has no notifier (pipelines.notify)")
    service = IotService(runner.engine, settings, connection=connection, tenant=tenant, alerter=alerter)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    service.start()
    print(
        f"iot consumer {settings.client_id} on {address.url}: topics {', '.join(settings.topics)}", flush=True
    )
    last_status = last_review = time.monotonic()
    try:
        while not stopping.wait(0.5):
            if service.consumer is not None and service.consumer.failed is not None:
                _fail(f"consumer stopped: {service.consumer.failed}")
            now = time.monotonic()
            if now - last_review > 60:
                last_review = now
                service.mark_silent()
                with runner.engine.begin() as conn:
                    link_devices(conn, tenant, connection)
            if status_every and now - last_status > status_every:
                last_status = now
                s = service.stats
                print(f"messages {s.messages:,} applied {s.applied:,} duplicates {s.duplicates:,} "
                      f"quarantined {s.quarantined:,} cases opened {s.cases_opened} closed {s.cases_closed}", flush=True)  # fmt: skip
    finally:
        service.stop()
        if broker is not None:
            broker.stop()


@app.command("broker")
def broker(
    host: Annotated[str, typer.Option(help="Interface (keep it loopback unless you mean it)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 1883,
) -> None:
    """Run tongbu's embedded MQTT 3.1.1 broker (amqtt) in the foreground."""
    from connectors.kit.mqtt import EmbeddedBroker, MqttError

    b = EmbeddedBroker(host, port)
    try:
        address = b.start()
    except MqttError as exc:
        _fail(str(exc))
    print(f"embedded MQTT broker listening on {address.url}", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        stopping.wait()
    finally:
        b.stop()


@app.command("register")
def register(
    file: Annotated[
        Path, typer.Argument(help="CSV with the columns serial,account (account = hub source id)")
    ],
    project: ProjectOpt = None,
    source: Annotated[str, typer.Option(help="Where the records come from")] = "csv",
) -> None:
    """Load registration records: which account owns which serial number."""
    from connectors.iot.ingest import register_devices
    from connectors.iot.linking import link_devices
    from tongbu.cli_output import project_tenant as _project_tenant
    from tongbu.db import get_engine

    if not file.exists():
        _fail(f"{file}: no such file")
    records = []
    with file.open(encoding="utf-8-sig", newline="") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or row[0].strip().lower() in ("serial", "serial_no", "序列号"):
                continue
            if len(row) < 2 or not row[0].strip() or not row[1].strip():
                _fail(f"{file}:{n}: expected serial,account")
            records.append((row[0].strip(), row[1].strip()))
    tenant = _project_tenant(project)
    engine = get_engine()
    with engine.begin() as conn:
        count = register_devices(conn, tenant, records, source)
        linked = link_devices(conn, tenant)
    print(f"{count} registration records loaded; {linked} devices linked to their account")


@app.command("unlinked")
def unlinked(project: ProjectOpt = None) -> None:
    """Devices no account owns (no registration record, no ERP order line names their serial)."""
    from connectors.iot.linking import unlinked_devices
    from tongbu.cli_output import project_tenant as _project_tenant
    from tongbu.db import get_engine

    with get_engine().connect() as conn:
        rows = unlinked_devices(conn, _project_tenant(project))
    for r in rows:
        print(
            f"{r['source_system']}\t{r['serial_no'] or r['source_id']}\t{r['product_code'] or ''}\t{r['last_seen_at']}"
        )
    print(f"{len(rows)} unlinked devices")


@app.command("silent")
def silent(project: ProjectOpt = None, connection: ConnectionOpt = "iot") -> None:
    """Devices not heard from for the connection's ``silent_after_seconds``."""
    from connectors.iot.linking import silent_devices

    runner, settings, tenant = _context(project, connection)
    rows = silent_devices(runner.engine, tenant, connection, settings.silent_after_seconds)
    for r in rows:
        print(f"{r['serial_no'] or r['source_id']}\t{r['account_ref'] or '-'}\t{r['last_seen_at']}")
    print(f"{len(rows)} devices silent for more than {settings.silent_after_seconds:g} s")


@app.command("cases")
def cases(
    project: ProjectOpt = None,
    status: Annotated[str, typer.Option(help="open | closed | all")] = "open",
) -> None:
    """Service cases opened by device faults."""
    from sqlalchemy import select

    from tongbu.cli_output import project_tenant as _project_tenant
    from tongbu.db import get_engine
    from tongbu.hub.models import ServiceCase

    t = ServiceCase.__table__
    q = select(t.c.source_id, t.c.status, t.c.device_ref, t.c.account_ref, t.c.fault, t.c.error_code,
               t.c.occurrences, t.c.opened_at).where(t.c.tenant_id == _project_tenant(project))  # fmt: skip
    if status != "all":
        q = q.where(t.c.status == status)
    with get_engine().connect() as conn:
        rows = conn.execute(q.order_by(t.c.opened_at)).all()
    for r in rows:
        print(f"{r.source_id}\t{r.status}\t{r.device_ref}\t{r.account_ref or '-'}\t{r.fault}\t{r.error_code}\t"
              f"x{r.occurrences}\t{r.opened_at}")  # fmt: skip
    print(f"{len(rows)} {status if status != 'all' else ''} cases".replace("  ", " "))


@app.command("demo")
def demo(devices: Annotated[int, typer.Option(help="Simulated devices")] = 20) -> None:
    """A device fault becomes a service case and a WeCom alert (embedded broker; nothing to install)."""
    from tongbu.cli_output import exit_code, handled

    _handled = handled(exit_code)
    from tongbu.demo_iot import run_iot_demo

    _handled(run_iot_demo)(devices)
