"""ed25519 signing keys and signature checks: the one place that calls PyNaCl's signing API.

Everything else signs with a :class:`Keypair` and checks with :func:`verify`. Signatures here are
over raw bytes; the domain tag and chain id that every protocol signature must cover (docs/keys.md)
are added by the caller that builds the signed bytes, not here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import nacl.exceptions
import nacl.signing
import nacl.utils

from p2pnode.chain.address import encode_address

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "Keypair",
    "generate_keypair",
    "keypair_from_seed",
    "verify",
]

SEED_SIZE = 32
"""Bytes in an ed25519 secret seed (the whole secret: the signing key is derived from it)."""
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# Distinct public keys whose parsed form is kept. A node checks signatures from a bounded set of
# peers and neurons, so a few thousand covers the working set; the bound keeps a flood of
# signatures under fresh keys from growing memory.
_VERIFY_KEY_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True, repr=False)
class Keypair:
    """An ed25519 key pair, built from its 32-byte secret seed.

    The public key is derived from the seed, so the two can never disagree. ``repr`` shows only
    the address, so a key pair in a log line or traceback never leaks its secret.
    """

    seed: bytes
    public_key: bytes = field(init=False)
    _signing_key: nacl.signing.SigningKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_SIZE:
            raise ValueError(f"an ed25519 seed is {SEED_SIZE} bytes")
        signing_key = nacl.signing.SigningKey(self.seed)
        # Frozen dataclass: derived fields are set once, here.
        object.__setattr__(self, "_signing_key", signing_key)
        object.__setattr__(self, "public_key", bytes(signing_key.verify_key))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of `message`."""
        return self._signing_key.sign(message).signature

    @property
    def address(self) -> str:
        """The public key in its checksummed text form (``p2p1...``)."""
        return encode_address(self.public_key)

    def __repr__(self) -> str:
        return f"Keypair(address={self.address!r})"


def keypair_from_seed(seed: bytes) -> Keypair:
    """The key pair whose secret seed is `seed` (32 bytes); raises ValueError otherwise."""
    return Keypair(bytes(seed))


def generate_keypair() -> Keypair:
    """A new key pair from the operating system's secure random source."""
    return Keypair(nacl.utils.random(SEED_SIZE))


@functools.lru_cache(maxsize=_VERIFY_KEY_CACHE_SIZE)
def _verify_key(public_key: bytes) -> nacl.signing.VerifyKey:
    return nacl.signing.VerifyKey(public_key)


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is a valid ed25519 signature of `message` under `public_key`.

    Never raises: a key or signature of the wrong type or length, a key that is not a valid curve
    point, or a wrong signature all give ``False``, so callers can use it on untrusted input.
    """
    byte_types = (bytes, bytearray, memoryview)
    if not (
        isinstance(public_key, byte_types)
        and isinstance(message, byte_types)
        and isinstance(signature, byte_types)
    ):
        return False
    public_key, signature = bytes(public_key), bytes(signature)
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        _verify_key(public_key).verify(bytes(message), signature)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        # CryptoError covers BadSignatureError and libsodium's refusal of invalid or
        # small-order public keys.
        return False
    return True
