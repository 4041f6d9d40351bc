"""Sync messages and their request handlers, on byte payloads (the same code serves libp2p and the
simulator).

Protocols (ids in `protocols.topics`):

- status: the request is the caller's `Status`, the response the server's `Status`; both sides learn
  the other's chain, genesis, head and finalized checkpoint in one round trip.
- blocks_by_range: `BlocksByRangeRequest(start, count)` asks for the server's canonical blocks at
  heights start .. start+count-1; the response lists encoded blocks in height order, possibly fewer
  than asked (the server stops at its head or at `MAX_RANGE_RESPONSE_BYTES`). Each block is decoded
  and verified on its own by the caller.
- state_chunk: `StateChunkRequest(block, after, max_items)` asks for the state after the server's
  current finalized checkpoint `block` (or the finalized checkpoint before it): its key/value items with keys above `after`, in key order,
  at most `max_items` and about `STATE_CHUNK_BYTES`; `done` says nothing follows. A server whose
  finalized checkpoint is another block answers `StateChunkResponse(error="not_current_checkpoint")`.
  The caller checks the whole set against the checkpoint header's state root.
- vset_walk: `ValidatorSetWalkRequest(checkpoint, after_epoch)` asks for the validator-set walk from
  genesis to the server's current finalized checkpoint: the `ValidatorSetStep`s of epochs above
  `after_epoch`, oldest first, at most `MAX_WALK_STEPS` and about `WALK_BYTES`; `done` says the last
  one is the checkpoint. The caller verifies each step with the validator set the step before it
  (or genesis) names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from p2pnode.chain.schema import (
    B32,
    BOOL,
    HEIGHT,
    MAX_HEIGHT,
    U16,
    Bytes,
    ChainObject,
    FieldType,
    ListOf,
    Struct,
    Text,
    chain_object,
)
from p2pnode.chain.types import CHAIN_ID, Block, Header, SignedVote
from protocols import codec, topics
from protocols.network import NetworkAPI

MAX_BLOCKS_PER_REQUEST = 64
MAX_BLOCK_BYTES = 4 << 20  # the largest max_block_bytes governance may set
MAX_RANGE_RESPONSE_BYTES = 8 << 20
MAX_STATUS_BYTES = 512
MAX_RANGE_REQUEST_BYTES = 64


@chain_object
class Status(ChainObject):
    """A peer's chain at a glance. `justified_epoch` is 0 before block 1 (nothing voted yet)."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "chain": CHAIN_ID,
        "genesis": B32,
        "head_height": HEIGHT,
        "head_slot": HEIGHT,
        "head_hash": B32,
        "justified_epoch": HEIGHT,
        "finalized_epoch": HEIGHT,
        "finalized_height": HEIGHT,
        "finalized_hash": B32,
    }
    chain: str
    genesis: bytes
    head_height: int
    head_slot: int
    head_hash: bytes
    justified_epoch: int
    finalized_epoch: int
    finalized_height: int
    finalized_hash: bytes


@chain_object
class BlocksByRangeRequest(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"start": HEIGHT, "count": U16}
    start: int
    count: int


@chain_object
class BlocksByRangeResponse(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "blocks": ListOf(Bytes(max_len=MAX_BLOCK_BYTES), MAX_BLOCKS_PER_REQUEST),
    }
    blocks: tuple[bytes, ...]


def encode_status(status: Status) -> bytes:
    return codec.encode(status)


def decode_status(data: bytes) -> Status:
    """Raises MalformedMessage."""
    return codec.decode(Status, data, max_bytes=MAX_STATUS_BYTES)


def handle_status(request: bytes, local: Callable[[], Status], on_peer_status: Callable[[Status], None]) -> bytes:
    """Answer a status request with ours; the caller's status is passed on if it decodes."""
    peer = decode_status(request)
    on_peer_status(peer)
    return encode_status(local())


def encode_range_request(start: int, count: int) -> bytes:
    return codec.encode(BlocksByRangeRequest(start=start, count=min(count, MAX_BLOCKS_PER_REQUEST)))


def handle_blocks_by_range(request: bytes, read_range: Callable[[int, int], list[bytes]]) -> bytes:
    """Serve canonical blocks; `read_range(start, count)` returns encoded blocks in height order."""
    req = codec.decode(BlocksByRangeRequest, request, max_bytes=MAX_RANGE_REQUEST_BYTES)
    # start + count stays a height (below 2^63), so the store is never asked beyond one.
    count = min(req.count, MAX_BLOCKS_PER_REQUEST, MAX_HEIGHT - req.start)
    out: list[bytes] = []
    budget = MAX_RANGE_RESPONSE_BYTES - 1024
    for data in read_range(req.start, count):
        if len(data) > budget:
            break
        budget -= len(data) + 8
        out.append(data)
    return codec.encode(BlocksByRangeResponse(blocks=tuple(out)))


def decode_range_response(data: bytes, requested: int) -> list[bytes]:
    """The encoded blocks of a response; raises MalformedMessage (also for more than requested)."""
    resp = codec.decode(BlocksByRangeResponse, data, max_bytes=MAX_RANGE_RESPONSE_BYTES)
    if len(resp.blocks) > requested:
        raise codec.MalformedMessage("more blocks than requested")
    return list(resp.blocks)


async def request_range(network: NetworkAPI, chain_id: str, peer_id: str, start: int, count: int,
                        timeout_s: float) -> list[bytes]:
    """Ask `peer_id` for the blocks from height `start` (at most `count`): their encoded bytes as
    served. Raises RequestError (no answer) or MalformedMessage (a bad response)."""
    data = await network.request(peer_id, topics.blocks_by_range_protocol(chain_id), encode_range_request(start, count),
                                 timeout=timeout_s, max_response_bytes=MAX_RANGE_RESPONSE_BYTES)
    return decode_range_response(data, count)


def decode_blocks(encoded: list[bytes]) -> list[Block]:
    """The blocks of a range response; raises MalformedMessage."""
    return [codec.decode(Block, data, max_bytes=MAX_BLOCK_BYTES) for data in encoded]


# ---------------------------------------------------------------- state chunks

MAX_STATE_KEY_BYTES = 1024
MAX_STATE_VALUE_BYTES = 4 << 20
MAX_STATE_CHUNK_ITEMS = 4096
# A server stops adding items past this size (but always sends at least one).
STATE_CHUNK_BYTES = 1 << 20
MAX_STATE_CHUNK_RESPONSE_BYTES = STATE_CHUNK_BYTES + MAX_STATE_VALUE_BYTES + MAX_STATE_KEY_BYTES + 4096
MAX_STATE_CHUNK_REQUEST_BYTES = MAX_STATE_KEY_BYTES + 128
STATE_CHUNK_ERRORS = frozenset({"", "not_current_checkpoint", "rate_limited"})


@chain_object
class StateItem(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "key": Bytes(max_len=MAX_STATE_KEY_BYTES),
        "value": Bytes(max_len=MAX_STATE_VALUE_BYTES),
    }
    key: bytes
    value: bytes


@chain_object
class StateChunkRequest(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "block": B32,
        "after": Bytes(max_len=MAX_STATE_KEY_BYTES),
        "max_items": U16,
    }
    block: bytes
    after: bytes  # b"" for the first chunk (every key is above it)
    max_items: int


@chain_object
class StateChunkResponse(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "error": Text(max_len=32, choices=STATE_CHUNK_ERRORS),
        "items": ListOf(Struct(StateItem), MAX_STATE_CHUNK_ITEMS),
        "done": BOOL,
    }
    error: str
    items: tuple[StateItem, ...]
    done: bool


def encode_state_chunk_request(block: bytes, after: bytes, max_items: int) -> bytes:
    return codec.encode(StateChunkRequest(block=block, after=after, max_items=min(max_items, MAX_STATE_CHUNK_ITEMS)))


def decode_state_chunk_request(data: bytes) -> StateChunkRequest:
    """Raises MalformedMessage."""
    return codec.decode(StateChunkRequest, data, max_bytes=MAX_STATE_CHUNK_REQUEST_BYTES)


def encode_state_chunk(items: list[tuple[bytes, bytes]], done: bool) -> bytes:
    return codec.encode(StateChunkResponse(
        error="", items=tuple(StateItem(key=k, value=v) for k, v in items), done=done))


def encode_state_chunk_error(error: str) -> bytes:
    return codec.encode(StateChunkResponse(error=error, items=(), done=False))


def decode_state_chunk(data: bytes, after: bytes, max_items: int) -> StateChunkResponse:
    """A response checked for shape: keys strictly increasing above `after`, at most `max_items`.
    Raises MalformedMessage."""
    resp = codec.decode(StateChunkResponse, data, max_bytes=MAX_STATE_CHUNK_RESPONSE_BYTES)
    if len(resp.items) > max_items:
        raise codec.MalformedMessage("more state items than requested")
    previous = after
    for index, item in enumerate(resp.items):
        if (index > 0 or after) and item.key <= previous:
            raise codec.MalformedMessage("state keys not strictly increasing above the request's key")
        previous = item.key
    if not resp.error and not resp.done and not resp.items:
        raise codec.MalformedMessage("an empty state chunk that is not the last")
    return resp


# ---------------------------------------------------------------- validator-set walk

# A step's validator-set values are canonical state values of at most 256 validators.
MAX_VSET_VALUE_BYTES = 64 << 10
MAX_STEP_VOTES = 256
MAX_WALK_STEPS = 64
# A server stops adding steps past this size (but always sends at least one).
WALK_BYTES = 1 << 20
MAX_WALK_RESPONSE_BYTES = 4 << 20
MAX_WALK_REQUEST_BYTES = 128
WALK_ERRORS = frozenset({"", "not_current_checkpoint", "rate_limited", "no_walk"})


@chain_object
class ValidatorSetStep(ChainObject):
    """A finalized checkpoint (its epoch and header) with what opens its state root to the two
    validator sets (`p2pnode.chain.state.compose_root`), the finality votes that target it, and
    the votes of its finality link (source = it, target = the next epoch)."""

    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "epoch": HEIGHT,
        "header": Struct(Header),
        "items_digest": B32,
        "vset": Bytes(max_len=MAX_VSET_VALUE_BYTES),
        "vset_next": Bytes(max_len=MAX_VSET_VALUE_BYTES),
        "votes": ListOf(Struct(SignedVote), MAX_STEP_VOTES),
        "link_votes": ListOf(Struct(SignedVote), MAX_STEP_VOTES),
    }
    epoch: int
    header: Header
    items_digest: bytes
    vset: bytes
    vset_next: bytes
    votes: tuple[SignedVote, ...]
    link_votes: tuple[SignedVote, ...]


@chain_object
class ValidatorSetWalkRequest(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {"checkpoint": B32, "after_epoch": HEIGHT}
    checkpoint: bytes  # the server's current finalized checkpoint, where the walk ends
    after_epoch: int  # steps of checkpoints after this epoch (0: from genesis)


@chain_object
class ValidatorSetWalkResponse(ChainObject):
    SCHEMA: ClassVar[dict[str, FieldType]] = {
        "error": Text(max_len=32, choices=WALK_ERRORS),
        "steps": ListOf(Struct(ValidatorSetStep), MAX_WALK_STEPS),
        "done": BOOL,
    }
    error: str
    steps: tuple[ValidatorSetStep, ...]
    done: bool  # the last step is the requested checkpoint


def encode_walk_request(checkpoint: bytes, after_epoch: int) -> bytes:
    return codec.encode(ValidatorSetWalkRequest(checkpoint=checkpoint, after_epoch=after_epoch))


def decode_walk_request(data: bytes) -> ValidatorSetWalkRequest:
    """Raises MalformedMessage."""
    return codec.decode(ValidatorSetWalkRequest, data, max_bytes=MAX_WALK_REQUEST_BYTES)


def encode_walk(steps: list[bytes], done: bool) -> bytes:
    """A response from steps stored encoded (`codec.encode(ValidatorSetStep)`)."""
    return codec.encode(ValidatorSetWalkResponse(
        error="", steps=tuple(codec.decode(ValidatorSetStep, s, max_bytes=MAX_WALK_RESPONSE_BYTES) for s in steps),
        done=done))


def encode_walk_error(error: str) -> bytes:
    return codec.encode(ValidatorSetWalkResponse(error=error, steps=(), done=False))


def decode_walk(data: bytes, after_epoch: int) -> ValidatorSetWalkResponse:
    """A response checked for shape: step epochs strictly increasing above `after_epoch`, at least
    one step unless it is an error. Raises MalformedMessage."""
    resp = codec.decode(ValidatorSetWalkResponse, data, max_bytes=MAX_WALK_RESPONSE_BYTES)
    previous = after_epoch
    for step in resp.steps:
        if step.epoch <= previous:
            raise codec.MalformedMessage("walk step epochs not strictly increasing above the request's epoch")
        previous = step.epoch
    if not resp.error and not resp.steps:
        raise codec.MalformedMessage("an empty walk")
    return resp
