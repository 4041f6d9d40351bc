"""Finality votes waiting for inclusion, and the watch for equivocation (double proposals, double and
surround votes) that turns what it sees into slashing evidence.

Pure bookkeeping, bounded by epoch windows and counts; the node feeds it what gossip delivers.
"""

from __future__ import annotations

from collections import OrderedDict

from p2pnode.chain import finality
from p2pnode.chain.types import SignedHeader, SignedVote, SlashDoubleProposal, SlashVote

# Recent votes kept per validator for surround detection.
VOTES_PER_VALIDATOR = 8


class VotePool:
    """Votes by (validator, target epoch), first seen wins; bounded to recent target epochs."""

    def __init__(self, max_votes: int = 4096, keep_epochs: int = 3) -> None:
        self.max_votes = max_votes
        self.keep_epochs = keep_epochs
        self._votes: OrderedDict[tuple[bytes, int], SignedVote] = OrderedDict()

    def __len__(self) -> int:
        return len(self._votes)

    def add(self, signed_vote: SignedVote) -> bool:
        key = (signed_vote.vote.validator, signed_vote.vote.target.epoch)
        if key in self._votes:
            return False
        self._votes[key] = signed_vote
        while len(self._votes) > self.max_votes:
            self._votes.popitem(last=False)
        return True

    def holds(self, signed_vote: SignedVote) -> bool:
        """Whether exactly this signed vote is pooled (so its signature was verified)."""
        return self._votes.get((signed_vote.vote.validator, signed_vote.vote.target.epoch)) == signed_vote

    def for_inclusion(self, epoch: int) -> list[SignedVote]:
        """Votes that a block in `epoch` may carry (its own and the previous epoch's targets)."""
        return [v for (_, target), v in self._votes.items() if target in (epoch, epoch - 1)]

    def prune(self, current_epoch: int) -> None:
        for key in [k for k in self._votes if k[1] < current_epoch - self.keep_epochs]:
            del self._votes[key]


class EquivocationWatch:
    """Remembers signed headers and votes just long enough to catch their signers equivocating.

    Callers pass only objects whose signatures they verified, and headers only once the proposer's
    right to the slot is checked. Headers are kept per (proposer, slot) for the last `keep_slots`
    slots: the first header seen for a key stays until its slot is old, so no flood of other
    headers can push it out before a conflicting one arrives. At most `max_headers` are kept (with
    the proposer check that is one per slot and fork, far below it); beyond it new keys are not
    recorded, old evidence is never evicted early.
    """

    def __init__(self, keep_slots: int = 256, keep_validators: int = 1024, max_headers: int = 16_384) -> None:
        self.keep_slots = keep_slots
        self.keep_validators = keep_validators
        self.max_headers = max_headers
        self._headers: dict[tuple[bytes, int], SignedHeader] = {}
        self._pruned_at = -1
        self._votes: OrderedDict[bytes, list[SignedVote]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._headers)

    def see_header(self, signed: SignedHeader, current_slot: int) -> SlashDoubleProposal | None:
        """Evidence if the proposer already signed another header for this slot."""
        header = signed.header
        oldest = current_slot - self.keep_slots
        if current_slot != self._pruned_at:
            self._pruned_at = current_slot
            for key in [k for k in self._headers if k[1] < oldest]:
                del self._headers[key]
        if header.slot < oldest:
            return None
        key = (header.proposer, header.slot)
        first = self._headers.get(key)
        if first is None:
            if len(self._headers) < self.max_headers:
                self._headers[key] = signed
            return None
        if first.header.hash == header.hash:
            return None
        return SlashDoubleProposal(first=first, second=signed)

    def see_vote(self, signed_vote: SignedVote) -> SlashVote | None:
        """Evidence if this vote and an earlier one by the same validator are slashable together."""
        validator = signed_vote.vote.validator
        seen = self._votes.get(validator)
        if seen is None:
            seen = []
            self._votes[validator] = seen
            while len(self._votes) > self.keep_validators:
                self._votes.popitem(last=False)
        for earlier in seen:
            if finality.is_slashable_pair(earlier.vote, signed_vote.vote):
                return SlashVote(first=earlier, second=signed_vote)
        if signed_vote not in seen:
            seen.append(signed_vote)
            del seen[:-VOTES_PER_VALIDATOR]
        return None
