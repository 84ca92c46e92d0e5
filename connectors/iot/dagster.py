"""Dagster pieces of IoT connections (connector ``iot``), loaded through the connector hook.

Per IoT connection ``<c>``:

* ``<c>/devices`` — the installed base as the hub holds it: links devices to accounts that a new
  registration record or ERP order line now names, marks devices silent for longer than
  ``silent_after_seconds`` offline, and reports counts (feeds ``crm/devices``);
* ``<c>/usage_daily`` — daily usage (running hours, messages, faults, counter resets) of the last 7 days;
* checks on ``<c>/devices``: ``silent_devices``, ``unlinked_devices``, ``quarantined_messages``;
* sensor ``<c>_service_cases`` — every case opened or closed since its cursor, reported as runless
  materialisations of ``crm/service_cases`` (the cases themselves are opened in real time by
  ``tongbu iot run``; the sensor makes them visible in Dagster).

No ``from __future__ import annotations``: Dagster inspects the real annotation of ``context``.
"""

import datetime as dt
from typing import Any

import dagster as dg
from sqlalchemy import func, select

from connectors.kit.dagster import RESOURCE_KEY, DefinitionParts, ProjectLike, default_sensor_status, hub_key


def iot_connections(project: ProjectLike) -> list[str]:
    """Names of the project's IoT connections."""
    return [name for name, conn in project.connections.items() if conn.connector == "iot"]


def _settings(tongbu: Any, connection: str) -> Any:
    from connectors.iot.settings import IotSettings

    return IotSettings.from_config(tongbu.runner().connection_config(connection))


def _devices_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "devices"]),
        group_name=connection,
        kinds={"mqtt"},
        description="装机设备: devices reporting over MQTT, linked to their account by serial "
        "(registration record or ERP order line); silent devices marked offline.",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from connectors.iot.linking import link_devices, mark_silent
        from tongbu.db import get_engine
        from tongbu.hub.models import Device

        tongbu = context.resources.tongbu
        tenant = tongbu.project().tenant
        engine = get_engine()
        settings = _settings(tongbu, connection)
        with engine.begin() as conn:
            linked = link_devices(conn, tenant, connection)
        offline = mark_silent(engine, tenant, connection, settings.silent_after_seconds)
        t = Device.__table__
        with engine.connect() as conn:
            base = (t.c.tenant_id == tenant, t.c.source_system == connection, t.c.deleted_at.is_(None))
            total = conn.execute(select(func.count()).select_from(t).where(*base)).scalar_one()
            online = conn.execute(
                select(func.count()).select_from(t).where(*base, t.c.online.is_(True))
            ).scalar_one()
            unlinked = conn.execute(
                select(func.count()).select_from(t).where(*base, t.c.account_ref.is_(None))
            ).scalar_one()
        return dg.MaterializeResult(
            metadata={
                "devices": total,
                "online": online,
                "unlinked": unlinked,
                "newly_linked": linked,
                "newly_offline": offline,
            }  # fmt: skip
        )

    return _asset


def _usage_asset(connection: str) -> dg.AssetsDefinition:
    @dg.asset(
        required_resource_keys={RESOURCE_KEY},
        key=dg.AssetKey([connection, "usage_daily"]),
        group_name=connection,
        kinds={"mqtt"},
        deps=[dg.AssetKey([connection, "devices"])],
        description="日用量: running hours, messages, faults and counter resets per device and day (+08:00).",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        from connectors.iot.models import DeviceUsageDaily
        from tongbu.db import get_engine

        tenant = context.resources.tongbu.project().tenant
        t = DeviceUsageDaily.__table__
        since = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=8) - dt.timedelta(days=7)).strftime("%Y-%m-%d")
        with get_engine().connect() as conn:
            rows = conn.execute(
                select(t.c.day, func.count(), func.sum(t.c.run_hours), func.sum(t.c.messages), func.sum(t.c.faults),
                       func.sum(t.c.resets))
                .where(t.c.tenant_id == tenant, t.c.source_system == connection, t.c.day >= since)
                .group_by(t.c.day).order_by(t.c.day)
            ).all()  # fmt: skip
        days = {r[0]: {"devices": r[1], "run_hours": float(r[2] or 0), "messages": int(r[3] or 0),
                       "faults": int(r[4] or 0), "resets": int(r[5] or 0)} for r in rows}  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                "days": dg.MetadataValue.json(days),
                "run_hours_7d": round(sum(d["run_hours"] for d in days.values()), 3),
            }
        )

    return _asset


def _checks(connection: str) -> list[dg.AssetChecksDefinition]:
    devices = dg.AssetKey([connection, "devices"])

    @dg.asset_check(required_resource_keys={RESOURCE_KEY}, asset=devices, name="silent_devices",
                    description="No device silent for longer than the connection's silent_after_seconds.")  # fmt: skip
    def silent(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from connectors.iot.linking import silent_devices
        from tongbu.db import get_engine

        tongbu = context.resources.tongbu
        after = _settings(tongbu, connection).silent_after_seconds
        rows = silent_devices(get_engine(), tongbu.project().tenant, connection, after)
        return dg.AssetCheckResult(
            passed=not rows, severity=dg.AssetCheckSeverity.WARN,
            metadata={"silent": len(rows), "after_seconds": after,
                      "devices": dg.MetadataValue.json([r["serial_no"] or r["source_id"] for r in rows[:50]])},
        )  # fmt: skip

    @dg.asset_check(required_resource_keys={RESOURCE_KEY}, asset=devices, name="unlinked_devices",
                    description="Every device is linked to the account that bought it.")  # fmt: skip
    def unlinked(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from connectors.iot.linking import unlinked_devices
        from tongbu.db import get_engine

        with get_engine().connect() as conn:
            rows = unlinked_devices(conn, context.resources.tongbu.project().tenant, connection)
        return dg.AssetCheckResult(
            passed=not rows, severity=dg.AssetCheckSeverity.WARN,
            metadata={"unlinked": len(rows),
                      "devices": dg.MetadataValue.json([r["serial_no"] or r["source_id"] for r in rows[:50]])},
        )  # fmt: skip

    @dg.asset_check(required_resource_keys={RESOURCE_KEY}, asset=devices, name="quarantined_messages",
                    description="No device message quarantined (future/invalid time, bad payload) in 24 h.")  # fmt: skip
    def quarantined(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from connectors.iot.models import IotQuarantine
        from tongbu.db import get_engine

        t = IotQuarantine.__table__
        since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        with get_engine().connect() as conn:
            rows = conn.execute(
                select(t.c.reason, func.count())
                .where(t.c.tenant_id == context.resources.tongbu.project().tenant, t.c.source_system == connection,
                       t.c.status == "open", t.c.received_at >= since)
                .group_by(t.c.reason).order_by(func.count().desc()).limit(20)
            ).all()  # fmt: skip
        n = sum(r[1] for r in rows)
        return dg.AssetCheckResult(
            passed=n == 0, severity=dg.AssetCheckSeverity.WARN,
            metadata={"quarantined_24h": n, "top_reasons": dg.MetadataValue.json({r[0][:120]: r[1] for r in rows})},
        )  # fmt: skip

    return [silent, unlinked, quarantined]


def _cases_sensor(project: ProjectLike, connection: str) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{connection}_service_cases",
        required_resource_keys={RESOURCE_KEY},
        minimum_interval_seconds=30,
        # quiet until the connection is configured (its secrets stored) or `schedules: on`
        default_status=default_sensor_status(project, connection),
        description=f"Service cases opened or closed by {connection} device faults, reported on crm/service_cases.",
    )
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        from tongbu.db import get_engine
        from tongbu.hub.models import ServiceCase

        tenant = context.resources.tongbu.project().tenant
        t = ServiceCase.__table__
        cursor = context.cursor or "1970-01-01T00:00:00+00:00"
        since = dt.datetime.fromisoformat(cursor)
        with get_engine().connect() as conn:
            rows = conn.execute(
                select(t.c.source_id, t.c.status, t.c.device_ref, t.c.account_ref, t.c.fault, t.c.error_code,
                       t.c.occurrences, t.c.updated_at)
                .where(t.c.tenant_id == tenant, t.c.source_system == connection, t.c.updated_at > since)
                .order_by(t.c.updated_at).limit(500)
            ).all()  # fmt: skip
        if not rows:
            return dg.SensorResult(skip_reason="no case changed")
        events = [
            dg.AssetMaterialization(
                asset_key=hub_key("service_cases"),
                description=f"case {r.source_id} {r.status}",
                metadata={
                    "case": r.source_id,
                    "status": r.status,
                    "device": r.device_ref or "",
                    "account": r.account_ref or "",
                    "fault": r.fault or "",
                    "error_code": r.error_code or 0,
                    "occurrences": r.occurrences or 0,
                },
            )  # fmt: skip
            for r in rows
        ]
        last = rows[-1].updated_at
        if last.tzinfo is None:
            last = last.replace(tzinfo=dt.UTC)
        return dg.SensorResult(asset_events=events, cursor=last.isoformat())

    return _sensor


def dagster_definitions(project: ProjectLike) -> DefinitionParts:
    """Assets, checks and the cases sensor for every IoT connection of ``project``."""
    parts = DefinitionParts()
    for conn in iot_connections(project):
        parts.assets += [_devices_asset(conn), _usage_asset(conn)]
        parts.asset_checks += _checks(conn)
        parts.sensors.append(_cases_sensor(project, conn))
        parts.hub_feeds.setdefault("devices", []).append(dg.AssetKey([conn, "devices"]))
    return parts
