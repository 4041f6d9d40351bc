"""Stateless verification of signed chain objects (signatures, shape) before the state transition.

Everything here is pure; a failure names its reason. Stateful checks (nonce, balance, subnet, ...)
are the chain's (`p2pnode.chain.transition`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from p2pnode.chain.schema import ChainObject
from p2pnode.chain.types import (
    AddStake,
    Block,
    CreateSubnet,
    Header,
    Register,
    SignedHeader,
    SignedTx,
    SignedVote,
    SlashDoubleProposal,
    SlashVote,
    hotkey_binding_message,
    randao_message,
)
from protocols import codec
from protocols.crypto import verify
from protocols.network import Checked, Verdict

T = TypeVar("T", bound=ChainObject)


class InvalidSignature(ValueError):
    """A signature does not verify; `reason` names what was signed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_on_chain(cls: type[T], data: bytes, chain_id: str, chain_of: Callable[[T], str],
                    max_bytes: int = codec.DEFAULT_MAX_BYTES) -> T | Checked:
    """A gossip guard's first step: `data` decoded as `cls` when it is well formed and `chain_of`
    it names `chain_id`; otherwise the REJECT for the guard to return (reason `malformed` or
    `wrong_chain`)."""
    try:
        obj = codec.decode(cls, data, max_bytes=max_bytes)
    except codec.MalformedMessage:
        return Checked(Verdict.REJECT, reason="malformed")
    if chain_of(obj) != chain_id:
        return Checked(Verdict.REJECT, reason="wrong_chain")
    return obj


def block_chain(block: Block) -> str:
    return block.header.chain


def vote_chain(signed_vote: SignedVote) -> str:
    return signed_vote.vote.chain


def tx_signature_ok(stx: SignedTx) -> bool:
    return verify(stx.tx.sender, stx.tx.signing_bytes(), stx.sig)


def vote_signature_ok(sv: SignedVote) -> bool:
    return verify(sv.vote.validator, sv.vote.signing_bytes(), sv.sig)


def header_signature_ok(sh: SignedHeader) -> bool:
    return verify(sh.header.proposer, sh.header.signing_bytes(), sh.sig)


def randao_reveal_ok(header: Header) -> bool:
    """The reveal is the proposer's (unique, deterministic) signature of the block's slot."""
    return verify(header.proposer, randao_message(header.chain, header.slot), header.randao_reveal)


def check_tx_signatures(stx: SignedTx) -> None:
    """The transaction's signature, the signatures inside slashing evidence and a hotkey's binding."""
    if not tx_signature_ok(stx):
        raise InvalidSignature("bad_signature")
    body = stx.tx.body
    if isinstance(body, SlashDoubleProposal):
        if not (header_signature_ok(body.first) and header_signature_ok(body.second)):
            raise InvalidSignature("bad_evidence_signature")
    elif isinstance(body, SlashVote):
        if not (vote_signature_ok(body.first) and vote_signature_ok(body.second)):
            raise InvalidSignature("bad_evidence_signature")
    elif isinstance(body, AddStake | Register | CreateSubnet) and body.hotkey_sig:
        if not verify(body.hotkey, hotkey_binding_message(stx.tx.chain, stx.tx.sender), body.hotkey_sig):
            raise InvalidSignature("bad_hotkey_signature")


def check_block_signatures(
    block: Block,
    tx_verified: Callable[[SignedTx], bool] | None = None,
    vote_verified: Callable[[SignedVote], bool] | None = None,
) -> None:
    """Proposer signature and reveal, every transaction's and every vote's; raises InvalidSignature."""
    if not header_signature_ok(block.signed_header):
        raise InvalidSignature("bad_block_signature")
    check_body_signatures(block, tx_verified, vote_verified)


def check_body_signatures(
    block: Block,
    tx_verified: Callable[[SignedTx], bool] | None = None,
    vote_verified: Callable[[SignedVote], bool] | None = None,
) -> None:
    """The RANDAO reveal, every transaction's and every vote's signature (for a block whose header
    signature a gossip guard already verified); raises InvalidSignature.

    `tx_verified` / `vote_verified` name the objects whose signatures were verified already (the
    same bytes sitting in the mempool or the vote pool): those are not verified again."""
    if not randao_reveal_ok(block.header):
        raise InvalidSignature("bad_randao_reveal")
    for index, stx in enumerate(block.txs):
        if tx_verified is not None and tx_verified(stx):
            continue
        try:
            check_tx_signatures(stx)
        except InvalidSignature as exc:
            raise InvalidSignature(f"{exc.reason} (tx {index})") from None
    for index, sv in enumerate(block.votes):
        if vote_verified is not None and vote_verified(sv):
            continue
        if not vote_signature_ok(sv):
            raise InvalidSignature(f"bad_vote_signature (vote {index})")
