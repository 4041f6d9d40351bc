"""Records of governance: proposals, votes and the stake a vote locks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pnode.chain.records.fields import (
    MalformedRecord,
    check_key,
    check_key_or_empty,
    check_list,
    check_str,
    check_uint,
    map_fields,
)
from p2pnode.chain.types import VOTE_CHOICES

# ---------------------------------------------------------------- governance


# Stored under the attribute names, in this order in the API's JSON.
_PROPOSAL_NAMES = ("id", "proposer", "action", "param", "value", "owner", "task", "version", "activation_height",
                   "text", "deposit", "start", "end", "enact_at", "status", "yes", "no", "abstain", "voters", "result")
_PROPOSAL_FIELDS = frozenset(_PROPOSAL_NAMES)


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
        k = "proposal"
        v = map_fields(k, value, _PROPOSAL_FIELDS)
        return cls(
            id=check_uint(k, "id", v["id"]), proposer=check_key(k, "proposer", v["proposer"]), action=check_str(k, "action", v["action"]),
            param=check_str(k, "param", v["param"]), value=check_uint(k, "value", v["value"]), owner=check_key_or_empty(k, "owner", v["owner"]),
            task=check_str(k, "task", v["task"]), version=check_uint(k, "version", v["version"]),
            activation_height=check_uint(k, "activation_height", v["activation_height"]), text=check_str(k, "text", v["text"]),
            deposit=check_uint(k, "deposit", v["deposit"]), start=check_uint(k, "start", v["start"]), end=check_uint(k, "end", v["end"]),
            enact_at=check_uint(k, "enact_at", v["enact_at"]), status=check_str(k, "status", v["status"]),
            yes=check_uint(k, "yes", v["yes"]), no=check_uint(k, "no", v["no"]), abstain=check_uint(k, "abstain", v["abstain"]),
            voters=check_uint(k, "voters", v["voters"]), result=check_str(k, "result", v["result"]),
        )

    def to_state(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PROPOSAL_NAMES}

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
        check_list("vote", "record", value, 2)
        choice = check_str("vote", "choice", value[0])
        if choice not in VOTE_CHOICES:
            raise MalformedRecord("vote", f"choice {choice!r}")
        return cls(choice, check_uint("vote", "weight", value[1]))

    def to_state(self) -> list[Any]:
        return [self.choice, self.weight]


@dataclass(frozen=True, slots=True)
class VoteLock:
    """`Q|cold`: stake a coldkey's open votes counted, locked until `until_height`."""

    amount: int
    until_height: int

    @classmethod
    def from_state(cls, value: Any) -> VoteLock:
        check_list("vote lock", "record", value, 2)
        return cls(check_uint("vote lock", "amount", value[0]), check_uint("vote lock", "until_height", value[1]))

    def to_state(self) -> list[int]:
        return [self.amount, self.until_height]
