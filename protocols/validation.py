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


# One signature to verify: (public key, message, signature, the reason it is refused with).
SignatureCheck = tuple[bytes, bytes, bytes, str]


def tx_signature_checks(stx: SignedTx) -> list[SignatureCheck]:
    """The transaction's signature, the signatures inside slashing evidence and a hotkey's binding,
    in the order they are checked."""
    tx = stx.tx
    checks = [(tx.sender, tx.signing_bytes(), stx.sig, "bad_signature")]
    body = tx.body
    if isinstance(body, SlashDoubleProposal):
        for sh in (body.first, body.second):
            checks.append((sh.header.proposer, sh.header.signing_bytes(), sh.sig, "bad_evidence_signature"))
    elif isinstance(body, SlashVote):
        for sv in (body.first, body.second):
            checks.append((sv.vote.validator, sv.vote.signing_bytes(), sv.sig, "bad_evidence_signature"))
    elif isinstance(body, AddStake | Register | CreateSubnet) and body.hotkey_sig:
        checks.append((body.hotkey, hotkey_binding_message(tx.chain, tx.sender), body.hotkey_sig, "bad_hotkey_signature"))
    return checks


def block_signature_checks(
    block: Block,
    tx_verified: Callable[[SignedTx], bool] | None = None,
    vote_verified: Callable[[SignedVote], bool] | None = None,
    *,
    header: bool = True,
) -> list[SignatureCheck]:
    """Every signature of a block, in the order they are checked: the proposer's (unless `header`
    is False: a gossip guard verified it), the RANDAO reveal, every transaction's, every vote's.

    `tx_verified` / `vote_verified` name the objects whose signatures were verified already (the
    same bytes sitting in the mempool or the vote pool): those are left out."""
    h = block.header
    checks: list[SignatureCheck] = []
    if header:
        checks.append((h.proposer, h.signing_bytes(), block.sig, "bad_block_signature"))
    checks.append((h.proposer, randao_message(h.chain, h.slot), h.randao_reveal, "bad_randao_reveal"))
    for index, stx in enumerate(block.txs):
        if tx_verified is not None and tx_verified(stx):
            continue
        for public_key, message, signature, reason in tx_signature_checks(stx):
            checks.append((public_key, message, signature, f"{reason} (tx {index})"))
    for index, sv in enumerate(block.votes):
        if vote_verified is not None and vote_verified(sv):
            continue
        checks.append((sv.vote.validator, sv.vote.signing_bytes(), sv.sig, f"bad_vote_signature (vote {index})"))
    return checks


def first_failure(checks: list[SignatureCheck]) -> str | None:
    """The reason of the first check whose signature does not verify; None when all do."""
    for public_key, message, signature, reason in checks:
        if not verify(public_key, message, signature):
            return reason
    return None


def _raise_first_failure(checks: list[SignatureCheck]) -> None:
    reason = first_failure(checks)
    if reason is not None:
        raise InvalidSignature(reason)


def check_tx_signatures(stx: SignedTx) -> None:
    """The transaction's signature, the signatures inside slashing evidence and a hotkey's binding."""
    _raise_first_failure(tx_signature_checks(stx))


def check_block_signatures(
    block: Block,
    tx_verified: Callable[[SignedTx], bool] | None = None,
    vote_verified: Callable[[SignedVote], bool] | None = None,
) -> None:
    """Proposer signature and reveal, every transaction's and every vote's; raises InvalidSignature."""
    _raise_first_failure(block_signature_checks(block, tx_verified, vote_verified))


def check_body_signatures(
    block: Block,
    tx_verified: Callable[[SignedTx], bool] | None = None,
    vote_verified: Callable[[SignedVote], bool] | None = None,
) -> None:
    """The RANDAO reveal, every transaction's and every vote's signature (for a block whose header
    signature a gossip guard already verified); raises InvalidSignature.

    `tx_verified` / `vote_verified` name the objects whose signatures were verified already (the
    same bytes sitting in the mempool or the vote pool): those are not verified again."""
    _raise_first_failure(block_signature_checks(block, tx_verified, vote_verified, header=False))
