"""Hostile behaviours for the simulator, as plug-ins, and a seeded sweep that checks safety and
liveness against them (issue 13, "An adversary library").

Each `Adversary` owns one simulated node. Stake-holding ones (equivocator, timestamp grinder,
future-slot builder, withholding proposer) are validators; the rest (Status liar, gossip flooder,
mempool clogger, squatter) need no stake and run on an extra node. Every slot the sweep calls
`on_slot` on each adversary just after the slot starts.

`run_case(directory, seed)` draws a case from the seed (network size, which validators are hostile,
how, with strictly less than 1/3 of the stake; which stake-less attackers join), runs it under
the simulator while honest users submit one transfer per slot, and returns a `CaseReport`;
`violations(report)` lists broken properties:

- safety: no block any honest node saw finalized is ever off its canonical chain later;
- liveness: finality advances (from the third epoch on, the finalized epoch never lags the
  current one by more than `MAX_FINALITY_LAG_EPOCHS`);
- inclusion: each honest transfer is on chain within `MAX_INCLUSION_SLOTS` of its submission;
- fairness: of the slots the schedule gave honest proposers, at least `MIN_HONEST_SLOT_SHARE`
  carry their block in the final canonical chain.

Run a sweep from the command line: `python -m p2pnode.testing.adversaries --seeds 200`.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from p2pnode.chain import consensus
from p2pnode.chain.params import TAO
from p2pnode.chain.types import AddStake, Block, Header, SignedTx, Transfer, make_tx, randao_message
from p2pnode.genesis_file import dev_keypair
from p2pnode.services.chain.block_tree import sign_block
from p2pnode.testing.factories import DEV_CHAIN_ID, make_genesis, user_keys
from p2pnode.testing.sim import Simulation
from protocols import codec, sync, topics
from protocols.crypto import Keypair

MAX_FINALITY_LAG_EPOCHS = 3
MAX_INCLUSION_SLOTS = 8
MIN_HONEST_SLOT_SHARE = 0.75
HONEST_USERS = 4
SWEEP_PARAMS = {"max_block_txs": 24}


class Adversary:
    """One hostile node. `stake`: it is a validator (counted in the hostile stake); `passive`: its
    honest duties are off (it signs only what the behaviour makes it sign)."""

    name = "adversary"
    stake = False
    passive = False

    def __init__(self, node: int) -> None:
        self.node = node
        self.actions = 0  # hostile messages sent, for the report

    def install(self, sim: Simulation) -> None:
        """Called once, after every node started."""

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        """Called just after `slot` starts."""

    def key(self, sim: Simulation) -> Keypair:
        key = sim.nodes[self.node].key
        assert key is not None, f"{self.name} on node {self.node} needs a validator key"
        return key

    def owns_slot(self, sim: Simulation, slot: int) -> bool:
        state = sim.nodes[self.node].chain.head_state()
        return consensus.proposer_for_slot(state, slot) == self.key(sim).public_key

    async def publish(self, sim: Simulation, kind: str, data: bytes) -> None:
        node = sim.nodes[self.node].node
        assert node is not None
        await sim.nodes[self.node].endpoint.publish(node.topics[kind], data)
        self.actions += 1


# ---------------------------------------------------------------- validators (hostile stake)


class Equivocator(Adversary):
    """Signs two different blocks for each of its slots and gossips both."""

    name = "equivocator"
    stake = True
    passive = True

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        if self.owns_slot(sim, slot):
            await sim.equivocate_proposal(self.node, slot)
            self.actions += 2


class TimestampGrinder(Adversary):
    """At each of its slots, tries timestamps other than the slot start (the old seed hashed them)
    and gossips the variants whose header hash ranks best, as a grinder would."""

    name = "timestamp_grinder"
    stake = True
    passive = True
    tries = 16

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        if not self.owns_slot(sim, slot):
            return
        key = self.key(sim)
        chain = sim.nodes[self.node].chain
        draft = chain.prepare_block(
            key.public_key, slot, randao_reveal=key.sign(randao_message(chain.head.chain, slot))
        )
        start = draft.header.timestamp_ms
        candidates = [0, 2**64 - 1, *(start + 1 + k * 37 for k in range(self.tries))]
        headers = [_with_timestamp(draft.header, ts) for ts in candidates]
        headers.sort(key=lambda h: h.hash)
        for header in headers[:2]:
            block = Block(
                header=header, sig=key.sign(header.signing_bytes()), txs=draft.txs, votes=draft.votes
            )
            await self.publish(sim, "blocks", codec.encode(block))


class FutureSlotBuilder(Adversary):
    """Otherwise honest; once an epoch it builds valid blocks at slots far ahead that the schedule
    gives it, and gossips them (a head nobody can build on until the clock gets there)."""

    name = "future_slot_builder"
    stake = True

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        node = sim.nodes[self.node].node
        if node is None or slot % node.epoch_slots != 1:
            return
        key = self.key(sim)
        chain = node.chain
        state = chain.head_state()
        for ahead in range(node.epoch_slots * 2, node.epoch_slots * 64, 3):
            target = slot + ahead
            try:
                if consensus.proposer_for_slot(state, target) != key.public_key:
                    continue
                draft = chain.prepare_block(
                    key.public_key, target, randao_reveal=key.sign(randao_message(chain.head.chain, target))
                )
            except Exception:  # noqa: S112 (a slot the schedule cannot say yet: try the next)
                continue
            block = sign_block(draft, key.sign(draft.header.signing_bytes()))
            await self.publish(sim, "blocks", codec.encode(block))
            return


class WithholdingProposer(Adversary):
    """Builds its blocks as usual but holds them back and gossips them `delay` slots late, on a
    parent the others have long built on."""

    name = "withholding_proposer"
    stake = True
    delay = 2

    def __init__(self, node: int) -> None:
        super().__init__(node)
        self._held: list[tuple[int, str, bytes]] = []  # (release slot, topic, data)
        self._slot = 0

    def install(self, sim: Simulation) -> None:
        endpoint = sim.nodes[self.node].endpoint
        node = sim.nodes[self.node].node
        assert node is not None
        blocks_topic = node.topics["blocks"]
        honest_publish = endpoint.publish

        async def withholding_publish(topic: str, data: bytes) -> None:
            if topic == blocks_topic:
                self._held.append((self._slot + self.delay, topic, data))
                return
            await honest_publish(topic, data)

        self._honest_publish = honest_publish
        endpoint.publish = withholding_publish  # type: ignore[method-assign]

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        self._slot = slot
        due = [held for held in self._held if held[0] <= slot]
        self._held = [held for held in self._held if held[0] > slot]
        for _, topic, data in due:
            await self._honest_publish(topic, data)
            self.actions += 1


# ---------------------------------------------------------------- stake-less attackers


class StatusLiar(Adversary):
    """Answers every Status request with a far better head than it has, and serves no blocks."""

    name = "status_liar"

    def install(self, sim: Simulation) -> None:
        sim_node = sim.nodes[self.node]
        node = sim_node.node
        assert node is not None
        chain_id = node.chain_id

        async def lying_status(peer_id: str, request: bytes) -> bytes:
            real = node.local_status()
            self.actions += 1
            lie = dataclasses.replace(real, head_height=real.head_height + 1_000, head_slot=node.current_slot(),
                                      head_hash=hashlib.sha256(b"lie" + real.head_hash).digest(),
                                      justified_epoch=real.justified_epoch + 10)
            return sync.encode_status(lie)

        async def serve_nothing(peer_id: str, request: bytes) -> bytes:
            return codec.encode(sync.BlocksByRangeResponse(blocks=()))

        sim_node.endpoint.set_request_handler(
            topics.status_protocol(chain_id), lying_status, sync.MAX_STATUS_BYTES
        )
        sim_node.endpoint.set_request_handler(
            topics.blocks_by_range_protocol(chain_id), serve_nothing, sync.MAX_RANGE_REQUEST_BYTES
        )


class GossipFlooder(Adversary):
    """Every slot: junk on every topic, and well-formed blocks from a key that is no proposer."""

    name = "gossip_flooder"
    junk_per_slot = 8
    blocks_per_slot = 4

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        await sim.flood(self.node, self.junk_per_slot)
        await sim.flood_blocks(self.node, self.blocks_per_slot)
        self.actions += self.junk_per_slot * 4 + self.blocks_per_slot


def clogger_keys(count: int) -> list[Keypair]:
    return [dev_keypair(f"clogger-{i}") for i in range(count)]


def squatter_key() -> Keypair:
    return dev_keypair("squatter-cold")


def newcomer_hotkey() -> Keypair:
    return dev_keypair("newcomer-hot")


class MempoolClogger(Adversary):
    """Funded accounts that gossip many valid transfers every slot at the minimum fee, plus
    transactions with nonces far in the future that can never execute."""

    name = "mempool_clogger"
    accounts = 4
    per_account = 8
    future_per_slot = 8

    def __init__(self, node: int) -> None:
        super().__init__(node)
        self._next_nonce = [0] * self.accounts
        self._future = 0

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        node = sim.nodes[self.node].node
        assert node is not None
        state = node.chain.head_state()
        fee = state.param("min_fee")
        sink = dev_keypair("clogger-sink").public_key
        keys = clogger_keys(self.accounts)
        for index, key in enumerate(keys):
            base = max(self._next_nonce[index], state.nonce(key.public_key))
            for nonce in range(base, base + self.per_account):
                await self.publish(sim, "stake", _signed(key, nonce, fee, Transfer(to=sink, amount=1)))
            self._next_nonce[index] = base + self.per_account
        for _ in range(self.future_per_slot):
            self._future += 1
            key = keys[self._future % self.accounts]
            far = state.nonce(key.public_key) + 10_000 + self._future
            await self.publish(sim, "stake", _signed(key, far, fee, Transfer(to=sink, amount=1)))


class Squatter(Adversary):
    """Stakes on a hotkey it does not own (a newcomer's, public as its PeerID) to take it over."""

    name = "squatter"

    def __init__(self, node: int) -> None:
        super().__init__(node)
        self.sent = False

    async def on_slot(self, sim: Simulation, slot: int) -> None:
        node = sim.nodes[self.node].node
        assert node is not None
        if self.sent:
            return
        state = node.chain.head_state()
        key = squatter_key()
        body = AddStake(hotkey=newcomer_hotkey().public_key, amount=1 * TAO)
        await self.publish(
            sim, "stake", _signed(key, state.nonce(key.public_key), state.param("min_fee"), body)
        )
        self.sent = True


STAKED: tuple[type[Adversary], ...] = (Equivocator, TimestampGrinder, FutureSlotBuilder, WithholdingProposer)
STAKELESS: tuple[type[Adversary], ...] = (StatusLiar, GossipFlooder, MempoolClogger, Squatter)


def _signed(key: Keypair, nonce: int, fee: int, body: object, chain_id: str = DEV_CHAIN_ID) -> bytes:
    tx = make_tx(chain_id, key.public_key, nonce, fee, body)  # type: ignore[arg-type]
    return codec.encode(SignedTx(tx=tx, sig=key.sign(tx.signing_bytes())))


def _with_timestamp(header: Header, timestamp_ms: int) -> Header:
    return Header(**{**{name: getattr(header, name) for name in Header.SCHEMA}, "timestamp_ms": timestamp_ms})


# ---------------------------------------------------------------- the sweep


@dataclass
class Case:
    seed: int
    validators: int
    hostile: dict[int, type[Adversary]]  # node index -> behaviour (validators and extra nodes)
    slots: int

    @property
    def hostile_validators(self) -> list[int]:
        return sorted(i for i in self.hostile if i < self.validators)

    def describe(self) -> str:
        parts = [f"{i}:{cls.name}" for i, cls in sorted(self.hostile.items())]
        return f"seed {self.seed}: {self.validators} validators, " + ", ".join(parts)


def draw_case(seed: int, slots: int = 40) -> Case:
    """The case a seed stands for: strictly less than 1/3 of the (equal) stake hostile."""
    rng = random.Random(seed)
    validators = rng.choice((4, 5, 6, 7))
    hostile_count = (validators - 1) // 3
    hostile: dict[int, type[Adversary]] = {}
    for i in range(validators - hostile_count, validators):
        hostile[i] = rng.choice(STAKED)
    extras = rng.sample(STAKELESS, rng.randint(1, len(STAKELESS)))
    for offset, cls in enumerate(extras):
        hostile[validators + offset] = cls
    return Case(seed, validators, hostile, slots)


@dataclass
class CaseReport:
    case: str
    seed: int
    slots: int
    epoch_slots: int
    final_epoch: int
    finalized_epoch: int
    max_finality_lag_epochs: int
    reverted_finalized: int
    inclusion_delays: list[int] = field(default_factory=list)
    not_included: int = 0
    honest_slots: int = 0
    honest_slots_kept: int = 0
    squatted: bool = False
    hostile_actions: dict[str, int] = field(default_factory=dict)

    @property
    def honest_slot_share(self) -> float:
        return self.honest_slots_kept / self.honest_slots if self.honest_slots else 1.0


def violations(report: CaseReport) -> list[str]:
    found = []
    if report.reverted_finalized:
        found.append(f"{report.reverted_finalized} finalized block(s) reverted")
    lag = report.final_epoch - report.finalized_epoch
    if lag > MAX_FINALITY_LAG_EPOCHS:
        found.append(
            f"finality stalled: finalized epoch {report.finalized_epoch} at epoch {report.final_epoch}"
        )
    elif report.max_finality_lag_epochs > MAX_FINALITY_LAG_EPOCHS:
        found.append(f"finality lagged {report.max_finality_lag_epochs} epochs during the run")
    late = [d for d in report.inclusion_delays if d > MAX_INCLUSION_SLOTS]
    if late or report.not_included:
        found.append(
            f"{len(late) + report.not_included} honest transfer(s) not included within {MAX_INCLUSION_SLOTS} slots"
        )
    if report.honest_slot_share < MIN_HONEST_SLOT_SHARE:
        found.append(f"honest proposers kept {report.honest_slots_kept}/{report.honest_slots} of their slots")
    if report.squatted:
        found.append("the squatter owns the newcomer's hotkey")
    return found


def run_case(directory: Path, seed: int, *, slots: int = 40, case: Case | None = None) -> CaseReport:
    """Run the case `seed` draws (or `case`, for hand-made ones such as the controls in the tests)."""
    case = case or draw_case(seed, slots)
    extras = [i for i in case.hostile if i >= case.validators]
    nodes = case.validators + len(extras)
    funded = [(k.public_key, 1_000 * TAO) for k in clogger_keys(MempoolClogger.accounts)]
    funded.append((squatter_key().public_key, 1_000 * TAO))
    # Small blocks, so the clogger's traffic (32 valid transfers a slot) competes for every slot.
    genesis = make_genesis(case.validators, HONEST_USERS, extra_balances=tuple(funded), params=SWEEP_PARAMS)
    passive = frozenset(i for i, cls in case.hostile.items() if cls.passive)
    sim = Simulation(
        directory, nodes=nodes, validators=case.validators, seed=seed, genesis=genesis, passive=passive
    )
    return sim.run(lambda s: _drive(s, case))


async def _drive(sim: Simulation, case: Case) -> CaseReport:
    adversaries = [cls(i) for i, cls in sorted(case.hostile.items())]
    for adversary in adversaries:
        adversary.install(sim)
    observer = sim.nodes[0]  # validator 0 is always honest
    honest_nodes = [n for n in sim.nodes if n.index not in case.hostile]
    hostile_keys = {key.public_key for i in case.hostile_validators if (key := sim.nodes[i].key) is not None}
    genesis_ms = sim.genesis.genesis_time_ms
    slot_ms = sim.genesis.params.get("slot_ms", 1000)
    users = user_keys(HONEST_USERS)
    pending: dict[tuple[bytes, int], int] = {}  # (sender, nonce) -> slot submitted
    delays: list[int] = []
    scheduled_honest: dict[int, bytes] = {}
    max_lag = 0
    assert observer.node is not None
    epoch_slots = observer.node.epoch_slots
    for slot in range(1, case.slots + 1):
        await sim.clock.sleep_until_ms(genesis_ms + slot * slot_ms + 1)
        state = observer.chain.head_state()
        proposer = consensus.proposer_for_slot(state, slot)
        if proposer is not None and proposer not in hostile_keys:
            scheduled_honest[slot] = proposer
        for adversary in adversaries:
            await adversary.on_slot(sim, slot)
        # One honest transfer per slot, round robin over the honest users, to an honest node.
        user = users[slot % len(users)]
        target = honest_nodes[slot % len(honest_nodes)].node
        assert target is not None
        nonce = max([state.nonce(user.public_key)] + [n + 1 for (s, n) in pending if s == user.public_key])
        data = _signed(user, nonce, state.param("min_fee"), Transfer(to=users[0].public_key, amount=1))
        if (await target.submit_tx(data)).added:
            pending[(user.public_key, nonce)] = slot
        await sim.clock.sleep_until_ms(genesis_ms + slot * slot_ms + slot_ms - 1)
        sim.record_finality()
        head_state = observer.chain.head_state()
        for sender, nonce in [k for k in pending if head_state.nonce(k[0]) > k[1]]:
            delays.append(slot - pending.pop((sender, nonce)))
        finalized = observer.chain.finalized
        if slot >= 3 * epoch_slots:
            max_lag = max(max_lag, slot // epoch_slots - (finalized.epoch if finalized else 0))
    reverted = 0
    for sim_node in honest_nodes:
        if sim_node.node is None:
            continue
        for height, block_hash in sim_node.finalized_log:
            if sim_node.chain.store.canonical_hash(height) != block_hash:
                reverted += 1
    kept = 0
    store = observer.chain.store
    canonical_slots: dict[int, bytes] = {}
    for height in range(1, observer.chain.head.height + 1):
        canonical = store.canonical_hash(height)
        block = store.block(canonical) if canonical is not None else None
        if block is not None:
            canonical_slots[block.header.slot] = block.header.proposer
    # Slots in the last two are still being decided; leave them out.
    counted = {s: p for s, p in scheduled_honest.items() if s <= case.slots - 2}
    kept = sum(1 for s, p in counted.items() if canonical_slots.get(s) == p)
    finalized = observer.chain.finalized
    owner = observer.chain.head_state().hotkey_owner(newcomer_hotkey().public_key)
    return CaseReport(
        case=case.describe(),
        seed=case.seed,
        slots=case.slots,
        epoch_slots=epoch_slots,
        final_epoch=case.slots // epoch_slots,
        finalized_epoch=finalized.epoch if finalized else 0,
        max_finality_lag_epochs=max_lag,
        reverted_finalized=reverted,
        inclusion_delays=delays,
        not_included=sum(1 for s in pending.values() if s <= case.slots - MAX_INCLUSION_SLOTS),
        honest_slots=len(counted),
        honest_slots_kept=kept,
        squatted=owner == squatter_key().public_key,
        hostile_actions={a.name: a.actions for a in adversaries},
    )


def summarise(reports: list[CaseReport]) -> dict[str, object]:
    delays = sorted(d for r in reports for d in r.inclusion_delays)
    shares = [r.honest_slot_share for r in reports]
    bad = {r.seed: violations(r) for r in reports if violations(r)}
    by_kind: dict[str, int] = {}
    for r in reports:
        for name in r.hostile_actions:
            by_kind[name] = by_kind.get(name, 0) + 1
    return {
        "seeds": len(reports),
        "seeds_with_violations": len(bad),
        "violations": {str(seed): found for seed, found in sorted(bad.items())},
        "cases_per_behaviour": dict(sorted(by_kind.items())),
        "reverted_finalized": sum(r.reverted_finalized for r in reports),
        "finality_lag_epochs_max": max((r.max_finality_lag_epochs for r in reports), default=0),
        "finality_lag_epochs_median": statistics.median([r.max_finality_lag_epochs for r in reports])
        if reports
        else 0,
        "inclusion_delay_slots_median": statistics.median(delays) if delays else None,
        "inclusion_delay_slots_p95": delays[int(0.95 * (len(delays) - 1))] if delays else None,
        "inclusion_delay_slots_max": delays[-1] if delays else None,
        "honest_slot_share_min": min(shares, default=1.0),
        "honest_slot_share_median": statistics.median(shares) if shares else 1.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Seeded adversary sweep over the simulator")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--slots", type=int, default=40)
    parser.add_argument("--jsonl", type=Path, help="append each case's report to this file as a JSON line")
    parser.add_argument("--summarise", type=Path, nargs="*", help="only summarise these JSON-line files")
    args = parser.parse_args(argv)
    reports = []
    started = time.monotonic()
    if args.summarise:
        for path in args.summarise:
            reports += [CaseReport(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    else:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            with tempfile.TemporaryDirectory() as directory:
                report = run_case(Path(directory), seed, slots=args.slots)
            reports.append(report)
            found = violations(report)
            print(f"{report.case}: {'; '.join(found) if found else 'ok'}", file=sys.stderr, flush=True)
            if args.jsonl is not None:
                with args.jsonl.open("a") as out:
                    out.write(json.dumps(dataclasses.asdict(report)) + "\n")
    summary = summarise(reports)
    summary["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(summary, indent=2))
    return 1 if summary["seeds_with_violations"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
