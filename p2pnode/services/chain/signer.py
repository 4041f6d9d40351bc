"""The validator's signer: every block and finality vote it signs passes its signing record first.

A node holds its validator key only through this object, so no code path can sign a block or a
vote that the on-disk record (`p2pnode.store.slashing_protection`) has not approved and stored.
"""

from __future__ import annotations

from p2pnode.chain.encoding import sha256
from p2pnode.chain.types import Block, FinalityVote, SignedVote, randao_message
from p2pnode.store.slashing_protection import SlashingProtection
from protocols import codec
from protocols.crypto import Keypair


class GuardedSigner:
    """Signs blocks and votes for one validator key, never twice in conflicting ways."""

    def __init__(self, key: Keypair, record: SlashingProtection) -> None:
        self.key = key
        self.record = record

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign_block(self, block: Block) -> Block | None:
        """The signed block, or None when signing could make this validator a double proposer."""
        header = block.header
        if header.proposer != self.key.public_key:
            raise ValueError("block names another proposer")
        if not self.record.may_propose(header.slot, header.hash):
            return None
        sig = self.key.sign(header.signing_bytes())
        return Block(header=header, sig=sig, txs=block.txs, votes=block.votes)

    def randao_reveal(self, chain_id: str, slot: int) -> bytes:
        """The reveal a block at `slot` carries: deterministic, so signing it again is harmless."""
        return self.key.sign(randao_message(chain_id, slot))

    def sign_vote(self, vote: FinalityVote) -> SignedVote | None:
        """The signed vote, or None when it could be a double or surround vote."""
        if vote.validator != self.key.public_key:
            raise ValueError("vote names another validator")
        vote_hash = sha256(codec.encode(vote))
        if not self.record.may_vote(vote.source.epoch, vote.target.epoch, vote_hash):
            return None
        return SignedVote(vote=vote, sig=self.key.sign(vote.signing_bytes()))

    def sign_tx_bytes(self, message: bytes) -> bytes:
        """Transactions (slashing evidence the node submits) are not slashable: sign directly."""
        return self.key.sign(message)
