"""Send alerts through the channels of ``tongbu.yaml``, each alert once per recipient.

::

    alerts:
      channels:
        sales_wecom: {kind: wecom_app, connection: wecom, agent_id: 1000002, to: [zhangsan]}
        ops_mail:    {kind: email, host: smtp.example.com, port: 587, starttls: true,
                      sender: tongbu@example.com, to: [ops@example.com],
                      username: tongbu, password: "vault:alerts.smtp_password"}
        ops_robot:   {kind: wecom_robot, key: "vault:alerts.robot_key"}

:class:`Notifier` builds a channel on first use (secrets resolved from the vault only then, never
kept in the project object), claims each (channel, key, recipient) in the ledger
(:mod:`tongbu.notifications`) before sending and records the outcome, so repeats, restarts and
concurrent senders deliver an alert once; a failed delivery is tried again by the next ``send`` with
the same key. Errors are one plain line with no secret.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from sqlalchemy import Engine

from connectors.kit.notify import (
    Channel,
    EmailChannel,
    Notification,
    NotifyError,
    WeComRobotChannel,
    build_kit_channel,
)
from pipelines.project import Project, ProjectError, expand_env
from tongbu.notifications import Delivery, DeliveryLedger
from tongbu.vault.secrets import resolve_secrets

#: channels that post to one place (a group chat): the ledger has one row per alert, recipient "*"
_ONE_PLACE = {WeComRobotChannel.kind}
KINDS = ("email", "wecom_app", "wecom_robot")


def _options_of(cls: type[Channel], *, skip: tuple[str, ...] = ("self", "name")) -> set[str]:
    # the constructor's keyword arguments are the options a channel of this kind accepts
    return {p for p in inspect.signature(cls).parameters if p not in skip}


def _check_options(channel: str, kind: str, options: dict[str, Any], allowed: set[str]) -> None:
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ProjectError(
                f"alerts.channels.{channel}: unknown key {key!r} for kind {kind!r} "
                f"({hint}known: {', '.join(sorted(allowed))})"
            )


class Notifier:
    """The project's alert channels, with the delivery ledger of its tenant."""

    def __init__(self, project: Project, engine: Engine | None = None) -> None:
        self.project = project
        self.tenant = project.tenant
        if engine is None:
            from tongbu.db import get_engine

            engine = get_engine()
        self.engine = engine
        self.ledger = DeliveryLedger(engine, self.tenant)
        self._channels: dict[str, Channel] = {}

    def channels(self) -> list[str]:
        """Names of the configured channels."""
        return sorted(self.project.alerts.channels)

    def channel(self, name: str) -> Channel:
        """The channel ``name``, built (and its secrets resolved) on first use."""
        if name not in self._channels:
            self._channels[name] = self._build(name)
        return self._channels[name]

    def _build(self, name: str) -> Channel:
        specs = self.project.alerts.channels
        if name not in specs:
            known = ", ".join(sorted(specs)) or "none (add alerts.channels to tongbu.yaml)"
            raise ProjectError(f"no alert channel {name!r}; known: {known}")
        spec = specs[name]
        options = dict(spec.model_extra or {})
        if spec.kind not in KINDS:
            raise ProjectError(
                f"alerts.channels.{name}.kind: unknown kind {spec.kind!r} (known: {', '.join(KINDS)})"
            )
        if spec.kind == "wecom_app":
            _check_options(name, spec.kind, options, {"connection", "agent_id", "to"})
            return self._wecom_app(name, options)
        cls = EmailChannel if spec.kind == "email" else WeComRobotChannel
        _check_options(name, spec.kind, options, _options_of(cls))
        resolved = resolve_secrets(expand_env(options), tenant=self.tenant, engine=self.engine)
        try:
            channel = build_kit_channel(name, spec.kind, resolved)
        except TypeError as exc:  # a required option is missing
            raise ProjectError(f"alerts.channels.{name}: {exc}".replace("__init__() ", "")) from None
        assert channel is not None
        return channel

    def _wecom_app(self, name: str, options: dict[str, Any]) -> Channel:
        from connectors.wecom.client import client_from_config
        from connectors.wecom.notify import WeComAppChannel

        connection = options.get("connection")
        if not connection or connection not in self.project.connections:
            known = ", ".join(sorted(self.project.connections)) or "none"
            raise ProjectError(
                f"alerts.channels.{name}.connection: {connection!r} is not a connection of tongbu.yaml "
                f"(known: {known})"
            )
        if "agent_id" not in options:
            raise ProjectError(f"alerts.channels.{name}: agent_id (the WeCom app that sends) is required")
        config = resolve_secrets(
            self.project.resolved_config(connection), tenant=self.tenant, engine=self.engine
        )
        client = client_from_config(config, connection=connection, tenant=self.tenant)
        return WeComAppChannel(
            name, client=client, agent_id=int(options["agent_id"]), to=list(options.get("to") or [])
        )

    def send(self, channel: str, n: Notification) -> list[Delivery]:
        """Deliver ``n`` on ``channel`` to each recipient not yet served; what happened to each."""
        ch = self.channel(channel)
        recipients = ch.recipients(n)
        one_place = ch.kind in _ONE_PLACE
        targets = ["*"] if one_place else list(recipients)
        if not targets:
            raise ProjectError(f"alerts.channels.{channel}: no recipients (set `to:` in tongbu.yaml)")
        out: list[Delivery] = []
        for recipient in targets:
            claim = self.ledger.claim(channel, n.key, recipient, n.subject)
            if claim != "claimed":
                out.append(Delivery(channel, n.key, recipient, claim))
                continue
            try:
                ch.send(n, list(recipients) if one_place else [recipient])
            except NotifyError as exc:
                self.ledger.finish(channel, n.key, recipient, error=str(exc))
                out.append(Delivery(channel, n.key, recipient, "failed", str(exc)))
            else:
                self.ledger.finish(channel, n.key, recipient)
                out.append(Delivery(channel, n.key, recipient, "sent"))
        return out

    def send_all(self, n: Notification, channels: list[str] | None = None) -> list[Delivery]:
        """``n`` on every named channel (default: all configured); one failing channel does not stop others."""
        out: list[Delivery] = []
        for name in channels if channels is not None else self.channels():
            out += self.send(name, n)
        return out

    def close(self) -> None:
        """Close the channels' connections."""
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()


__all__ = ["Delivery", "Notification", "Notifier", "NotifyError"]
