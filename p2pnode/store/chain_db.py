"""The canonical chain on a store: import a verified block on the head, build a block, roll back."""

from __future__ import annotations

from dataclasses import dataclass

from p2pnode.chain import accumulator
from p2pnode.chain.errors import BlockInvalid
from p2pnode.chain.state import State
from p2pnode.chain.transition import apply_block, apply_block_body
from p2pnode.chain.types import Block, Header, SignedTx, SignedVote, body_root
from p2pnode.store.sqlite_store import Store
from protocols.crypto import Keypair
from protocols.validation import InvalidSignature, check_block_signatures


@dataclass(frozen=True)
class ImportResult:
    hash: bytes
    height: int
    state_root: bytes


class ChainDB:
    """The chain as stored: head state, import and production on the head."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def head_state(self) -> State:
        """A fresh overlay over the head state (nothing written reaches the store)."""
        return State(self.store, self.store.head_accumulator())

    @property
    def head(self) -> Header:
        header = self.store.header(self.store.head_hash)
        assert header is not None
        return header

    def import_block(self, block: Block, *, signatures_checked: bool = False) -> ImportResult:
        """Verify and apply `block` on the head and commit it; raises BlockInvalid, keeping nothing."""
        if block.header.parent != self.store.head_hash:
            raise BlockInvalid("unknown_parent", "block does not extend the head")
        if not signatures_checked:
            try:
                check_block_signatures(block)
            except InvalidSignature as exc:
                raise BlockInvalid("bad_signature", exc.reason) from None
        state = self.head_state()
        apply_block(state, block)
        self.store.commit_block(block, state.changes(), state.accumulator())
        return ImportResult(block.hash, block.header.height, block.header.state_root)

    def build_block(
        self,
        proposer: Keypair,
        slot: int,
        timestamp_ms: int,
        txs: list[SignedTx] | tuple[SignedTx, ...] = (),
        votes: list[SignedVote] | tuple[SignedVote, ...] = (),
    ) -> Block:
        """Assemble and sign a block on the head (the given transactions must all apply)."""
        parent = self.head
        state = self.head_state()
        txs, votes = tuple(txs), tuple(votes)
        header = Header(
            chain=parent.chain,
            version=state.param("protocol_version"),
            height=parent.height + 1,
            slot=slot,
            parent=parent.hash,
            proposer=proposer.public_key,
            state_root=bytes(32),
            tx_root=body_root(txs, votes),
            timestamp_ms=timestamp_ms,
        )
        draft = Block(header=header, sig=bytes(64), txs=txs, votes=votes)
        apply_block_body(state, draft)
        header = Header(**{**_fields(header), "state_root": accumulator.digest(state.accumulator())})
        return Block(header=header, sig=proposer.sign(header.signing_bytes()), txs=txs, votes=votes)


def _fields(header: Header) -> dict[str, object]:
    return {name: getattr(header, name) for name in Header.SCHEMA}
