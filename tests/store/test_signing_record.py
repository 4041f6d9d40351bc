"""The signing record: no double proposal, double vote or surround vote, across restarts too."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pnode.chain.types import Checkpoint, FinalityVote
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.store.slashing_protection import SigningRecordError, SlashingProtection
from p2pnode.testing.factories import DEV_CHAIN_ID, validator_keys

KEY = validator_keys(1)[0][1]
H1, H2 = b"\x01" * 32, b"\x02" * 32


def test_a_slot_is_signed_once_and_never_below_the_highest(tmp_path: Path) -> None:
    record = SlashingProtection(tmp_path / "r.sqlite", KEY.public_key)
    assert record.may_propose(5, H1)
    assert record.may_propose(5, H1), "the very same block again is harmless"
    assert not record.may_propose(5, H2), "a second block for slot 5"
    assert not record.may_propose(4, H2), "below the highest signed slot"
    assert record.may_propose(6, H2)


def test_double_and_surround_votes_are_refused(tmp_path: Path) -> None:
    record = SlashingProtection(tmp_path / "r.sqlite", KEY.public_key)
    assert record.may_vote(2, 3, H1)
    assert record.may_vote(2, 3, H1)
    assert not record.may_vote(2, 3, H2), "double vote"
    assert not record.may_vote(1, 3, H2), "double vote with another source"
    assert not record.may_vote(1, 4, H2), "surrounds 2->3"
    assert record.may_vote(3, 4, H2)
    h3 = b"\x03" * 32
    assert not record.may_vote(3, 3, h3) and not record.may_vote(2, 2, h3), "targets at or below the highest"


def test_the_record_survives_a_restart_and_belongs_to_one_key(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    record = SlashingProtection(path, KEY.public_key)
    assert record.may_propose(10, H1) and record.may_vote(4, 5, H1)
    record.close()
    again = SlashingProtection(path, KEY.public_key)
    assert not again.may_propose(10, H2)
    assert not again.may_vote(4, 5, H2)
    assert not again.may_vote(3, 6, H2)
    again.close()
    with pytest.raises(SigningRecordError):
        SlashingProtection(path, b"\x09" * 32)


def test_the_guarded_signer_signs_only_what_the_record_allows(tmp_path: Path) -> None:
    signer = GuardedSigner(KEY, SlashingProtection(tmp_path / "r.sqlite", KEY.public_key))
    source = Checkpoint(epoch=0, height=0, hash=H1)

    def vote(target_hash: bytes) -> FinalityVote:
        return FinalityVote(
            chain=DEV_CHAIN_ID, validator=KEY.public_key, source=source, target=Checkpoint(epoch=1, height=8, hash=target_hash)
        )

    assert signer.sign_vote(vote(H1)) is not None
    assert signer.sign_vote(vote(H2)) is None
    with pytest.raises(ValueError):
        signer.sign_vote(FinalityVote(chain=DEV_CHAIN_ID, validator=H2, source=source, target=source))
