"""Where the master key comes from: an environment variable, a 0600 key file, or a passphrase.

Resolution order (:func:`default_key_source`), first match wins:

1. ``TONGBU_MASTER_KEY`` — a 32-byte key, base64 (standard or URL-safe) or 64 hex digits;
2. a key file — ``TONGBU_MASTER_KEY_FILE`` if set (it must then exist), else
   ``$XDG_CONFIG_HOME/tongbu/master.key`` (``~/.config/tongbu/master.key``) when present. The file must
   be owned by the current user with no group/other permissions (0600 or 0400);
3. ``TONGBU_VAULT_PASSPHRASE`` — stretched with Argon2id; the salt and cost parameters live in the
   vault's metadata table (they are not secret), the passphrase never does.

The key is never stored next to the data: key files inside ``TONGBU_HOME`` or the SQLite database's
folder are refused, because a copy of that folder would then carry its own key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from tongbu.vault.crypto import KEY_BYTES, new_key
from tongbu.vault.errors import (
    MasterKeyFormatError,
    MasterKeyMissingError,
    MasterKeyPermissionError,
)

KEY_ENV = "TONGBU_MASTER_KEY"
KEY_FILE_ENV = "TONGBU_MASTER_KEY_FILE"
PASSPHRASE_ENV = "TONGBU_VAULT_PASSPHRASE"
MIN_PASSPHRASE_CHARS = 12

KeyKind = Literal["raw", "passphrase"]


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters for a passphrase-derived master key (stored with the vault, not secret).

    The defaults (64 MiB, 3 passes, 4 lanes) are above OWASP's Argon2id minimum (19 MiB, t=2, p=1) and
    cost about 0.15 s per unlock; they are stored per key so they can be raised at the next rotation.
    """

    salt: bytes
    memory_kib: int = 65536
    iterations: int = 3
    lanes: int = 4
    algorithm: str = "argon2id"

    @classmethod
    def generate(cls) -> KdfParams:
        """Fresh parameters with a random 16-byte salt (unique per vault and per key version)."""
        return cls(salt=os.urandom(16))

    def to_json(self) -> str:
        """Serialise for the ``vault_master_keys.kdf_params`` column."""
        return json.dumps(
            {
                "algorithm": self.algorithm,
                "salt": base64.b64encode(self.salt).decode(),
                "memory_kib": self.memory_kib,
                "iterations": self.iterations,
                "lanes": self.lanes,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> KdfParams:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        if data.get("algorithm") != "argon2id":
            raise MasterKeyFormatError(
                f"unsupported key-derivation algorithm {data.get('algorithm')!r} in the vault metadata",
                hint="upgrade tongbu to the version that created this vault",
            )
        return cls(
            salt=base64.b64decode(data["salt"]),
            memory_kib=int(data["memory_kib"]),
            iterations=int(data["iterations"]),
            lanes=int(data["lanes"]),
        )


class MasterKeySource(ABC):
    """A place the master key is read from. ``material()`` returns the 32-byte root key.

    Implementations never include key bytes in ``repr``/``str``; ``description`` says where the key
    came from (an env var name or a file path) so error messages can tell the operator what to fix.
    """

    kind: KeyKind = "raw"
    description: str = "master key"

    @abstractmethod
    def material(self, params: KdfParams | None = None) -> bytes:
        """Return the 32-byte master key (``params`` are required for passphrase sources)."""

    def check_location(self, data_dirs: Iterable[Path]) -> None:  # noqa: B027 - optional hook
        """Refuse key material that lives inside one of ``data_dirs`` (only key files can)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"


def encode_key(key: bytes) -> str:
    """The text form of a raw key used in key files and ``TONGBU_MASTER_KEY`` (URL-safe base64)."""
    return base64.urlsafe_b64encode(key).decode()


def decode_key(text: str, *, where: str) -> bytes:
    """Parse a 32-byte key written as base64 (either alphabet, padding optional) or 64 hex digits."""
    text = text.strip()
    candidates: list[bytes] = []
    if len(text) == 2 * KEY_BYTES:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(text))
    padded = text + "=" * (-len(text) % 4)
    for decoder in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            candidates.append(decoder(padded.encode()))
        except (binascii.Error, ValueError):
            continue
    for key in candidates:
        if len(key) == KEY_BYTES:
            return key
    # The message never echoes the text: a typo'd key is still mostly key.
    raise MasterKeyFormatError(
        f"the master key in {where} is not a 32-byte key (expected base64 or 64 hex digits)",
        hint='generate one with `tongbu vault init` or `python -c "import os,base64;'
        'print(base64.urlsafe_b64encode(os.urandom(32)).decode())"`',
    )


@dataclass(repr=False)
class RawKeySource(MasterKeySource):
    """A key handed over in memory (programmatic use and tests)."""

    key: bytes = field(repr=False)
    description: str = "in-memory master key"
    kind: KeyKind = "raw"

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise MasterKeyFormatError(f"the {self.description} must be exactly {KEY_BYTES} bytes")

    def material(self, params: KdfParams | None = None) -> bytes:
        return self.key


@dataclass(repr=False)
class EnvKeySource(MasterKeySource):
    """A raw key in an environment variable (default ``TONGBU_MASTER_KEY``)."""

    variable: str = KEY_ENV
    environ: Mapping[str, str] | None = None
    kind: KeyKind = "raw"

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"environment variable {self.variable}"

    def material(self, params: KdfParams | None = None) -> bytes:
        env = os.environ if self.environ is None else self.environ
        text = env.get(self.variable)
        if not text:
            raise MasterKeyMissingError(
                f"{self.description} is not set", hint=f"export {self.variable}=<base64 key>"
            )
        return decode_key(text, where=self.description)


@dataclass(repr=False)
class FileKeySource(MasterKeySource):
    """A raw key in a file that only its owner can read."""

    path: Path = field(default_factory=lambda: default_key_file())
    kind: KeyKind = "raw"

    def __post_init__(self) -> None:
        self.path = Path(self.path).expanduser()

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"key file {self.path}"

    def check_location(self, data_dirs: Iterable[Path]) -> None:
        ensure_outside_data_dirs(self.path, data_dirs)

    def material(self, params: KdfParams | None = None) -> bytes:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise MasterKeyMissingError(
                f"{self.description} does not exist",
                hint=f"restore it from your backup, point {KEY_FILE_ENV} at it, "
                "or create a new vault with `tongbu vault init`",
            ) from None
        check_key_file_permissions(self.path, st)
        try:
            text = self.path.read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError):
            raise MasterKeyFormatError(
                f"{self.description} could not be read as a key", hint="check the file is the tongbu key file"
            ) from None
        return decode_key(text, where=self.description)


@dataclass(repr=False)
class PassphraseKeySource(MasterKeySource):
    """A passphrase stretched with Argon2id; the salt comes from the vault's metadata."""

    passphrase: str | None = field(default=None, repr=False)
    variable: str = PASSPHRASE_ENV
    kind: KeyKind = "passphrase"

    @property
    def description(self) -> str:  # type: ignore[override]
        return "passphrase" if self.passphrase is not None else f"passphrase in {self.variable}"

    def _text(self) -> str:
        text = self.passphrase if self.passphrase is not None else os.environ.get(self.variable)
        if not text:
            raise MasterKeyMissingError(
                f"{self.description} is empty", hint=f"export {self.variable} or use a key file"
            )
        if len(text) < MIN_PASSPHRASE_CHARS:
            raise MasterKeyFormatError(
                f"the {self.description} is shorter than {MIN_PASSPHRASE_CHARS} characters",
                hint="choose a longer passphrase (a few random words work well)",
            )
        return text

    def material(self, params: KdfParams | None = None) -> bytes:
        if params is None:
            raise MasterKeyFormatError("a passphrase needs the vault's salt; open the vault to derive it")
        return Argon2id(
            salt=params.salt,
            length=KEY_BYTES,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        ).derive(self._text().encode())


def default_key_file() -> Path:
    """``$TONGBU_MASTER_KEY_FILE`` or ``$XDG_CONFIG_HOME/tongbu/master.key`` (``~/.config/...``)."""
    explicit = os.environ.get(KEY_FILE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config").expanduser()
    return config_home / "tongbu" / "master.key"


def default_key_source() -> MasterKeySource:
    """Pick the master key source from the environment: env var, then key file, then passphrase."""
    if os.environ.get(KEY_ENV):
        return EnvKeySource()
    path = default_key_file()
    if os.environ.get(KEY_FILE_ENV) or path.exists():
        # An explicitly configured file that is missing is an error, not a reason to fall through:
        # silently using another key would open (or create) the wrong vault.
        return FileKeySource(path)
    if os.environ.get(PASSPHRASE_ENV):
        return PassphraseKeySource()
    raise MasterKeyMissingError(
        "no master key found",
        hint=f"set {KEY_ENV}, point {KEY_FILE_ENV} at your key file (default {path}), "
        f"set {PASSPHRASE_ENV}, or run `tongbu vault init` to create a key",
    )


def check_key_file_permissions(path: Path, st: os.stat_result | None = None) -> None:
    """Refuse a key file that other users could read or that someone else owns (POSIX only)."""
    if os.name != "posix":  # pragma: no cover - Windows ACLs are out of scope
        return
    st = st or path.stat()
    if not stat.S_ISREG(st.st_mode):
        raise MasterKeyPermissionError(
            f"key file {path} is not a regular file", hint="point to the key file itself"
        )
    if st.st_mode & 0o077:
        raise MasterKeyPermissionError(
            f"key file {path} has permissions {stat.S_IMODE(st.st_mode):04o}; others could read the master key",
            hint=f"run `chmod 600 {path}`",
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise MasterKeyPermissionError(
            f"key file {path} is owned by another user (uid {st.st_uid})",
            hint=f"run `chown $(id -u) {path}` or use a key file owned by the account running tongbu",
        )


def ensure_outside_data_dirs(path: Path, data_dirs: Iterable[Path]) -> None:
    """Refuse a key path inside a folder that holds the data it protects."""
    resolved = Path(path).expanduser().resolve()
    for data_dir in data_dirs:
        d = Path(data_dir).expanduser().resolve()
        if resolved == d or d in resolved.parents:
            raise MasterKeyPermissionError(
                f"key file {path} is inside the data directory {d}; a copy of that folder would carry its own key",
                hint=f"move it outside (default {default_key_file()}) and set {KEY_FILE_ENV}",
            )


def write_key_file(path: Path, key: bytes | None = None) -> Path:
    """Create a new key file (mode 0600, parent 0700) holding ``key`` or a fresh random key.

    Refuses to overwrite: an overwritten key file is an unrecoverable vault. The file is created with
    ``O_EXCL`` and its final mode from the start, so the key is never readable by others, not even
    between create and chmod; it is fsynced (and its folder) before we report success.
    """
    path = Path(path).expanduser()
    key = key or new_key()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise MasterKeyPermissionError(
            f"key file {path} already exists", hint="keep it, or move it away before creating a new one"
        ) from None
    try:
        os.write(fd, (encode_key(key) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path
