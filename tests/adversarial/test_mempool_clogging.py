"""Mempool clogging: many funded accounts queueing more than they can pay for, and free-to-make
future-nonce transactions, must not keep an honest transaction out of the next blocks; hopeless
transactions are refused before any signature check, and a peer relaying a flood of them is
penalised. One validator proposes every slot (ChainService on the in-memory network, virtual time)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from p2pnode.chain.params import TAO
from p2pnode.chain.types import Transfer
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain import mempool as mempool_module
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.chain.signer import GuardedSigner
from p2pnode.services.clock import TrioClock
from p2pnode.store.slashing_protection import SlashingProtection
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec

MIN_FEE = 1_000
CLOGGERS = 32
CLOG_TXS = 64
FUTURE_SENDERS = 256
FUTURE_PER_SENDER = 16  # 4,096 future-nonce transactions


def run_node(tmp_path: Path, genesis, scenario) -> None:  # noqa: ANN001
    async def main() -> None:
        hub = MemoryHub()
        network = hub.add_peer("validator")
        hub.add_peer("relay")
        chain = open_chain(tmp_path / "chain.sqlite", genesis)
        hot = validator_keys(1)[0][1]
        signer = GuardedSigner(hot, SlashingProtection(tmp_path / "signing.sqlite", hot.public_key))
        node = ChainService(chain, network, TrioClock(genesis.genesis_time_ms), signer)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await scenario(node, hub)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_clogging_and_future_nonce_floods_do_not_keep_an_honest_transaction_out(tmp_path: Path) -> None:
    cloggers = [dev_keypair(f"clogger-{i}") for i in range(CLOGGERS)]
    future_senders = [dev_keypair(f"future-{i}") for i in range(FUTURE_SENDERS)]
    # Each clogger can pay for 3 of its 64 transactions; the future senders are funded too.
    genesis = make_genesis(
        1, 1,
        extra_balances=tuple((k.public_key, 3 * (2 * MIN_FEE + 1)) for k in cloggers)
        + tuple((k.public_key, TAO) for k in future_senders),
    )
    honest = user_keys(1)[0]
    floods = [
        signed(k, nonce, Transfer(to=honest.public_key, amount=1), fee=MIN_FEE)
        for k in future_senders for nonce in range(1, FUTURE_PER_SENDER + 1)
    ] + [signed(k, nonce, Transfer(to=honest.public_key, amount=1), fee=2 * MIN_FEE)
         for nonce in range(CLOG_TXS) for k in cloggers]
    honest_tx = signed(honest, 0, Transfer(to=cloggers[0].public_key, amount=5), fee=MIN_FEE)

    async def scenario(node: ChainService, hub: MemoryHub) -> None:
        await node.clock.sleep_until_ms(node.genesis_ms + node.slot_ms // 4)  # inside slot 0
        reasons: dict[str, int] = {}
        for stx in floods:
            admission = await node.submit_tx(codec.encode(stx))
            reasons[admission.reason] = reasons.get(admission.reason, 0) + 1
        assert node.mempool.future_count <= node.mempool.config.max_future_txs
        assert reasons.get("insufficient_balance", 0) >= CLOGGERS * (CLOG_TXS - 3)
        admission = await node.submit_tx(codec.encode(honest_tx))
        assert admission.added, admission.reason
        start_height = node.head.height
        for _ in range(2):
            await node.clock.sleep_until_ms(node.genesis_ms + (node.current_slot() + 1) * node.slot_ms + node.slot_ms // 2)
        assert node.head.height >= start_height + 1, "the validator kept proposing"
        assert node.chain.head_state().nonce(honest.public_key) == 1, "the honest transaction was left out"

    run_node(tmp_path, genesis, scenario)


def test_an_unfunded_signed_transaction_is_refused_without_a_signature_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    genesis = make_genesis(1, 1)
    unfunded = dev_keypair("nobody")
    checks: list[object] = []
    real_check = mempool_module.check_tx_signatures

    def counting_check(stx):  # noqa: ANN001, ANN202
        checks.append(stx)
        return real_check(stx)

    monkeypatch.setattr(mempool_module, "check_tx_signatures", counting_check)

    async def scenario(node: ChainService, hub: MemoryHub) -> None:
        stx = signed(unfunded, 0, Transfer(to=bytes(32), amount=1), fee=MIN_FEE)
        admission = await node.submit_tx(codec.encode(stx))
        assert admission.reason == "insufficient_balance" and checks == []
        funded = signed(user_keys(1)[0], 0, Transfer(to=bytes(32), amount=1), fee=MIN_FEE)
        assert (await node.submit_tx(codec.encode(funded))).added and len(checks) == 1
        # A peer relaying a flood of such transactions is penalised.
        relay = hub.peers["relay"]
        for nonce in range(node.config.tx_refusals_per_window):
            stx = signed(unfunded, nonce, Transfer(to=bytes(32), amount=1), fee=MIN_FEE)
            await relay.publish(node.topics["stake"], codec.encode(stx))
        assert ("relay", "tx_flood") in {(p, r) for p, r, _ in node.network.penalties}  # type: ignore[attr-defined]
        assert checks and len(checks) == 1, "no signature was checked for the flood"

    run_node(tmp_path, genesis, scenario)
