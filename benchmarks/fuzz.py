"""Fuzz campaign: every decoder and every remote handler, driven with random and mutated inputs.

Each target is a function of untrusted bytes together with the exceptions it may raise by design
(a named refusal such as `MalformedMessage`, `GenesisError`, `EpochCaseError`). Anything else it
raises is a finding. For the codec targets an accepted input must also be canonical: re-encoding
what was decoded gives the input back.

Inputs: for each target a seed corpus of valid encodings (every schema type, signed blocks,
transactions and votes of a real chain, genesis and epoch-case documents), then per input one of

- bytes at random (length 0-600);
- a seed mutated 1-4 times at the byte level: bit flips, random bytes, CBOR initial bytes that
  mean tags, floats, simple values, indefinite or 8-byte lengths, insertions, deletions,
  truncations, extensions, duplicated slices, and splices of two seeds;
- a seed mutated in its structure: decoded, one field replaced (boundary integers such as 2^63 and
  2^64-1, long and non-ASCII text, wrong types, deep nesting, large byte strings) and re-encoded.

Reported per target: inputs tried, accepted, refused by name, unexpected exceptions (must be 0),
non-canonical inputs accepted (must be 0) and the worst CPU time of one input; for the run, RSS
before and after.

    python benchmarks/fuzz.py [--inputs N] [--seed S] [--only SUBSTRING] [--json PATH]

`--inputs` is per target (default 1,000,000). `run_campaign` is the entry point the short CI
version (tests/adversarial/test_fuzz_short.py) calls.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from p2pnode.chain import types as t
from p2pnode.chain.encoding import encode as canonical_encode
from p2pnode.chain.genesis import GenesisError, build_genesis_state
from p2pnode.chain.schema import ChainObject, SchemaError, from_plain
from p2pnode.epoch_case import EpochCaseError, loads_case
from p2pnode.genesis_file import genesis_from_json
from p2pnode.local_files import LocalFileError, parse_json
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.chain.vset_walk import WalkError, WalkVerifier
from p2pnode.testing.factories import make_genesis, open_chain, signed, user_keys, validator_keys
from p2pnode.testing.memnet import MemoryHub
from protocols import codec, inference, sync
from protocols.codec import MalformedMessage
from protocols.network import Verdict

ROOT = Path(__file__).resolve().parent.parent
MAX_RANDOM_LEN = 600


# ---------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    call: Callable[[bytes], Any]  # may return an awaitable
    seeds: list[bytes]
    expected: tuple[type[BaseException], ...] = ()
    canonical: bool = False  # an accepted input must re-encode to itself
    structured: bool = True  # seeds are CBOR (structure-aware mutations apply)
    outcomes: bool = False  # the target returns a named outcome (str) worth counting


@dataclass
class Report:
    name: str
    inputs: int = 0
    accepted: int = 0
    refused: int = 0
    unexpected: int = 0
    non_canonical: int = 0
    worst_cpu_ms: float = 0.0
    worst_input_len: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)  # guards and sync import: returns by outcome
    findings: list[dict[str, str]] = field(default_factory=list)


class FixedClock:
    """Chain time held at a few slots after genesis, so the validators see a plausible present."""

    def __init__(self, now_ms: int) -> None:
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    async def sleep_until_ms(self, when_ms: int) -> None:
        await trio.lowlevel.checkpoint()


def _samples(chain_id: str) -> list[ChainObject]:
    """One or more valid instances of every schema type."""
    user = user_keys(1)[0]
    cp = t.Checkpoint(epoch=1, height=32, hash=bytes(range(32)))
    vote = t.FinalityVote(chain=chain_id, validator=user.public_key, source=cp, target=cp)
    svote = t.SignedVote(vote=vote, sig=user.sign(vote.signing_bytes()))
    header = t.Header(chain=chain_id, version=1, height=5, slot=7, parent=bytes(32), proposer=user.public_key,
                      state_root=bytes(32), tx_root=bytes(32), timestamp_ms=7000, randao_reveal=bytes(64))
    sheader = t.SignedHeader(header=header, sig=user.sign(header.signing_bytes()))
    bodies: list[ChainObject] = [
        t.Transfer(to=bytes(32), amount=10**9), t.AddStake(hotkey=bytes(32), amount=5), t.RemoveStake(hotkey=bytes(32), amount=5),
        t.SetTake(hotkey=bytes(32), take=1000), t.Register(netuid=1, hotkey=bytes(32), max_burn=10**9),
        t.Serve(netuid=1, peer_id="12D3KooWpeer", model="tiny-lm"),
        t.SetWeights(netuid=1, uids=(0, 1, 2), values=(100, 30000, 65535), version_key=0),
        t.CommitWeights(netuid=1, commit_hash=bytes(32)),
        t.RevealWeights(netuid=1, uids=(0, 300), values=(1, 2), salt=b"salt", version_key=0),
        t.CreateSubnet(hotkey=bytes(32), task="text", max_lock=10**12),
        t.SetHyperparameter(netuid=1, name="tempo", value=100),
        t.Propose(action="set_param", param="slot_ms", value=2000, owner=b"", task="", version=0,
                  activation_height=100, text="faster"),
        t.GovVote(proposal=0, choice="yes"),
        t.SlashDoubleProposal(first=sheader, second=sheader),
        t.SlashVote(first=svote, second=svote),
    ]
    stxs = [signed(user, n, body, chain_id=chain_id) for n, body in enumerate(bodies)]
    block = t.Block(header=header, sig=bytes(64), txs=tuple(stxs[:4]), votes=(svote,))
    status = sync.Status(chain=chain_id, genesis=bytes(32), head_height=9, head_slot=11, head_hash=bytes(32),
                         justified_epoch=1, finalized_epoch=0, finalized_height=0, finalized_hash=bytes(32))
    request = inference.build_request(user, chain_id=chain_id, miner="12D3KooWminer", netuid=1,
                                      payload=b'{"text":"hello"}', nonce=bytes(16), timestamp_ms=1_700_000_000_000)
    walk_step = sync.ValidatorSetStep(
        epoch=1, header=header, items_digest=bytes(32),
        vset=canonical_encode({"epoch": 1, "validators": [[user.public_key, 5]], "seed": bytes(32)}),
        vset_next=canonical_encode({"epoch": 2, "validators": [[user.public_key, 5]], "seed": bytes(32)}),
        votes=(svote,), link_votes=(svote,))
    response = inference.build_response(user, chain_id=chain_id, request_id=bytes(32), code=inference.Code.OK,
                                        payload=b'{"text":"world"}', elapsed_ms=12)
    return [
        *bodies, cp, vote, svote, header, sheader, *(s.tx for s in stxs), *stxs, block, status,
        sync.BlocksByRangeRequest(start=1, count=64),
        sync.BlocksByRangeResponse(blocks=(codec.encode(block), codec.encode(t.Block(header=header, sig=bytes(64), txs=(), votes=())))),
        request.request, request, response.response, response,
        sync.ValidatorSetWalkRequest(checkpoint=bytes(32), after_epoch=0), walk_step,
        sync.ValidatorSetWalkResponse(error="", steps=(walk_step,), done=True),
    ]


def _codec_target(cls: type[ChainObject], seeds: list[bytes], max_bytes: int = codec.DEFAULT_MAX_BYTES) -> Target:
    def call(data: bytes) -> ChainObject:
        return codec.decode(cls, data, max_bytes)

    return Target(f"codec.decode({cls.__name__})", call, seeds, (MalformedMessage,), canonical=True)


def _round_robin_target(classes: list[type[ChainObject]], seeds: list[bytes]) -> Target:
    counter = [0]

    def call(data: bytes) -> ChainObject:
        counter[0] += 1
        return codec.decode(classes[counter[0] % len(classes)], data)

    names = f"codec.decode(each of {len(classes)} other types)"
    return Target(names, call, seeds, (MalformedMessage,), canonical=True)


def _agreement_target(classes: list[type[ChainObject]], seeds: list[bytes]) -> Target:
    """`codec.decode` reads into the schema in one pass; decoding generically and then checking
    with `from_plain` must give the same object, or both must refuse (each input, every class)."""

    def call(data: bytes) -> list[ChainObject]:
        accepted = []
        for cls in classes:
            try:
                reference: ChainObject | None = from_plain(cls, codec.decode_plain(data, sync.MAX_BLOCK_BYTES))
            except (MalformedMessage, SchemaError):
                reference = None
            try:
                decoded: ChainObject | None = codec.decode(cls, data, sync.MAX_BLOCK_BYTES)
            except MalformedMessage:
                decoded = None
            if decoded != reference:
                raise AssertionError(f"{cls.__name__}: {decoded!r} but plain decoding + schema gave {reference!r}")
            if decoded is not None:
                if codec.encode_fields(decoded) != data:
                    raise AssertionError(f"{cls.__name__}: accepted a non-canonical encoding")
                accepted.append(decoded)
        if not accepted:
            raise MalformedMessage("refused as every class")
        return accepted

    names = ", ".join(cls.__name__ for cls in classes)
    return Target(f"codec.decode agrees with decode_plain + from_plain ({names})", call, seeds, (MalformedMessage,))


def build_targets(workdir: Path) -> list[Target]:
    """Every target, with a live ChainService over a real SQLite chain for the remote handlers."""
    genesis = make_genesis(1, 2)
    chain = open_chain(workdir / "fuzz-chain.sqlite", genesis)
    state = chain.head_state()
    slot_ms = state.param("slot_ms")
    hub = MemoryHub()
    network = hub.add_peer("fuzz-node")
    (_, hot), = validator_keys(1)
    # The validator runs as "fuzz-peer": the direct vote handler takes its votes from that peer.
    service = ChainService(chain, network, FixedClock(genesis.genesis_time_ms + 3 * slot_ms),
                           validator_peer=lambda key: "fuzz-peer" if key == hot.public_key else None)
    assert service.vote_delivery is not None
    chain_id = genesis.chain_id
    user = user_keys(1)[0]

    samples = _samples(chain_id)
    by_type: dict[type, list[bytes]] = {}
    for obj in samples:
        by_type.setdefault(type(obj), []).append(codec.encode(obj))
    every = [data for group in by_type.values() for data in group]

    # Valid messages for this chain, so that mutations reach past decoding into the handlers.
    txs = [signed(user, n, t.Transfer(to=hot.public_key, amount=1 + n), chain_id=chain_id) for n in range(3)]
    weights_tx = signed(hot, 0, t.SetWeights(netuid=0, uids=(0,), values=(65535,), version_key=0), chain_id=chain_id)
    block = chain.build_block(hot, 1, txs[:2])
    cp = t.Checkpoint(epoch=0, height=0, hash=service.genesis_hash)
    vote = t.FinalityVote(chain=chain_id, validator=hot.public_key, source=cp, target=cp)
    live_vote = t.SignedVote(vote=vote, sig=hot.sign(vote.signing_bytes()))
    block_seeds = [codec.encode(block), *by_type[t.Block]]
    tx_seeds = [codec.encode(x) for x in (*txs, weights_tx)] + by_type[t.SignedTx]
    vote_seeds = [codec.encode(live_vote), *by_type[t.SignedVote]]
    batch_seeds = [canonical_encode([codec.encode(x) for x in txs]), canonical_encode(tx_seeds[:2] + tx_seeds[-2:])]
    status_seeds = [sync.encode_status(service.local_status()), *by_type[sync.Status]]
    range_seeds = [sync.encode_range_request(0, 4), sync.encode_range_request(2**63 - 1, 64)]
    response_seeds = [sync.handle_blocks_by_range(sync.encode_range_request(0, 8), chain.store.canonical_range_bytes),
                      *by_type[sync.BlocksByRangeResponse]]

    wire = {t.Block, t.SignedTx, t.SignedVote, sync.Status, sync.BlocksByRangeRequest, sync.BlocksByRangeResponse,
            inference.SignedInferenceRequest, inference.SignedInferenceResponse}
    others = sorted((cls for cls in by_type if cls not in wire), key=lambda c: c.__name__)

    async def submit(data: bytes) -> Any:
        return await service.submit_tx(data)

    def request_then_check(data: bytes) -> None:
        req = inference.decode_request(data)
        inference.check_request(req, chain_id=chain_id, miner="12D3KooWminer", netuid=1, now_ms=1_700_000_000_000)

    def response_then_verify(data: bytes) -> None:
        resp = inference.decode_response(data)
        inference.verify_response(resp, chain_id=chain_id, request_id=bytes(32), miner=user.public_key)

    def expect_verdict(guard: Callable[[str, bytes], Any]) -> Callable[[bytes], Verdict]:
        # The topic's guard itself, not the network's never-raise wrapper around it, so that an
        # exception inside is seen here rather than turned into a rejection.
        def call(data: bytes) -> Verdict:
            checked = guard("fuzz-peer", data)
            verdict = checked if isinstance(checked, Verdict) else getattr(checked, "verdict", None)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"guard returned {checked!r}")
            return verdict

        return call

    genesis_docs = [json.dumps(make_genesis_doc(n)).encode() for n in (1, 2)]
    for name in ("devnet", "testnet"):
        path = ROOT / "testnet" / f"{name}.json"
        if path.exists():
            genesis_docs.append(path.read_bytes())
    case_docs = [p.read_bytes() for p in sorted((ROOT / "testnet" / "epoch-cases").glob("*.json"))
                 if not p.name.endswith(".result.json")]

    walk_request_seeds = [sync.encode_walk_request(service.genesis_hash, 0), *by_type[sync.ValidatorSetWalkRequest]]
    walk_seeds = by_type[sync.ValidatorSetWalkResponse]
    genesis_stake = {hot.public_key: 1}

    def walk_then_verify(data: bytes) -> None:
        resp = sync.decode_walk(data, 0)
        verifier = WalkVerifier(genesis_stake, chain_id)
        for step in resp.steps:
            verifier.feed(step)
        verifier.finish(t.Checkpoint(epoch=1, height=5, hash=bytes(32)))

    def genesis_target(data: bytes) -> None:
        try:
            doc = parse_json(data)
        except LocalFileError as exc:
            raise GenesisError(str(exc)) from None
        parsed, _ = genesis_from_json(doc)
        build_genesis_state(parsed)

    return [
        _codec_target(t.Block, block_seeds, sync.MAX_BLOCK_BYTES),
        _codec_target(t.SignedTx, tx_seeds),
        _codec_target(t.SignedVote, vote_seeds),
        _codec_target(sync.Status, status_seeds, sync.MAX_STATUS_BYTES),
        _codec_target(sync.BlocksByRangeRequest, range_seeds, sync.MAX_RANGE_REQUEST_BYTES),
        _codec_target(sync.BlocksByRangeResponse, response_seeds, sync.MAX_RANGE_RESPONSE_BYTES),
        _codec_target(inference.SignedInferenceRequest, by_type[inference.SignedInferenceRequest]),
        _codec_target(inference.SignedInferenceResponse, by_type[inference.SignedInferenceResponse]),
        _round_robin_target(others, every),
        _agreement_target([t.Block, t.SignedTx, t.Tx, t.SignedVote, t.Header, sync.Status, sync.BlocksByRangeResponse,
                           inference.SignedInferenceRequest, inference.SignedInferenceResponse],
                          every + block_seeds + tx_seeds),
        Target("gossip blocks: ChainService._guard_block", expect_verdict(service._guard_block), block_seeds),
        Target("gossip stake: ChainService._guard_stake_tx", expect_verdict(service._guard_stake_tx), tx_seeds),
        Target("gossip weights: ChainService._guard_weights_tx", expect_verdict(service._guard_weights_tx), tx_seeds),
        Target("gossip votes: ChainService._guard_vote", expect_verdict(service._guard_vote), vote_seeds),
        Target("gossip txbatch: ChainService._guard_tx_batch", expect_verdict(service._guard_tx_batch), batch_seeds),
        Target("POST /tx: ChainService.submit_tx", submit, tx_seeds),
        Target("req status: SyncService._serve_status", lambda data: service.sync._serve_status("fuzz-peer", data),
               status_seeds, (MalformedMessage,)),
        Target("req blocks_by_range: SyncService._serve_range",
               lambda data: service.sync._serve_range("fuzz-peer", data), range_seeds, (MalformedMessage,)),
        Target("req vote: VoteDelivery.judge_request (past the rate limit)",
               lambda data: service.vote_delivery.judge_request("fuzz-peer", data),  # type: ignore[union-attr]
               vote_seeds, outcomes=True),
        Target("req vset_walk: StateChunkServer.serve_walk",
               lambda data: service.state_chunks.serve_walk("fuzz-peer", data), walk_request_seeds, (MalformedMessage,)),
        Target("walk reply: sync.decode_walk + WalkVerifier", walk_then_verify, walk_seeds, (MalformedMessage, WalkError)),
        Target("sync import: SyncService._import_bytes",
               lambda data: service.sync._import_bytes("fuzz-peer", data, 1), block_seeds, outcomes=True),
        Target("sync reply: sync.decode_range_response", lambda data: sync.decode_range_response(data, 64),
               response_seeds, (MalformedMessage,)),
        Target("inference request: decode_request + check_request", request_then_check,
               by_type[inference.SignedInferenceRequest], (inference.InferenceRejected,)),
        Target("inference response: decode_response + verify_response", response_then_verify,
               by_type[inference.SignedInferenceResponse], (MalformedMessage, inference.UntrustedResponse)),
        Target("inference payload: decode_json_payload", inference.decode_json_payload,
               [b'{"text":"hello"}', b'{"history":[1,2,3],"horizon":4}'], (ValueError,), structured=False),
        Target("genesis file: parse + genesis_from_json + build", genesis_target, genesis_docs, (GenesisError,),
               structured=False),
        Target("epoch case: loads_case", loads_case, case_docs, (EpochCaseError,), structured=False),
    ]


def make_genesis_doc(validators: int) -> dict[str, Any]:
    from p2pnode.cli.testnet import make_genesis as make_genesis_json  # noqa: PLC0415 (CLI helper)

    return make_genesis_json(validators, market=validators > 1, slot_ms=1000)


# ---------------------------------------------------------------- mutations

# Initial bytes the strict decoder must refuse or treat with care: 1/2/4/8-byte arguments,
# reserved and indefinite lengths of every major type, tags, floats, simple values, break.
INTERESTING_INITIALS = bytes(
    [0x18, 0x19, 0x1A, 0x1B, 0x1C, 0x1F, 0x38, 0x3B, 0x58, 0x5A, 0x5B, 0x5F, 0x78, 0x7A, 0x7B, 0x7F, 0x98, 0x9A, 0x9B,
     0x9F, 0xB8, 0xBA, 0xBB, 0xBF, 0xC0, 0xC2, 0xC3, 0xC4, 0xC5, 0xD8, 0xDB, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA,
     0xFB, 0xFF]
)
INTERESTING_INTS = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63)]
INTERESTING_TEXT = ["", "é", "\U0001f600" * 64, "x" * 65, "a\nb", "x" * 4096, "\u202e", "dev"]


def _leaf_replacement(rng: random.Random) -> Any:
    choice = rng.randrange(8)
    if choice == 0:
        return rng.choice(INTERESTING_INTS)
    if choice == 1:
        return rng.choice(INTERESTING_TEXT)
    if choice == 2:
        return bytes(rng.choice([0, 1, 31, 32, 33, 63, 64, 65, 4096]))
    if choice == 3:
        return rng.choice([True, False, None])
    if choice == 4:
        value: Any = 0
        for _ in range(rng.choice([2, 15, 16, 17, 40])):
            value = [value]
        return value
    if choice == 5:
        return {"x": 1} if rng.random() < 0.5 else {}
    if choice == 6:
        return [rng.choice(INTERESTING_INTS) for _ in range(rng.choice([0, 1, 65, 4097]))]
    return rng.randrange(2**64)


def _structured(rng: random.Random, seed: bytes) -> bytes:
    """Decode `seed`, replace, drop or add one field somewhere inside, and encode canonically."""
    try:
        value = codec.decode_plain(seed, 1 << 30)
    except MalformedMessage:
        return seed
    containers: list[Any] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            containers.append(node)
            stack.extend(node.values())
        elif type(node) is list:
            containers.append(node)
            stack.extend(node)
    if not containers:
        return canonical_encode(_leaf_replacement(rng))
    target = rng.choice(containers)
    if type(target) is dict:
        keys = sorted(target)
        action = rng.randrange(6)
        if action == 0 and keys:
            del target[rng.choice(keys)]
        elif action == 1:
            target[rng.choice(["extra", "chain", "height", "sig", "zz", ""])] = _leaf_replacement(rng)
        elif keys:
            target[rng.choice(keys)] = _leaf_replacement(rng)
    elif target:
        target[rng.randrange(len(target))] = _leaf_replacement(rng)
    else:
        target.append(_leaf_replacement(rng))
    try:
        return canonical_encode(value)
    except (TypeError, ValueError):
        return seed


def _byte_mutation(rng: random.Random, data: bytearray, seeds: list[bytes]) -> bytearray:
    n = len(data)
    choice = rng.randrange(11)
    if n == 0 or choice == 0:
        data += rng.randbytes(rng.randrange(1, 9))
    elif choice == 1:
        i = rng.randrange(n)
        data[i] ^= 1 << rng.randrange(8)
    elif choice == 2:
        data[rng.randrange(n)] = rng.randrange(256)
    elif choice == 3:
        data[rng.randrange(n)] = rng.choice(INTERESTING_INITIALS)
    elif choice == 4:
        i = rng.randrange(n)
        data[i:i] = bytes([rng.choice(INTERESTING_INITIALS)]) + rng.randbytes(rng.choice([0, 1, 2, 4, 8]))
    elif choice == 5:
        i = rng.randrange(n)
        del data[i : i + rng.randrange(1, 9)]
    elif choice == 6:
        del data[rng.randrange(n) :]
    elif choice == 7:
        i, j = sorted(rng.randrange(n + 1) for _ in range(2))
        k = rng.randrange(n + 1)
        data[k:k] = data[i:j]
    elif choice == 8:
        other = rng.choice(seeds)
        data = data[: rng.randrange(n + 1)] + other[rng.randrange(len(other) + 1) :]
    elif choice == 9:
        i = rng.randrange(n)
        data[i : i + 9] = bytes([0x1B | (rng.randrange(8) << 5)]) + b"\xff" * 8  # an 8-byte length or value
    else:
        data += rng.randbytes(rng.randrange(1, 64))
    return data


def next_input(rng: random.Random, target: Target) -> bytes:
    roll = rng.random()
    if roll < 0.08 or not target.seeds:
        return rng.randbytes(rng.randrange(MAX_RANDOM_LEN + 1))
    seed = rng.choice(target.seeds)
    if target.structured and roll < 0.30:
        return _structured(rng, seed)
    data = bytearray(seed)
    for _ in range(rng.randrange(1, 5)):
        data = _byte_mutation(rng, data, target.seeds)
    return bytes(data)


# ---------------------------------------------------------------- running


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


async def _fuzz_target(target: Target, inputs: int, rng: random.Random, progress: Callable[[str], None] | None) -> Report:
    report = Report(target.name)
    expected = target.expected
    clock = time.process_time
    checkpoint_every = 256  # let the service's own tasks (none here) and trio breathe
    for n in range(inputs):
        data = next_input(rng, target)
        start = clock()
        try:
            result = target.call(data)
            if inspect.isawaitable(result):
                result = await result
        except expected:
            report.refused += 1
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            report.unexpected += 1
            if len(report.findings) < 5:
                report.findings.append({
                    "exception": f"{type(exc).__name__}: {str(exc)[:200]}",
                    "where": "".join(traceback.format_exception(exc)[-3:])[-600:],
                    "input_hex": data[:256].hex(),
                })
        else:
            report.accepted += 1
            if isinstance(result, Verdict) or (target.outcomes and isinstance(result, str)):
                outcome = result.value if isinstance(result, Verdict) else result
                report.verdicts[outcome] = report.verdicts.get(outcome, 0) + 1
            if target.canonical and codec.encode_fields(result) != data:
                report.non_canonical += 1
                if len(report.findings) < 5:
                    report.findings.append({"exception": "accepted a non-canonical input", "input_hex": data[:256].hex()})
        spent = clock() - start
        if spent * 1000 > report.worst_cpu_ms:
            report.worst_cpu_ms = spent * 1000
            report.worst_input_len = len(data)
        report.inputs += 1
        if n % checkpoint_every == 0:
            await trio.lowlevel.checkpoint()
        if progress is not None and n and n % 100_000 == 0:
            progress(f"  {target.name}: {n} inputs, {report.unexpected} unexpected")
    return report


def run_campaign(inputs: int, seed: int = 1, only: str | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every target (or those whose name contains `only`) for `inputs` inputs each."""

    async def main() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="p2pnode-fuzz-") as tmp:
            targets = [tg for tg in build_targets(Path(tmp)) if only is None or only in tg.name]
            rng = random.Random(seed)
            for target in targets:  # warm every path once before measuring memory
                await _fuzz_target(target, 50, random.Random(seed), None)
            rss_before = rss_bytes()
            started = time.monotonic()
            reports = []
            for target in targets:
                reports.append(await _fuzz_target(target, inputs, rng, progress))
                if progress is not None:
                    r = reports[-1]
                    progress(f"{r.name}: {r.inputs} inputs, {r.unexpected} unexpected, worst {r.worst_cpu_ms:.2f} ms")
            return {
                "inputs_per_target": inputs,
                "seed": seed,
                "targets": [vars(r) for r in reports],
                "total_inputs": sum(r.inputs for r in reports),
                "unexpected": sum(r.unexpected for r in reports),
                "non_canonical": sum(r.non_canonical for r in reports),
                "rss_before_mib": rss_before / 2**20,
                "rss_after_mib": rss_bytes() / 2**20,
                "wall_s": time.monotonic() - started,
                "python": sys.version.split()[0],
            }

    return trio.run(main)


def render(result: dict[str, Any]) -> str:
    lines = [
        "| target | inputs | returned | refused by name | unexpected | non-canonical accepted | worst CPU ms (input bytes) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["targets"]:
        verdicts = ", ".join(f"{k} {v:,}" for k, v in sorted(r["verdicts"].items()))
        accepted = f"{r['accepted']:,}" + (f" ({verdicts})" if verdicts else "")
        lines.append(f"| {r['name']} | {r['inputs']:,} | {accepted} | {r['refused']:,} | {r['unexpected']} | "
                     f"{r['non_canonical']} | {r['worst_cpu_ms']:.2f} ({r['worst_input_len']}) |")
    lines.append("")
    lines.append(f"{result['total_inputs']:,} inputs in {result['wall_s']:.0f} s; unexpected exceptions: "
                 f"{result['unexpected']}; non-canonical accepted: {result['non_canonical']}; RSS "
                 f"{result['rss_before_mib']:.1f} -> {result['rss_after_mib']:.1f} MiB")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="run only the targets whose name contains this")
    parser.add_argument("--json", type=Path, help="also write the full result (findings included) here")
    args = parser.parse_args()
    result = run_campaign(args.inputs, args.seed, args.only, progress=lambda line: print(line, flush=True))
    print(render(result))
    for r in result["targets"]:
        for finding in r["findings"]:
            print(f"\n{r['name']}: {finding['exception']}\n{finding.get('where', '')}input: {finding['input_hex']}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if result["unexpected"] or result["non_canonical"] else 0


if __name__ == "__main__":
    sys.exit(main())
