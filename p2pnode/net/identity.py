"""Node identity: the libp2p key pair and PeerID derived from the node's ed25519 hotkey."""

from __future__ import annotations

import functools

from libp2p.crypto.ed25519 import Ed25519PublicKey
from libp2p.crypto.ed25519 import create_new_key_pair as create_ed25519_key_pair
from libp2p.crypto.keys import KeyPair, KeyType
from libp2p.peer.id import ID


def key_pair_from_seed(seed: bytes) -> KeyPair:
    """The libp2p ed25519 key pair of a 32-byte secret seed (the node's hotkey seed)."""
    if len(seed) != 32:
        raise ValueError(f"an ed25519 seed is 32 bytes, got {len(seed)}")
    return create_ed25519_key_pair(seed)


def peer_id_from_seed(seed: bytes) -> str:
    """The PeerID (base58, `12D3KooW...`) of the node whose hotkey seed is `seed`."""
    return ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()


def peer_id_from_pubkey(public_key: bytes) -> str:
    """The PeerID of a 32-byte ed25519 public key (a hotkey), e.g. to find a neuron via the DHT."""
    if len(public_key) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, got {len(public_key)}")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def parse_peer_id(text: str) -> ID:
    """Parse a p2pnode PeerID strictly: canonical base58 of an inlined ed25519 key.

    `ID.from_base58` accepts any base58 string ("nonsense" included); every p2pnode peer is an
    ed25519 hotkey, so anything else is refused with ValueError. Valid ids are remembered (a
    bounded cache): base58 in pure Python costs ~0.4 ms a parse, and every request parses its
    peer's id several times.
    """
    return _parse_peer_id_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_peer_id_cached(text: str) -> ID:
    # lru_cache keeps only returned values: a refused id raises and is parsed again next time.
    try:
        peer = ID.from_base58(text)
    except Exception as exc:
        raise ValueError(f"not a peer id: {text!r}") from exc
    key = peer.extract_public_key()
    if key is None or key.get_type() != KeyType.Ed25519 or peer.to_base58() != text:
        raise ValueError(f"not an ed25519 peer id: {text!r}")
    return peer
