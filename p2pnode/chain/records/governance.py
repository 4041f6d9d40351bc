"""Records of governance: proposals, votes and the stake a vote locks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.chain.records.fields import (
    MalformedRecord,
    MapLayout,
    check_key,
    check_key_or_empty,
    check_str,
    check_uint,
    list_fields,
)
from p2pnode.chain.types import VOTE_CHOICES

# ---------------------------------------------------------------- governance


# Stored under the attribute names, in this order in the API's JSON.
_PROPOSAL_LAYOUT = MapLayout("proposal", required=tuple((name, name, check) for name, check in (
    ("id", check_uint), ("proposer", check_key), ("action", check_str), ("param", check_str), ("value", check_uint),
    ("owner", check_key_or_empty), ("task", check_str), ("version", check_uint), ("activation_height", check_uint),
    ("text", check_str), ("deposit", check_uint), ("start", check_uint), ("end", check_uint),
    ("enact_at", check_uint), ("status", check_str), ("yes", check_uint), ("no", check_uint),
    ("abstain", check_uint), ("voters", check_uint), ("result", check_str),
)))


@dataclass(slots=True)
class Proposal:
    """`P|id`: a governance proposal, its stake-weighted tally and its lifecycle status."""

    id: int
    proposer: bytes
    action: str  # set_param | create_subnet | upgrade | signal
    param: str
    value: int
    owner: bytes  # the owner hotkey of a create_subnet proposal, else empty
    task: str
    version: int
    activation_height: int
    text: str
    deposit: int
    start: int  # block it was proposed at
    end: int  # last block of voting
    enact_at: int
    status: str  # voting | no_quorum | rejected | passed | enacted | failed
    yes: int = 0
    no: int = 0
    abstain: int = 0
    voters: int = 0
    result: str = ""  # what enactment did, or why it failed

    @classmethod
    def from_state(cls, value: Any) -> Proposal:
        return cls(**_PROPOSAL_LAYOUT.read(value))

    def to_state(self) -> dict[str, Any]:
        return _PROPOSAL_LAYOUT.write(self)

    def add_to_tally(self, choice: str, weight: int) -> None:
        """Add (or with a negative weight withdraw) a vote's weight to one of `VOTE_CHOICES`."""
        if choice == "yes":
            self.yes += weight
        elif choice == "no":
            self.no += weight
        elif choice == "abstain":
            self.abstain += weight
        else:
            raise ValueError(f"not a vote choice: {choice!r}")  # callers pass a validated choice


@dataclass(frozen=True, slots=True)
class ProposalVote:
    """`V|id|cold`: a coldkey's (latest) vote on a proposal and the stake it counted."""

    choice: str
    weight: int

    @classmethod
    def from_state(cls, value: Any) -> ProposalVote:
        choice, weight = list_fields("vote", value, (("choice", check_str), ("weight", check_uint)))
        if choice not in VOTE_CHOICES:
            raise MalformedRecord("vote", f"choice {choice!r}")
        return cls(choice, weight)

    def to_state(self) -> list[Any]:
        return [self.choice, self.weight]


@dataclass(frozen=True, slots=True)
class VoteLock:
    """`Q|cold`: stake a coldkey's open votes counted, locked until `until_height`."""

    amount: int
    until_height: int

    @classmethod
    def from_state(cls, value: Any) -> VoteLock:
        return cls(*list_fields("vote lock", value, (("amount", check_uint), ("until_height", check_uint))))

    def to_state(self) -> list[int]:
        return [self.amount, self.until_height]
