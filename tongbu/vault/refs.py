"""Secrets by reference: ``vault:<connection>.<field>`` in config, values only at run time.

Project files and run config carry references, never values. :func:`resolve_refs` swaps every
reference in a config mapping for the secret's value at the last moment (inside the worker that needs
it), registering each value with the redaction layer on the way. :class:`Secret` is the pydantic type
for credential fields: its ``repr``/``str``/``format``, JSON dump and validation errors never show the
value; :class:`SecretConfigModel` additionally hides the whole input in validation errors (pydantic
echoes the entire input dict when *another* field is missing — pydantic-settings issue #256).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from tongbu.config import DEFAULT_TENANT
from tongbu.vault.errors import InvalidReferenceError, UnresolvedSecretError

# The one definition of the reference prefix (pipelines and the store import it from here).
VAULT_PREFIX = "vault:"
# connection: letters, digits, _ and -; field: may also contain dots ("oauth.refresh_token").
REF_PATTERN = re.compile(
    r"^vault:(?P<connection>[A-Za-z0-9][A-Za-z0-9_-]{0,99})\.(?P<field>[A-Za-z0-9_][A-Za-z0-9_.-]{0,199})$"
)
MASKED = "**********"


class SecretReader(Protocol):
    """What resolving a reference needs: a :class:`~tongbu.vault.store.Vault` (or a test double).

    Typed as a protocol so this module does not import the store (the store returns :class:`Secret`).
    """

    def get(self, name: str, *, tenant: str = ...) -> SecretStr: ...


def lookup(ref: str, vault: SecretReader, *, tenant: str = DEFAULT_TENANT) -> Secret:
    """Read the secret ``ref`` names from ``vault``; the returned :class:`Secret` remembers ``ref``."""
    connection, field = parse_ref(ref)
    value = vault.get(f"{connection}.{field}", tenant=tenant)
    return Secret(value.get_secret_value(), ref=ref)


class _Hidden:
    """Wraps a raw input during validation so pydantic's error text shows a mask, not the value.

    pydantic reports the input of the validator that failed; a before-validator swaps the input for
    this wrapper first, so even a wrong-type error (an int where a string belongs) prints ``'**********'``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(MASKED)


class hidden(_Hidden):  # noqa: N801 - the class name is what pydantic prints as ``input_type``
    """Lower-case alias so errors read ``input_type=hidden``."""

    __slots__ = ()


class Secret(SecretStr):
    """A secret string that never shows its value; optionally remembers its vault reference.

    * ``repr(s)`` → ``Secret('**********')`` (or ``Secret(ref='vault:kingdee.app_secret')``),
      ``str(s)`` and f-strings → ``**********``; ``get_secret_value()`` is the one, greppable, way in;
    * as a pydantic field it accepts a ``str``, a ``SecretStr`` or a ``vault:`` reference. A reference
      is resolved when the validation context carries a vault (``context={"vault": v, "tenant": t}``),
      otherwise kept unresolved, and ``get_secret_value()`` on it raises :class:`UnresolvedSecretError`;
    * validation errors show ``'**********'`` as the input, JSON dumps write ``**********``.
    """

    _ref: str | None

    def __init__(self, secret_value: str | None, *, ref: str | None = None) -> None:
        self._secret_value = secret_value  # type: ignore[assignment]
        self._ref = ref

    @classmethod
    def unresolved(cls, ref: str) -> Secret:
        """A placeholder for a reference that has not been looked up yet."""
        parse_ref(ref)
        return cls(None, ref=ref)

    @property
    def ref(self) -> str | None:
        """The ``vault:`` reference this value came from, if any (safe to show)."""
        return self._ref

    @property
    def is_resolved(self) -> bool:
        """False for a placeholder created from a reference without a vault."""
        return self._secret_value is not None

    def get_secret_value(self) -> str:
        """The value itself. Keep the result short-lived and out of logs and exceptions."""
        if self._secret_value is None:
            raise UnresolvedSecretError(
                f"secret reference {self._ref} was never resolved",
                hint="resolve config with tongbu.vault.resolve_refs (or validate with context={'vault': ...})",
            )
        return self._secret_value

    def resolve(self, vault: SecretReader, *, tenant: str = DEFAULT_TENANT) -> Secret:
        """Return a copy resolved from ``vault`` (self when already resolved).

        Without a vault at hand, use :func:`tongbu.vault.resolve_ref` (it opens the default vault).
        """
        if self.is_resolved or self._ref is None:
            return self
        return lookup(self._ref, vault, tenant=tenant)

    def __repr__(self) -> str:
        if self._ref is not None:
            return f"Secret(ref={self._ref!r})"
        return f"Secret({MASKED!r})"

    def __str__(self) -> str:
        return MASKED

    def __format__(self, format_spec: str) -> str:
        return MASKED

    def __len__(self) -> int:
        return len(self._secret_value) if self._secret_value is not None else 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and self._secret_value == other.get_secret_value()

    def __hash__(self) -> int:
        return hash(self._secret_value)

    def __reduce__(self) -> Any:
        # Pickling a Secret would copy the value into whatever stores the pickle (run storage,
        # caches): only references survive pickling, so workers resolve them again themselves.
        return (Secret.unresolved, (self._ref,)) if self._ref else (_refuse_pickle, ())

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def conceal(value: Any) -> hidden:
            return value if isinstance(value, hidden) else hidden(value)

        def validate(wrapped: Any, info: core_schema.ValidationInfo) -> Secret:
            value = wrapped.value if isinstance(wrapped, _Hidden) else wrapped
            if isinstance(value, Secret):
                return value
            if isinstance(value, SecretStr):
                return cls(value.get_secret_value())
            if not isinstance(value, str):
                raise PydanticCustomError("secret_type", "secret must be a string (value hidden)")
            if value.startswith(VAULT_PREFIX):
                try:
                    parse_ref(value)
                except InvalidReferenceError:
                    raise PydanticCustomError(
                        "secret_reference", "malformed vault reference; expected vault:<connection>.<field>"
                    ) from None
                context = info.context if isinstance(info.context, Mapping) else {}
                if context.get("vault") is not None:
                    return lookup(value, context["vault"], tenant=context.get("tenant", DEFAULT_TENANT))
                return cls.unresolved(value)
            return cls(value)

        def serialize(value: Secret, info: core_schema.SerializationInfo) -> Any:
            if info.mode == "json":
                return value.ref if value.ref is not None else MASKED
            return value

        return core_schema.no_info_before_validator_function(
            conceal,
            core_schema.with_info_plain_validator_function(
                validate,
                serialization=core_schema.plain_serializer_function_ser_schema(serialize, info_arg=True),
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "format": "password", "writeOnly": True}


def _refuse_pickle() -> Secret:  # pragma: no cover - only reached by unpickling
    raise UnresolvedSecretError(
        "a resolved secret was pickled without its reference", hint="pass vault references between processes"
    )


class SecretConfigModel(BaseModel):
    """Base for connector config models: validation errors never echo any input value.

    pydantic prints the whole input mapping when a required field is missing, which would include
    every secret in it; ``hide_input_in_errors`` suppresses that for all fields of the model.
    """

    model_config = ConfigDict(hide_input_in_errors=True)


def is_ref(value: object) -> bool:
    """True when ``value`` is a string that starts with ``vault:``."""
    return isinstance(value, str) and value.startswith(VAULT_PREFIX)


def parse_ref(ref: str) -> tuple[str, str]:
    """Split ``vault:<connection>.<field>`` into ``(connection, field)``; raise on anything else."""
    m = REF_PATTERN.fullmatch(ref) if isinstance(ref, str) else None
    if not m:
        # Never echo the string: a malformed "reference" may be a pasted value.
        raise InvalidReferenceError(
            "malformed vault reference",
            hint="write it as vault:<connection>.<field>, e.g. vault:kingdee.app_secret",
        )
    return m["connection"], m["field"]


def find_refs(config: Any, path: str = "") -> list[tuple[str, str]]:
    """Every ``(config path, reference)`` in a nested config (dicts, lists, tuples)."""
    found: list[tuple[str, str]] = []
    if isinstance(config, str):
        if is_ref(config):
            try:
                parse_ref(config)
            except InvalidReferenceError as exc:
                raise InvalidReferenceError(
                    f"malformed vault reference at config key {path or '<root>'!r}", hint=exc.hint
                ) from None
            found.append((path, config))
    elif isinstance(config, Mapping):
        for k, v in config.items():
            found += find_refs(v, f"{path}.{k}" if path else str(k))
    elif isinstance(config, list | tuple):
        for i, v in enumerate(config):
            found += find_refs(v, f"{path}[{i}]")
    return found
