"""A fast in-memory chain for economics and governance tests: blocks without signatures or SQLite.

`ChainHarness` applies blocks with the real state transition (`apply_block_body`) on a dict-backed
state; signatures are not checked (the transition never does), so tests exercise exactly the
stateful rules.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2pnode.chain import consensus, statekeys
from p2pnode.chain.encoding import decode
from p2pnode.chain.errors import TxInvalid
from p2pnode.chain.genesis import Genesis, GenesisSubnet, build_genesis_state
from p2pnode.chain.params import TAO
from p2pnode.chain.records import Account
from p2pnode.chain.schema import ChainObject
from p2pnode.chain.state import DictReader, State
from p2pnode.chain.subnets import commit_hash
from p2pnode.chain.transition import apply_block_body, context_for, validate_tx
from p2pnode.chain.types import (
    AddStake,
    Block,
    CommitWeights,
    GovVote,
    Header,
    Propose,
    Register,
    RemoveStake,
    Serve,
    SetWeights,
    SignedTx,
    body_root,
    make_tx,
)
from p2pnode.genesis_file import dev_keypair
from p2pnode.testing.factories import bound, make_genesis, validator_keys
from protocols.crypto import Keypair

NO_SIG = bytes(64)


class ChainHarness:
    def __init__(self, genesis: Genesis) -> None:
        self.reader, self.acc, self.genesis_header = build_genesis_state(genesis)
        self.chain_id = genesis.chain_id
        self.height = 0
        self.slot = 0
        self.parent = self.genesis_header.hash
        self._queued: dict[bytes, int] = {}  # nonces handed out for the next block

    @property
    def state(self) -> State:
        return State(self.reader, self.acc)

    def tx(self, key: Keypair, body: ChainObject, *, fee: int = 1_000, nonce: int | None = None) -> SignedTx:
        if nonce is None:
            nonce = self.state.nonce(key.public_key) + self._queued.get(key.public_key, 0)
            self._queued[key.public_key] = self._queued.get(key.public_key, 0) + 1
        return SignedTx(tx=make_tx(self.chain_id, key.public_key, nonce, fee, body), sig=NO_SIG)

    def block(self, txs: Iterable[SignedTx] = ()) -> Block:
        """Apply one block holding `txs` in the next slot; raises BlockInvalid (nothing kept)."""
        self._queued = {}
        state = self.state
        slot = self.slot + 1
        header = Header(
            chain=self.chain_id, version=state.param("protocol_version"), height=self.height + 1, slot=slot,
            parent=self.parent, proposer=consensus.proposer_for_slot(state, slot) or bytes(32),
            state_root=bytes(32), tx_root=body_root(tuple(txs), ()), timestamp_ms=consensus.slot_start_ms(state, slot),
            randao_reveal=NO_SIG,  # signatures are not checked here (the chain core never does)
        )
        txs = tuple(txs)
        header = Header(**{**{n: getattr(header, n) for n in Header.SCHEMA}, "tx_root": body_root(txs, ())})
        block = Block(header=header, sig=NO_SIG, txs=txs, votes=())
        apply_block_body(state, block)
        self.acc = state.accumulator()
        self.reader.apply(state.changes())
        self.height, self.slot, self.parent = header.height, slot, header.hash
        return block

    def blocks(self, count: int) -> None:
        for _ in range(count):
            self.block()

    def reject_reason(self, stx: SignedTx) -> str:
        self._queued = {}
        state = self.state
        header = Header(chain=self.chain_id, version=1, height=self.height + 1, slot=self.slot + 1,
                        parent=self.parent, proposer=bytes(32), state_root=bytes(32), tx_root=bytes(32),
                        timestamp_ms=0, randao_reveal=NO_SIG)
        try:
            validate_tx(state, stx.tx, context_for(Block(header=header, sig=NO_SIG, txs=(), votes=())))
        except TxInvalid as exc:
            return exc.reason
        raise AssertionError("transaction was accepted")

    def conservation(self) -> tuple[int, int]:
        """(balances + stake + burned + locked, genesis + emitted): equal after every block."""
        data = self.reader.data
        balances = sum(Account.from_state(decode(v)).balance for k, v in data.items() if k[:1] == statekeys.ACCOUNT)
        stakes = sum(decode(v) for k, v in data.items() if k[:1] == statekeys.STAKE)
        supply = self.state.supply()
        return balances + stakes + supply.burned + supply.locked, supply.genesis + supply.emitted

    def root(self) -> bytes:
        return self.state.root()


__all__ = ["ChainHarness", "DictReader"]


def busy_chain(prefix: str) -> ChainHarness:
    """A chain whose state holds every record kind, optional fields both absent and present: two
    subnets (commit-reveal on netuid 1, direct weights on 2), a registration on each, stake added
    and partly removed (unbonding), a served model, weights set and committed, a proposal and a
    vote. Its accounts are the dev keys named `{prefix}-cold`, `{prefix}-hot`, `{prefix}-hot2`,
    `{prefix}-owner-cold` and `{prefix}-owner-hot`."""
    owner_cold, owner_hot = dev_keypair(f"{prefix}-owner-cold"), dev_keypair(f"{prefix}-owner-hot")
    cold, hot, hot2 = dev_keypair(f"{prefix}-cold"), dev_keypair(f"{prefix}-hot"), dev_keypair(f"{prefix}-hot2")
    proposer = validator_keys(4)[0][0]
    committed = GenesisSubnet(owner_cold.public_key, owner_hot.public_key, "text", {"tempo": 5, "immunity_period": 0})
    direct = GenesisSubnet(owner_cold.public_key, owner_hot.public_key, "text",
                           {"tempo": 7, "commit_reveal_enabled": 0, "weights_rate_limit": 0, "adjustment_interval": 3})
    h = ChainHarness(make_genesis(4, 1, subnets=(committed, direct), extra_balances=((cold.public_key, 10_000 * TAO),)))
    h.block([h.tx(cold, Register(netuid=1, hotkey=hot.public_key, max_burn=10 * TAO, hotkey_sig=bound(hot, cold))),
             h.tx(cold, Register(netuid=2, hotkey=hot2.public_key, max_burn=10 * TAO, hotkey_sig=bound(hot2, cold)))])
    h.block([h.tx(cold, AddStake(hotkey=hot.public_key, amount=100 * TAO)),
             h.tx(hot, Serve(netuid=1, peer_id=f"12D3KooW{prefix}", model="m"), fee=0),
             h.tx(owner_hot, SetWeights(netuid=2, uids=(0, 1), values=(1, 3), version_key=0), fee=0)])
    digest = commit_hash(hot.public_key, 1, [1], [1], b"salt", 0)
    h.block([h.tx(hot, CommitWeights(netuid=1, commit_hash=digest), fee=0),
             h.tx(cold, RemoveStake(hotkey=hot.public_key, amount=10 * TAO)),
             h.tx(proposer, Propose(action="signal", param="", value=0, owner=b"", task="", version=0,
                                    activation_height=0, text="hello"))])
    h.block([h.tx(proposer, GovVote(proposal=1, choice="yes"))])
    h.blocks(12)
    return h
