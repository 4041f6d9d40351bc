"""Hotkey squatting: a hotkey is public (it is a peer's identity) long before it registers, so a
coldkey must not become its owner without the hotkey's own signature."""

from __future__ import annotations

import pytest

from p2pnode.chain.genesis import GenesisSubnet
from p2pnode.chain.params import TAO
from p2pnode.chain.types import AddStake, CreateSubnet, Register
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import DEV_CHAIN_ID, bound, make_genesis, signed
from p2pnode.testing.harness import ChainHarness
from protocols.validation import InvalidSignature, check_tx_signatures

OWNER_COLD, OWNER_HOT = dev_keypair("squat-owner-cold"), dev_keypair("squat-owner-hot")
NEWCOMER_COLD, NEWCOMER_HOT = dev_keypair("newcomer-cold"), dev_keypair("newcomer-hot")
SQUATTER_COLD, SQUATTER_HOT = dev_keypair("squatter-cold"), dev_keypair("squatter-hot")


def harness() -> ChainHarness:
    funded = tuple((k.public_key, 10_000 * TAO) for k in (OWNER_COLD, NEWCOMER_COLD, SQUATTER_COLD))
    subnet = GenesisSubnet(OWNER_COLD.public_key, OWNER_HOT.public_key, "text", {"commit_reveal_enabled": 0})
    return ChainHarness(make_genesis(4, 1, subnets=(subnet,), extra_balances=funded))


CLAIMS = {
    "add_stake": lambda sig: AddStake(hotkey=NEWCOMER_HOT.public_key, amount=10 * TAO, hotkey_sig=sig),
    "register": lambda sig: Register(netuid=1, hotkey=NEWCOMER_HOT.public_key, max_burn=10 * TAO, hotkey_sig=sig),
    "create_subnet": lambda sig: CreateSubnet(hotkey=NEWCOMER_HOT.public_key, task="text", max_lock=10**15, hotkey_sig=sig),
}


@pytest.mark.parametrize("kind", sorted(CLAIMS))
def test_a_coldkey_cannot_claim_a_hotkey_that_did_not_sign(kind: str) -> None:
    claim = CLAIMS[kind]
    h = harness()
    # without the hotkey's signature: refused by the transition
    assert h.reject_reason(h.tx(SQUATTER_COLD, claim(b""))) == "hotkey_not_bound"
    # with a signature that is not the hotkey's consent to this coldkey: refused with the signatures
    forged = [
        bound(SQUATTER_HOT, SQUATTER_COLD),  # the squatter's own hotkey signing
        bound(NEWCOMER_HOT, NEWCOMER_COLD),  # the newcomer's real consent, replayed for another coldkey
        bound(NEWCOMER_HOT, SQUATTER_COLD, chain_id="another-chain"),  # consent given on another chain
        bytes(64),
    ]
    for sig in forged:
        with pytest.raises(InvalidSignature, match="bad_hotkey_signature"):
            check_tx_signatures(signed(SQUATTER_COLD, 0, claim(sig)))
    # the newcomer's own coldkey, with the hotkey's consent, gets it; afterwards nobody else can
    consent = bound(NEWCOMER_HOT, NEWCOMER_COLD)
    check_tx_signatures(signed(NEWCOMER_COLD, 0, claim(consent)))
    h.block([h.tx(NEWCOMER_COLD, claim(consent))])
    assert h.state.hotkey_owner(NEWCOMER_HOT.public_key) == NEWCOMER_COLD.public_key
    if kind == "add_stake":  # staking on an owned hotkey is delegation: allowed, ownership unchanged
        h.block([h.tx(SQUATTER_COLD, claim(b""))])
        assert h.state.hotkey_owner(NEWCOMER_HOT.public_key) == NEWCOMER_COLD.public_key
    else:
        assert h.reject_reason(h.tx(SQUATTER_COLD, claim(b""))) in {"not_hotkey_owner", "already_registered"}


def test_an_owned_hotkey_needs_no_signature_and_delegation_still_works() -> None:
    h = harness()
    h.block([h.tx(NEWCOMER_COLD, AddStake(hotkey=NEWCOMER_HOT.public_key, amount=10 * TAO,
                                          hotkey_sig=bound(NEWCOMER_HOT, NEWCOMER_COLD)))])
    h.block([h.tx(NEWCOMER_COLD, Register(netuid=1, hotkey=NEWCOMER_HOT.public_key, max_burn=10 * TAO)),
             h.tx(SQUATTER_COLD, AddStake(hotkey=NEWCOMER_HOT.public_key, amount=5 * TAO))])  # a delegator
    state = h.state
    assert state.uid_of(1, NEWCOMER_HOT.public_key) is not None
    assert state.hotkey_owner(NEWCOMER_HOT.public_key) == NEWCOMER_COLD.public_key
    assert state.stake(SQUATTER_COLD.public_key, NEWCOMER_HOT.public_key) == 5 * TAO
    assert DEV_CHAIN_ID == state.chain_id
