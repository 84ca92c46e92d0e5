"""``tongbu vault …``: create the vault, store and read secrets, rotate the master key, verify integrity.

Values are never taken from command-line arguments (``/proc/<pid>/cmdline`` and shell history are
readable by others): ``set`` reads a hidden prompt, or stdin when it is not a terminal. Every error
prints one line naming the secret and what to do, and exits non-zero — no traceback, no value.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from tongbu.cli_output import fail, handled
from tongbu.config import DEFAULT_TENANT
from tongbu.vault.errors import MasterKeyMissingError, VaultError
from tongbu.vault.keys import (
    KEY_ENV,
    PASSPHRASE_ENV,
    EnvKeySource,
    FileKeySource,
    MasterKeySource,
    PassphraseKeySource,
    default_key_file,
    ensure_outside_data_dirs,
    write_key_file,
)

NEW_PASSPHRASE_ENV = "TONGBU_NEW_VAULT_PASSPHRASE"

app = typer.Typer(
    help="Encrypted credential vault: store connector secrets, rotate the master key, verify integrity.",
    no_args_is_help=True,
    # Rich tracebacks print local variables, which is exactly where decrypted values live.
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


@dataclass
class _Options:
    database_url: str | None = None
    actor: str | None = None


_opts = _Options()


@app.callback()
def _callback(
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url", envvar="TONGBU_DATABASE_URL", help="Hub database (default: $TONGBU_HOME/hub.db)"
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", envvar="TONGBU_ACTOR", help="Who to record in the audit log")
    ] = None,
) -> None:
    """Encrypted credential vault."""
    from tongbu.vault.redact import install_redaction

    install_redaction()
    _opts.database_url = database_url
    _opts.actor = actor


def _fail(message: str, code: int) -> None:
    from tongbu.vault.redact import redact

    fail(redact(message), code)


def _exit_code(exc: Exception) -> tuple[str, int]:
    """The one line (secrets masked) and the exit code of an exception reaching a vault command."""
    from tongbu.db import UnsupportedDatabase, hub_error
    from tongbu.vault.redact import redact

    if isinstance(exc, VaultError):
        return redact(str(exc)), exc.exit_code
    if isinstance(exc, UnsupportedDatabase):
        return redact(str(exc)), 2
    bad = hub_error(exc, _opts.database_url)
    if bad is not None:
        return redact(str(bad)), bad.exit_code
    if os.environ.get("TONGBU_DEBUG"):
        typer.echo(redact("".join(traceback.format_exception(exc))), err=True)
    return redact(f"unexpected {type(exc).__name__}: {exc} (set TONGBU_DEBUG=1 for details)"), 1


_handled = handled(_exit_code)


class _PromptedPassphrase(PassphraseKeySource):
    """Asks for the passphrase on the terminal the first time the key is needed."""

    def _text(self) -> str:
        if self.passphrase is None:
            self.passphrase = str(typer.prompt("Vault passphrase", hide_input=True))
        return super()._text()


def _vault(key_source: MasterKeySource | None = None) -> Any:
    from sqlalchemy import select

    from tongbu.vault.keys import default_key_source
    from tongbu.vault.store import Vault
    from tongbu.vault.tables import master_t

    vault = Vault(_opts.database_url, key_source=key_source, actor=_opts.actor)
    if key_source is None:
        try:
            default_key_source()
        except MasterKeyMissingError:
            # Nothing configured: on a terminal, a passphrase vault asks for its passphrase; every
            # other case keeps the "no master key found" error for when a key is actually needed.
            if sys.stdin.isatty():
                with vault.engine.connect() as conn:
                    kind = conn.execute(select(master_t.c.kind).where(master_t.c.status == "active")).scalar()
                if kind == "passphrase":
                    vault.key_source = _PromptedPassphrase()
    return vault


TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant the secret belongs to")]
NameArg = Annotated[str, typer.Argument(help="Secret name: <connection>.<field>, e.g. kingdee.app_secret")]


def _read_value(prompt: str, *, confirm: bool = True, env: str | None = None) -> str:
    """A value from env (for passphrases only), stdin when piped, or a hidden prompt."""
    if env and os.environ.get(env):
        return os.environ[env]
    if not sys.stdin.isatty():
        data = sys.stdin.read()
        # Strip exactly one trailing newline (what `echo` and heredocs add), keep anything else.
        if data.endswith("\r\n"):
            data = data[:-2]
        elif data.endswith("\n"):
            data = data[:-1]
        return data
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm))


@app.command()
@_handled
def init(
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            help="Where to create (or find) the master key file; default ~/.config/tongbu/master.key",
        ),
    ] = None,
    passphrase: Annotated[
        bool,
        typer.Option(
            "--passphrase", help=f"Derive the master key from a passphrase (prompt or ${PASSPHRASE_ENV})"
        ),
    ] = False,
) -> None:
    """Create the vault in the hub database and, unless one exists, a new master key file (0600)."""
    created: Path | None = None
    source: MasterKeySource
    probe = _vault(EnvKeySource())  # any source: only used for its database and data folders
    if passphrase:
        source = PassphraseKeySource(_read_value("New vault passphrase", env=PASSPHRASE_ENV))
    elif os.environ.get(KEY_ENV) and key_file is None:
        source = EnvKeySource()
    else:
        path = (key_file or default_key_file()).expanduser()
        if not path.exists():
            ensure_outside_data_dirs(path, probe.data_dirs())
            created = write_key_file(path)
        source = FileKeySource(path)
    try:
        vault = type(probe).initialize(probe.engine, key_source=source, actor=_opts.actor)
    except BaseException:
        if created is not None:
            created.unlink(missing_ok=True)  # a key for a vault that was never created is just confusion
        raise
    typer.echo(f"vault created in {vault.location}")
    typer.echo(f"master key: {source.description}")
    if created is not None:
        typer.echo(f"back up {created} somewhere safe: without it the secrets cannot be recovered")


@app.command("set")
@_handled
def set_(
    name: NameArg,
    tenant: TenantOpt = DEFAULT_TENANT,
    expected_version: Annotated[
        int | None,
        typer.Option("--expected-version", help="Only write if the secret is at this version (0 = new)"),
    ] = None,
) -> None:
    """Store a secret. The value is read from a hidden prompt, or from stdin when piped — never from arguments."""
    from tongbu.vault.names import SecretName

    SecretName.parse(name, tenant)  # fail on a bad name before asking for the value
    value = _read_value(f"Value for {name}")
    version = _vault().set(name, value, tenant=tenant, expected_version=expected_version)
    del value
    typer.echo(f"stored {tenant}/{name} (version {version})")


@app.command()
@_handled
def get(
    name: NameArg,
    tenant: TenantOpt = DEFAULT_TENANT,
    reveal: Annotated[bool, typer.Option("--reveal", help="Print the value itself (audited)")] = False,
) -> None:
    """Show a secret's metadata and check it decrypts; --reveal prints the value."""
    vault = _vault()
    if reveal:
        secret = vault.get_many([name], tenant=tenant, action="reveal")[name]
        typer.echo(secret.get_secret_value())
        return
    vault.get_many([name], tenant=tenant, action="check")
    info = vault.info(name, tenant=tenant)
    typer.echo(
        f"{info.name}: ********** (version {info.version}, key v{info.key_version}, "
        f"updated {info.updated_at:%Y-%m-%d %H:%M} by {info.updated_by}; use --reveal to print it)"
    )


@app.command("list")
@_handled
def list_(
    tenant: TenantOpt = DEFAULT_TENANT,
    all_tenants: Annotated[bool, typer.Option("--all-tenants", help="Every tenant")] = False,
    connection: Annotated[str | None, typer.Option("--connection", "-c", help="Only this connection")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List secrets (names, versions, key versions, last change) — never values; needs no master key."""
    infos = _vault().list(tenant=None if all_tenants else tenant, connection=connection)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "tenant": i.name.tenant,
                        "name": i.name.short,
                        "version": i.version,
                        "key_version": i.key_version,
                        "updated_at": i.updated_at.isoformat(),
                        "updated_by": i.updated_by,
                    }
                    for i in infos
                ],
                ensure_ascii=False,
            )
        )
        return
    if not infos:
        typer.echo("no secrets")
        return
    width = max(len(str(i.name)) for i in infos)
    for i in infos:
        typer.echo(
            f"{str(i.name):<{width}}  v{i.version:<4} key v{i.key_version:<3} "
            f"{i.updated_at:%Y-%m-%d %H:%M}  {i.updated_by}"
        )


@app.command()
@_handled
def delete(
    name: NameArg,
    tenant: TenantOpt = DEFAULT_TENANT,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
) -> None:
    """Delete a secret (recorded in the manifest, so verify does not flag it)."""
    if not yes:
        typer.confirm(f"delete {tenant}/{name}?", abort=True)
    _vault().delete(name, tenant=tenant)
    typer.echo(f"deleted {tenant}/{name}")


@app.command()
@_handled
def rotate(
    new_key_file: Annotated[
        Path | None,
        typer.Option("--new-key-file", help="New master key file (created, 0600, if it does not exist)"),
    ] = None,
    new_key_env: Annotated[
        str | None, typer.Option("--new-key-env", help="Name of the environment variable holding the new key")
    ] = None,
    new_passphrase: Annotated[
        bool, typer.Option("--new-passphrase", help=f"New passphrase (prompt or ${NEW_PASSPHRASE_ENV})")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Secrets re-encrypted per transaction")
    ] = 100,
    abort: Annotated[
        bool, typer.Option("--abort", help="Roll an unfinished rotation back to the old key")
    ] = False,
) -> None:
    """Re-encrypt every secret under a new master key; re-run to resume after an interruption."""
    from tongbu.vault.rotate import abort_rotation, rotation_status
    from tongbu.vault.rotate import rotate as run_rotation

    chosen = [x for x in (new_key_file, new_key_env, new_passphrase or None) if x]
    if len(chosen) > 1:
        _fail("give only one of --new-key-file, --new-key-env, --new-passphrase", 2)
    vault = _vault()
    report = _progress_printer()
    if abort:
        status = abort_rotation(vault, batch_size=batch_size, progress=report)
        typer.echo(f"rotation aborted: all secrets are back on key version {status.from_version}")
        return
    new_source: MasterKeySource | None = None
    created: Path | None = None
    if new_key_file is not None:
        path = new_key_file.expanduser()
        if not path.exists():
            if rotation_status(vault) is not None:
                _fail(
                    f"new key file {path} does not exist but a rotation is in progress; "
                    "resume with the key file it started with",
                    2,
                )
            ensure_outside_data_dirs(path, vault.data_dirs())
            created = write_key_file(path)
        new_source = FileKeySource(path)
    elif new_key_env:
        new_source = EnvKeySource(new_key_env)
        if not os.environ.get(new_key_env):
            raise MasterKeyMissingError(
                f"environment variable {new_key_env} is not set", hint="export the new key"
            )
    elif new_passphrase:
        new_source = PassphraseKeySource(_read_value("New vault passphrase", env=NEW_PASSPHRASE_ENV))
    try:
        status = run_rotation(vault, new_source, batch_size=batch_size, progress=report)
    except BaseException:
        # Keep a created key file if the rotation started: resuming needs exactly that key.
        if created is not None and rotation_status(vault) is None:
            created.unlink(missing_ok=True)
        raise
    typer.echo(
        f"rotation done: {status.total} ciphertexts now on key version {status.to_version}; "
        "the old master key no longer opens this vault"
    )
    if new_source is not None:
        typer.echo(f"switch every process to the new key ({new_source.description}) and retire the old one")


def _progress_printer() -> Callable[[int, int], None]:
    last = [-1]

    def report(done: int, total: int) -> None:
        pct = 100 if total == 0 else int(done * 100 / total)
        if pct // 10 != last[0] // 10 and sys.stderr.isatty():
            typer.echo(f"  {done}/{total} re-encrypted", err=True)
        last[0] = pct

    return report


@app.command()
@_handled
def verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Check every secret against the manifest and its authentication tag; report each problem by name."""
    report = _vault().verify()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "secrets": report.secrets_checked,
                    "tokens": report.tokens_checked,
                    "generation": report.generation,
                    "manifest_digest": report.manifest_digest,
                    "key_version": report.key_version,
                    "rotation": report.rotation,
                    "problems": [
                        {"kind": p.kind, "secret": p.secret, "message": p.message} for p in report.problems
                    ],
                },
                ensure_ascii=False,
            )
        )
    else:
        for problem in report.problems:
            typer.echo(f"PROBLEM {problem.kind}: {problem}")
        typer.echo(
            f"{'ok' if report.ok else f'{len(report.problems)} problem(s)'}: {report.secrets_checked} secrets, "
            f"{report.tokens_checked} cached tokens checked; generation {report.generation}, "
            f"manifest {report.manifest_digest}, key v{report.key_version}"
            + (f"; {report.rotation}" if report.rotation else "")
        )
    if not report.ok:
        raise typer.Exit(3)


@app.command()
@_handled
def reseal(yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False) -> None:
    """Accept the current rows as the trusted state (after restoring or re-setting what verify flagged)."""
    if not yes:
        typer.confirm("trust the vault's current contents and re-sign the manifest?", abort=True)
    excluded = _vault().reseal()
    for problem in excluded:
        typer.echo(f"left out (does not decrypt): {problem.secret}")
    typer.echo("manifest re-signed" + (f"; {len(excluded)} secret(s) left out" if excluded else ""))


@app.command()
@_handled
def audit(
    name: Annotated[str | None, typer.Argument(help="Only this secret (<connection>.<field>)")] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many events")] = 50,
) -> None:
    """Show the latest audit events: who read, wrote or rotated which secret, and when."""
    for e in _vault().audit_log(limit=limit, name=name, tenant=tenant):
        target = f"{e['tenant']}/{e['connection']}.{e['field']}" if e["connection"] else "-"
        typer.echo(
            f"{e['at']:%Y-%m-%d %H:%M:%S}  {e['actor']:<24} {e['action']:<20} {target:<40} {e['outcome']}"
        )


@app.command()
@_handled
def status() -> None:
    """Vault id, master keys (versions, kind, status), secret count and any rotation in progress."""
    from sqlalchemy import select

    from tongbu.vault.rotate import rotation_status
    from tongbu.vault.tables import master_t, state_t

    vault = _vault()
    with vault.engine.connect() as conn:
        state = conn.execute(select(state_t)).first()
        keys = conn.execute(select(master_t).order_by(master_t.c.version)).all()
    if state is None:
        _fail(f"{vault.location} has no vault yet; run `tongbu vault init`", 2)
    typer.echo(f"vault {state.vault_id} in {vault.location}")
    typer.echo(
        f"current key version {state.current_key_version}, generation {state.generation}, "
        f"{vault.secret_count()} secrets"
    )
    for k in keys:
        typer.echo(
            f"  master key v{k.version}: {k.kind}, {k.status}, created {k.created_at:%Y-%m-%d} by {k.created_by}"
        )
    rot = rotation_status(vault)
    if rot is not None:
        typer.echo(
            f"rotation {rot.from_version}→{rot.to_version} {rot.status}: {rot.done}/{rot.total}; "
            "re-run `tongbu vault rotate` to resume"
        )


if __name__ == "__main__":  # pragma: no cover - `python -m tongbu.vault_cli` (used by the rotation kill test)
    app()
