"""The keystore: wallets of one encrypted coldkey and any number of named hotkeys, on disk.

Layout (the same shape as btcli's, so its users find their way)::

    <home>/                      ~/.p2pnode, or $P2PNODE_HOME, or --keys-dir      (mode 0700)
      wallets/                                                                       (mode 0700)
        <wallet>/                                                                    (mode 0700)
          coldkey                encrypted key file                                  (mode 0600)
          hotkeys/                                                                   (mode 0700)
            <hotkey>             plain key file                                      (mode 0600)

A wallet is a directory; it may hold hotkeys without a coldkey (a server that runs a neuron needs
only its hotkey; the coldkey stays offline).

Key files are small JSON objects (format version 1; see docs/keys.md)::

    coldkey: {"format": "p2pnode-key", "version": 1, "kind": "coldkey", "address": "p2p1...",
              "kdf": {"name": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "<16 bytes hex>"},
              "cipher": {"name": "xsalsa20-poly1305", "nonce": "<24 bytes hex>",
                         "ciphertext": "<48 bytes hex: the 32-byte seed + 16-byte tag>"}}
    hotkey:  {"format": "p2pnode-key", "version": 1, "kind": "hotkey", "address": "p2p1...",
              "seed": "<32 bytes hex>"}

The address is in clear so that ``list`` and ``show`` need no password; after decryption it is
checked against the key, so a file whose address was edited is refused as corrupt.

Reading is strict: a file that is readable by group or others is refused (:class:`InsecureKeyFile`)
before its contents are looked at, unknown or missing fields, wrong types and wrong lengths are
:class:`CorruptKeyFile`, and a failed authentication is :class:`WrongPassword`. Writing never
replaces an existing key: a new file is written in full to a temporary name, synced, then linked
into place only if nothing is there (:class:`KeyExists` otherwise).

Error tree::

    KeyStoreError
      KeyNotFound        no such wallet, coldkey or hotkey
      KeyExists          refusing to replace an existing key
      InvalidKeyName     a wallet or hotkey name that is not a safe file name
      WrongPassword      the coldkey did not decrypt (wrong password, or the ciphertext was altered)
      CorruptKeyFile     not a well-formed key file of the expected kind
      InsecureKeyFile    a key file that others can read
      PasswordError      no password could be obtained, the two entries differ, or it is empty
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import secrets
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils

from p2pnode.chain.address import AddressError, decode_address
from protocols.crypto import SEED_SIZE, Keypair, generate_keypair

__all__ = [
    "FORMAT_VERSION",
    "HOME_ENV",
    "KDF_ENV",
    "KDF_FAST",
    "KDF_MODERATE",
    "PASSWORD_ENV",
    "CorruptKeyFile",
    "InsecureKeyFile",
    "InvalidKeyName",
    "KdfParams",
    "KeyExists",
    "KeyInfo",
    "KeyNotFound",
    "KeyStore",
    "KeyStoreError",
    "PasswordError",
    "WalletInfo",
    "WrongPassword",
    "default_home",
    "kdf_params_from_env",
    "parse_seed_hex",
    "password_from",
]

HOME_ENV = "P2PNODE_HOME"
"""Environment variable naming the p2pnode home directory (default ``~/.p2pnode``)."""
PASSWORD_ENV = "P2PNODE_PASSWORD"
"""Environment variable holding the coldkey password, for scripts."""
KDF_ENV = "P2PNODE_KDF"
"""Environment variable choosing the key-derivation cost of new coldkeys: ``moderate`` or ``fast``."""

FORMAT_NAME = "p2pnode-key"
FORMAT_VERSION = 1
KDF_NAME = "argon2id"
CIPHER_NAME = "xsalsa20-poly1305"

# Key files are a few hundred bytes; the bound keeps a wrong path (a log, a disk image) from
# being read into memory.
MAX_KEY_FILE_BYTES = 64 * 1024
MAX_PASSWORD_FILE_BYTES = 4096

_PRIVATE_FILE_MODE = 0o600
_PRIVATE_DIR_MODE = 0o700
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SALT_SIZE = argon2id.SALTBYTES
_NONCE_SIZE = nacl.secret.SecretBox.NONCE_SIZE
_CIPHERTEXT_SIZE = SEED_SIZE + nacl.secret.SecretBox.MACBYTES

# What a key file may ask of the KDF: anything libsodium accepts up to well above its SENSITIVE
# level (4 passes, 1 GiB), so a hostile file cannot make `load` allocate terabytes.
_MAX_OPSLIMIT = 32
_MAX_MEMLIMIT = 4 * 1024**3


class KeyStoreError(Exception):
    """Base of every keystore failure; the message is one line that names the file or key."""


class KeyNotFound(KeyStoreError):
    """The wallet, coldkey or hotkey does not exist."""


class KeyExists(KeyStoreError):
    """A key is already stored under that name; keys are never replaced."""


class InvalidKeyName(KeyStoreError):
    """A wallet or hotkey name that is not 1-64 characters of ``A-Z a-z 0-9 . _ -``."""


class WrongPassword(KeyStoreError):
    """The coldkey did not decrypt: a wrong password, or a ciphertext that was altered."""


class CorruptKeyFile(KeyStoreError):
    """A key file that is truncated, not JSON, or not a well-formed key file of the expected kind."""


class InsecureKeyFile(KeyStoreError):
    """A key file that group or others may read or write; fix it with ``chmod 600``."""


class PasswordError(KeyStoreError):
    """No password could be read, the two entries differ, or a new password is empty."""


@dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id cost: passes over memory (`opslimit`) and memory in bytes (`memlimit`)."""

    opslimit: int
    memlimit: int


KDF_MODERATE = KdfParams(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
"""The default for new coldkeys: libsodium's MODERATE (3 passes over 256 MiB, about 1 s)."""
KDF_FAST = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)
"""``P2PNODE_KDF=fast``: the cheapest Argon2id (1 pass over 8 KiB) for tests and local testnets.
A password then protects almost nothing against guessing: never for keys that hold value."""


def kdf_params_from_env(environ: Mapping[str, str] | None = None) -> KdfParams:
    """The KDF cost for new coldkeys chosen by ``P2PNODE_KDF`` (unset or ``moderate``, or ``fast``)."""
    environ = os.environ if environ is None else environ
    choice = environ.get(KDF_ENV, "").strip().lower()
    if choice in ("", "moderate"):
        return KDF_MODERATE
    if choice == "fast":
        return KDF_FAST
    raise KeyStoreError(f"{KDF_ENV}={environ[KDF_ENV]!r} is not one of: moderate, fast")


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$P2PNODE_HOME`` if set, else ``~/.p2pnode``."""
    environ = os.environ if environ is None else environ
    configured = environ.get(HOME_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".p2pnode"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What can be known about a stored key without its secret."""

    wallet: str
    hotkey: str | None
    """The hotkey's name; None for the wallet's coldkey."""
    address: str
    public_key: bytes
    path: Path
    kdf: KdfParams | None
    """The coldkey's Argon2id cost; None for a hotkey (stored unencrypted)."""

    @property
    def kind(self) -> str:
        return "coldkey" if self.hotkey is None else "hotkey"

    @property
    def encrypted(self) -> bool:
        return self.kdf is not None

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "wallet": self.wallet,
            "kind": self.kind,
            "hotkey": self.hotkey,
            "address": self.address,
            "public_key": self.public_key.hex(),
            "path": str(self.path),
            "encrypted": self.encrypted,
        }
        if self.kdf is not None:
            document["kdf"] = {"name": KDF_NAME, "opslimit": self.kdf.opslimit, "memlimit": self.kdf.memlimit}
        return document


@dataclass(frozen=True, slots=True)
class WalletInfo:
    """A wallet: its coldkey (None when this machine holds only hotkeys) and its hotkeys by name."""

    name: str
    coldkey: KeyInfo | None
    hotkeys: tuple[KeyInfo, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "coldkey": None if self.coldkey is None else self.coldkey.to_json(),
            "hotkeys": [hotkey.to_json() for hotkey in self.hotkeys],
        }


@dataclass(frozen=True, slots=True)
class _EncryptedColdkey:
    address: str
    kdf: KdfParams
    salt: bytes
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class _PlainHotkey:
    address: str
    seed: bytes


class KeyStore:
    """Wallets under ``<home>/wallets``. Cheap to construct; every call goes to the disk.

    `kdf` is the Argon2id cost for coldkeys created by this store (default: from ``P2PNODE_KDF``,
    read when a coldkey is created). Loading always uses the cost recorded in the file.
    """

    def __init__(self, home: Path, kdf: KdfParams | None = None) -> None:
        self.home = Path(home)
        self._kdf = kdf

    @property
    def wallets_dir(self) -> Path:
        return self.home / "wallets"

    def wallet_dir(self, wallet: str) -> Path:
        return self.wallets_dir / _checked_name("wallet", wallet)

    def coldkey_path(self, wallet: str) -> Path:
        return self.wallet_dir(wallet) / "coldkey"

    def hotkey_path(self, wallet: str, hotkey: str) -> Path:
        return self.wallet_dir(wallet) / "hotkeys" / _checked_name("hotkey", hotkey)

    # -- creating ---------------------------------------------------------------------------

    def create_coldkey(self, wallet: str, password: str, *, seed: bytes | None = None) -> Keypair:
        """Create (or, with `seed`, import) the wallet's coldkey, encrypted under `password`.

        Raises:
            KeyExists: the wallet already has a coldkey.
            PasswordError: `password` is empty.
        """
        path = self.coldkey_path(wallet)
        if not password:
            raise PasswordError("the coldkey password must not be empty")
        _refuse_existing(path, f"wallet {wallet!r} already has a coldkey")
        keypair = generate_keypair() if seed is None else _keypair_from_seed(seed)
        kdf = self._kdf if self._kdf is not None else kdf_params_from_env()
        salt = nacl.utils.random(_SALT_SIZE)
        nonce = nacl.utils.random(_NONCE_SIZE)
        box = nacl.secret.SecretBox(_derive_key(password, salt, kdf))
        ciphertext = box.encrypt(keypair.seed, nonce).ciphertext
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": "coldkey",
            "address": keypair.address,
            "kdf": {"name": KDF_NAME, "opslimit": kdf.opslimit, "memlimit": kdf.memlimit, "salt": salt.hex()},
            "cipher": {"name": CIPHER_NAME, "nonce": nonce.hex(), "ciphertext": ciphertext.hex()},
        }
        self._write_key_file(path, document, f"wallet {wallet!r} already has a coldkey")
        return keypair

    def create_hotkey(self, wallet: str, hotkey: str, *, seed: bytes | None = None) -> Keypair:
        """Create (or, with `seed`, import) a hotkey, stored unencrypted (mode 0600).

        Raises:
            KeyExists: the wallet already has a hotkey of that name.
        """
        path = self.hotkey_path(wallet, hotkey)
        exists_message = f"wallet {wallet!r} already has a hotkey {hotkey!r}"
        _refuse_existing(path, exists_message)
        keypair = generate_keypair() if seed is None else _keypair_from_seed(seed)
        document = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kind": "hotkey",
            "address": keypair.address,
            "seed": keypair.seed.hex(),
        }
        self._write_key_file(path, document, exists_message)
        return keypair

    def import_key_file(
        self, wallet: str, hotkey: str | None, source: Path, password: str | None = None
    ) -> KeyInfo:
        """Store a copy of a key file from elsewhere (a backup, another machine), byte for byte.

        With `hotkey` None the file must be a coldkey, and `password` must decrypt it: a file is
        only imported once it is known to open. Otherwise it must be a hotkey file. The source's
        own mode is not checked (it is the copy being made private); the stored copy is 0600.

        Raises:
            KeyNotFound: `source` does not exist.
            CorruptKeyFile: `source` is not a key file of the expected kind.
            WrongPassword: the coldkey in `source` does not open with `password`.
            KeyExists: a key of that name is already stored.
        """
        destination = self.coldkey_path(wallet) if hotkey is None else self.hotkey_path(wallet, hotkey)
        if hotkey is None:
            exists_message = f"wallet {wallet!r} already has a coldkey"
        else:
            exists_message = f"wallet {wallet!r} already has a hotkey {hotkey!r}"
        _refuse_existing(destination, exists_message)
        raw = _read_key_file(source, check_mode=False)
        if hotkey is None:
            if password is None:
                raise PasswordError("importing a coldkey file needs its password")
            _decrypt_coldkey(_parse_coldkey(raw, source), password, source)
        else:
            _hotkey_keypair(_parse_hotkey(raw, source), source)
        self._write_bytes(destination, raw, exists_message)
        if hotkey is None:
            return self.coldkey_info(wallet)
        return self.hotkey_info(wallet, hotkey)

    # -- loading ----------------------------------------------------------------------------

    def load_coldkey(self, wallet: str, password: str) -> Keypair:
        """The wallet's coldkey, decrypted with `password`.

        Raises:
            KeyNotFound, InsecureKeyFile, CorruptKeyFile, WrongPassword.
        """
        path = self.coldkey_path(wallet)
        raw = _read_key_file(path, missing=f"wallet {wallet!r} has no coldkey ({path})")
        return _decrypt_coldkey(_parse_coldkey(raw, path), password, path)

    def load_hotkey(self, wallet: str, hotkey: str) -> Keypair:
        """A hotkey of the wallet.

        Raises:
            KeyNotFound, InsecureKeyFile, CorruptKeyFile.
        """
        path = self.hotkey_path(wallet, hotkey)
        raw = _read_key_file(path, missing=f"wallet {wallet!r} has no hotkey {hotkey!r} ({path})")
        return _hotkey_keypair(_parse_hotkey(raw, path), path)

    def coldkey_info(self, wallet: str) -> KeyInfo:
        """The coldkey's address and encryption parameters, read without its password."""
        path = self.coldkey_path(wallet)
        raw = _read_key_file(path, missing=f"wallet {wallet!r} has no coldkey ({path})")
        parsed = _parse_coldkey(raw, path)
        return KeyInfo(wallet, None, parsed.address, decode_address(parsed.address), path, parsed.kdf)

    def hotkey_info(self, wallet: str, hotkey: str) -> KeyInfo:
        """The hotkey's address (the file is fully checked: its seed must give that address)."""
        keypair = self.load_hotkey(wallet, hotkey)
        return KeyInfo(
            wallet, hotkey, keypair.address, keypair.public_key, self.hotkey_path(wallet, hotkey), None
        )

    def wallet_info(self, wallet: str) -> WalletInfo:
        """The wallet's coldkey (if this machine has it) and hotkeys, sorted by name.

        Raises:
            KeyNotFound: no such wallet.
        """
        directory = self.wallet_dir(wallet)
        if not directory.is_dir():
            raise KeyNotFound(f"no wallet {wallet!r} in {self.wallets_dir}")
        coldkey = self.coldkey_info(wallet) if self.coldkey_path(wallet).exists() else None
        hotkeys = tuple(
            self.hotkey_info(wallet, name) for name in _names_in(directory / "hotkeys", files=True)
        )
        return WalletInfo(wallet, coldkey, hotkeys)

    def list_wallets(self) -> list[WalletInfo]:
        """Every wallet, sorted by name. Entries whose names are not valid names are ignored."""
        return [self.wallet_info(name) for name in _names_in(self.wallets_dir, files=False)]

    # -- writing ----------------------------------------------------------------------------

    def _write_key_file(self, path: Path, document: dict[str, Any], exists_message: str) -> None:
        self._write_bytes(path, (json.dumps(document, indent=2) + "\n").encode(), exists_message)

    def _write_bytes(self, path: Path, data: bytes, exists_message: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=_PRIVATE_DIR_MODE)
        directory = self.home
        for part in path.parent.relative_to(self.home).parts:
            directory = directory / part
            try:
                directory.mkdir(mode=_PRIVATE_DIR_MODE)
            except FileExistsError:
                pass
        _write_new_file(path, data, exists_message)


# -- passwords and seeds --------------------------------------------------------------------


def password_from(
    *,
    password_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    confirm: bool = False,
    prompt: str = "Password: ",
) -> str:
    """The password, from the first source that is given: a file, ``$P2PNODE_PASSWORD``, a prompt.

    A password file holds the password; one trailing newline is dropped. The prompt (getpass: no
    echo) asks twice when `confirm` is set, for a new password.

    Raises:
        PasswordError: the file cannot be read, the prompt got no input, or the two entries differ.
    """
    environ = os.environ if environ is None else environ
    if password_file is not None:
        try:
            # A pipe is allowed here (`--password-file <(pass show x)`), so only the size is bounded.
            with open(password_file, "rb") as handle:
                raw = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
            if len(raw) > MAX_PASSWORD_FILE_BYTES:
                raise PasswordError(f"password file {password_file} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PasswordError(f"cannot read password file {password_file}: {_reason(exc)}") from None
        return text.removesuffix("\n").removesuffix("\r")
    if PASSWORD_ENV in environ:
        return environ[PASSWORD_ENV]
    try:
        password = getpass.getpass(prompt)
        if confirm and getpass.getpass("Repeat password: ") != password:
            raise PasswordError("the two passwords differ")
    except EOFError:
        raise PasswordError(
            f"no password given (type it at the prompt, or use {PASSWORD_ENV} or --password-file)"
        ) from None
    return password


def parse_seed_hex(text: str) -> bytes:
    """A 32-byte secret seed from 64 hex digits (an optional ``0x`` and surrounding space allowed).

    Raises:
        KeyStoreError: anything else; the message never repeats the input (it is a secret).
    """
    digits = text.strip()
    digits = digits[2:] if digits[:2] in ("0x", "0X") else digits
    if len(digits) != 2 * SEED_SIZE or not all(char in "0123456789abcdefABCDEF" for char in digits):
        raise KeyStoreError(f"a secret seed is {2 * SEED_SIZE} hex digits (got {len(digits)} characters)")
    return bytes.fromhex(digits)


# -- internals ------------------------------------------------------------------------------


def _checked_name(what: str, name: str) -> str:
    # Names become path components: the pattern rules out separators, "..", hidden and empty names.
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise InvalidKeyName(
            f"invalid {what} name {name!r}: use 1-64 characters of A-Z a-z 0-9 . _ - (not starting with . _ -)"
        )
    return name


def _names_in(directory: Path, *, files: bool) -> list[str]:
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyStoreError(f"cannot read {directory}: {_reason(exc)}") from None
    names = []
    for entry in entries:
        # Temporary files (".name.tmp") and other stray entries are not keys.
        if not _NAME_PATTERN.fullmatch(entry.name):
            continue
        if entry.is_file() if files else entry.is_dir():
            names.append(entry.name)
    return sorted(names)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _keypair_from_seed(seed: bytes) -> Keypair:
    if not isinstance(seed, bytes) or len(seed) != SEED_SIZE:
        raise KeyStoreError(f"a secret seed is {SEED_SIZE} bytes")
    return Keypair(seed)


def _derive_key(password: str, salt: bytes, kdf: KdfParams) -> bytes:
    # NFC so that the same password typed on systems that compose accents differently still opens
    # the key.
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    try:
        return argon2id.kdf(
            nacl.secret.SecretBox.KEY_SIZE, secret, salt, opslimit=kdf.opslimit, memlimit=kdf.memlimit
        )
    except (MemoryError, RuntimeError, nacl.exceptions.CryptoError) as exc:
        raise KeyStoreError(f"key derivation failed ({_reason(exc)}): not enough memory?") from None


def _refuse_existing(path: Path, message: str) -> None:
    if os.path.lexists(path):
        raise KeyExists(f"{message} ({path}); keys are never replaced: move the old file away first")


def _read_key_file(path: Path, *, missing: str | None = None, check_mode: bool = True) -> bytes:
    try:
        # O_NONBLOCK: a FIFO in place of a key file would otherwise block this open until some
        # process writes to it; it is refused below as not a regular file instead.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyNotFound(missing or f"no such key file: {path}") from None
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {_reason(exc)}") from None
    with os.fdopen(fd, "rb") as handle:
        # The mode is checked on the open descriptor, so it is the mode of the file that is read.
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise CorruptKeyFile(f"key file {path} is not a regular file")
        mode = stat.S_IMODE(status.st_mode)
        if check_mode and mode & 0o077:
            raise InsecureKeyFile(
                f"key file {path} has mode {mode:04o}, so other users may read it; "
                f"only its owner may (run: chmod 600 {path})"
            )
        try:
            raw = handle.read(MAX_KEY_FILE_BYTES + 1)
        except OSError as exc:
            raise KeyStoreError(f"cannot read key file {path}: {_reason(exc)}") from None
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise CorruptKeyFile(f"key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
    return raw


def _load_document(raw: bytes, path: Path, kind: str) -> dict[str, Any]:
    def reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            raise ValueError("duplicate field")
        return document

    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=reject_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise CorruptKeyFile(f"key file {path} is not valid JSON (truncated or damaged?)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise CorruptKeyFile(f"{path} is not a p2pnode key file")
    version = document.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise CorruptKeyFile(f"key file {path} has format version {version!r}; this p2pnode reads version 1")
    if document.get("kind") != kind:
        raise CorruptKeyFile(f"key file {path} holds a {document.get('kind')!r}, not a {kind}")
    return document


def _require_fields(value: Any, fields: set[str], where: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != fields:
        found = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise CorruptKeyFile(
            f"key file {path}: {where} must have exactly the fields {sorted(fields)}, has {found}"
        )
    return value


def _hex_field(document: dict[str, Any], name: str, size: int, path: Path) -> bytes:
    value = document[name]
    if not isinstance(value, str) or len(value) != 2 * size or not re.fullmatch(r"[0-9a-f]*", value):
        raise CorruptKeyFile(f"key file {path}: {name!r} must be {size} bytes as lowercase hex")
    return bytes.fromhex(value)


def _int_field(document: dict[str, Any], name: str, low: int, high: int, path: Path) -> int:
    value = document[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise CorruptKeyFile(f"key file {path}: {name!r} must be an integer from {low} to {high}")
    return value


def _address_field(document: dict[str, Any], path: Path) -> str:
    address = document["address"]
    try:
        decode_address(address)
    except AddressError as exc:
        raise CorruptKeyFile(f"key file {path}: bad address: {exc}") from None
    return str(address)


def _parse_coldkey(raw: bytes, path: Path) -> _EncryptedColdkey:
    document = _load_document(raw, path, "coldkey")
    _require_fields(document, {"format", "version", "kind", "address", "kdf", "cipher"}, "the file", path)
    kdf = _require_fields(document["kdf"], {"name", "opslimit", "memlimit", "salt"}, "'kdf'", path)
    cipher = _require_fields(document["cipher"], {"name", "nonce", "ciphertext"}, "'cipher'", path)
    if kdf["name"] != KDF_NAME or cipher["name"] != CIPHER_NAME:
        raise CorruptKeyFile(f"key file {path}: unsupported algorithms {kdf['name']!r} / {cipher['name']!r}")
    return _EncryptedColdkey(
        address=_address_field(document, path),
        kdf=KdfParams(
            _int_field(kdf, "opslimit", argon2id.OPSLIMIT_MIN, _MAX_OPSLIMIT, path),
            _int_field(kdf, "memlimit", argon2id.MEMLIMIT_MIN, _MAX_MEMLIMIT, path),
        ),
        salt=_hex_field(kdf, "salt", _SALT_SIZE, path),
        nonce=_hex_field(cipher, "nonce", _NONCE_SIZE, path),
        ciphertext=_hex_field(cipher, "ciphertext", _CIPHERTEXT_SIZE, path),
    )


def _parse_hotkey(raw: bytes, path: Path) -> _PlainHotkey:
    document = _load_document(raw, path, "hotkey")
    _require_fields(document, {"format", "version", "kind", "address", "seed"}, "the file", path)
    return _PlainHotkey(
        address=_address_field(document, path), seed=_hex_field(document, "seed", SEED_SIZE, path)
    )


def _decrypt_coldkey(parsed: _EncryptedColdkey, password: str, path: Path) -> Keypair:
    box = nacl.secret.SecretBox(_derive_key(password, parsed.salt, parsed.kdf))
    try:
        seed = box.decrypt(parsed.ciphertext, parsed.nonce)
    except nacl.exceptions.CryptoError:
        # Authenticated encryption cannot tell a wrong password from an altered ciphertext.
        raise WrongPassword(f"wrong password for coldkey {path} (or the file was altered)") from None
    keypair = Keypair(seed)
    if keypair.address != parsed.address:
        raise CorruptKeyFile(f"key file {path}: its address does not match the key it holds")
    return keypair


def _hotkey_keypair(parsed: _PlainHotkey, path: Path) -> Keypair:
    keypair = Keypair(parsed.seed)
    if keypair.address != parsed.address:
        raise CorruptKeyFile(f"key file {path}: its address does not match the key it holds")
    return keypair


def _write_new_file(path: Path, data: bytes, exists_message: str) -> None:
    """Write `data` to `path`, which must not exist, so that `path` is never seen half-written."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temporary, flags, _PRIVATE_FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() fails if `path` exists: no window where a racing writer is overwritten.
            os.link(temporary, path)
        except FileExistsError:
            raise KeyExists(f"{exists_message} ({path})") from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                raise
            # File systems without hard links: check-then-rename, with a small race window.
            _refuse_existing(path, exists_message)
            os.replace(temporary, path)
    finally:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
    directory_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
