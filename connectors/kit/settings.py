"""The HTTP settings every connector accepts, under one set of names.

=====================  =======  ==============================================================
``request_timeout``    varies   seconds per HTTP request (connect, read, write, pool)
``max_retries``        8        retries after the first attempt of one call
``backoff_base``       0.5      first backoff ceiling in seconds (doubles per retry, full jitter)
``backoff_max``        30       largest backoff ceiling in seconds
``max_retry_seconds``  300      wall-time budget of one call, attempts and waits included
=====================  =======  ==============================================================

Older per-connector names (``timeout``, ``max_attempts``, ``backoff_base_seconds``,
``backoff_max_seconds``) are refused with the new name to use (tongbu is pre-1.0; one vocabulary beats
silently accepting two).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from singer_sdk import typing as th

from connectors.kit.errors import BadRequest
from connectors.kit.retry import RetryPolicy

#: old name -> the setting that replaced it
RENAMED_SETTINGS: dict[str, str] = {
    "timeout": "request_timeout",
    "max_attempts": "max_retries",
    "backoff_base_seconds": "backoff_base",
    "backoff_max_seconds": "backoff_max",
}


class ConfigError(BadRequest):
    """A connection config that cannot be used as written (a renamed or invalid setting)."""

    kind = "config"


def check_renamed(config: Mapping[str, Any], connector: str) -> None:
    """Refuse settings that were renamed, naming the one to use instead."""
    old = sorted(k for k in config if k in RENAMED_SETTINGS)
    if old:
        hints = ", ".join(f"`{k}` (did you mean `{RENAMED_SETTINGS[k]}`?)" for k in old)
        raise ConfigError(f"{connector}: unknown setting {hints}; the HTTP settings were renamed")


@dataclass(frozen=True)
class HttpSettings:
    """Resolved HTTP settings of one connection."""

    request_timeout: float = 60.0
    max_retries: int = 8
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    max_retry_seconds: float = 300.0

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, connector: str, request_timeout: float = 60.0
    ) -> HttpSettings:
        """Settings from a connection config; ``request_timeout`` is the connector's default."""
        check_renamed(config, connector)

        def number(name: str, default: float, minimum: float) -> float:
            raw = config.get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{connector}: `{name}` must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"{connector}: `{name}` must be at least {minimum:g}, got {value:g}")
            return value

        return cls(
            request_timeout=number("request_timeout", request_timeout, 0.001),
            max_retries=int(number("max_retries", cls.max_retries, 0)),
            backoff_base=number("backoff_base", cls.backoff_base, 0),
            backoff_max=number("backoff_max", cls.backoff_max, 0),
            max_retry_seconds=number("max_retry_seconds", cls.max_retry_seconds, 0),
        )

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy these settings describe."""
        return RetryPolicy(
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
            backoff_max=self.backoff_max,
            max_retry_seconds=self.max_retry_seconds,
        )


def http_properties(
    *, request_timeout: float = 60.0, retried: str = "throttling, 5xx and timeouts"
) -> list[th.Property[Any]]:
    """The settings above as singer-sdk config properties, for a tap's or target's ``config_jsonschema``."""
    return [
        th.Property(
            "request_timeout", th.NumberType, default=request_timeout, description="Seconds per HTTP request"
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
            default=8,
            description=f"Retries after the first attempt on {retried}",
        ),
        th.Property("backoff_base", th.NumberType, default=0.5, description="First backoff ceiling, seconds"),
        th.Property("backoff_max", th.NumberType, default=30, description="Largest backoff ceiling, seconds"),
        th.Property(
            "max_retry_seconds",
            th.NumberType,
            default=300,
            description="Wall-time budget of one call including retries, seconds",
        ),
    ]
