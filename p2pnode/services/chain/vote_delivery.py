"""Finality votes handed straight to the coming proposers by request/response; gossip is the fallback.

A vote counts only once a block carries it, so it need only reach the proposers of the next few
slots, and the schedule names them. Gossiped, every vote cost every node a copy from each of its
mesh peers: at 32 validators and 4-slot epochs that is 8 votes a second network-wide, each handled
about 6 times by each of the 32 nodes, more CPU than the blocks themselves. Handed over directly, a
vote costs at most `direct_vote_slots` requests.

Sending (`deliver`): the distinct proposers of the next `direct_vote_slots` slots within the vote's
inclusion window are asked at once (this node counts for itself if it is one of them: its pool holds
the vote). A proposer answers `accepted` or `held` once the vote is in its pool; one that does not
answer within `direct_vote_timeout_ms` counts as having taken it (see `_ask`). When fewer than
`direct_vote_acks` took it (all of them, when fewer proposers are due) because the others refused
it or could not be reached (offline, behind, on another fork), the vote is gossiped as before.
Everyone still sees every vote that counts: in the blocks that carry it, which feed the
equivocation watch.

Serving (`serve`): a vote is taken only from the validator's own peer (libp2p derives the PeerID
from the hotkey), so a peer can hand in nothing but its own validator's votes; at most
`vote_requests_per_minute` requests per peer (burst `vote_requests_burst`), and a shared bucket for
all peers; then the vote topic's own checks (epoch window, known validator, signature, equivocation
watch, pool). Invalid input (malformed, wrong chain, bad signature) is penalised as a REJECT on the
topic is; a peer that keeps asking over its rate is penalised once per window. The answer names the
outcome: `accepted`, `held`, or the refusal's reason.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from p2pnode.chain import consensus, finality
from p2pnode.chain.types import SignedVote
from p2pnode.services.chain.guards import RefusalCounter, guard_request
from p2pnode.services.ratelimit import TokenBuckets
from protocols import codec, topics
from protocols.network import Checked, NetworkAPI, RequestError, RequestTimeout, Verdict
from protocols.validation import decode_on_chain, vote_chain

if TYPE_CHECKING:
    from p2pnode.services.chain.block_tree import BlockTree
    from p2pnode.services.chain.chain_service import NodeConfig
    from p2pnode.services.chain.votes import VotePool
    from p2pnode.services.clock import Clock

log = logging.getLogger(__name__)

MAX_VOTE_BYTES = 1024
MAX_ANSWER_BYTES = 64
ACCEPTED = "accepted"
HELD = "held"
ACKS = frozenset({ACCEPTED.encode(), HELD.encode()})
PENALTY_INVALID_VOTE = 20.0
PENALTY_VOTE_FLOOD = 20.0
# Every peer's requests together: a proposer hears from most validators within a slot or two of
# the vote (one vote each per epoch), so the burst covers a block's worth of votes (1,024); the
# rate bounds a flood to well under a core of signature checks. Past it, voters fall back to gossip.
TOTAL_VOTE_REQUESTS_PER_S = 200.0
TOTAL_VOTE_REQUESTS_BURST = 1024

# hotkey -> the peer that validator runs under (None: not known, votes are only gossiped)
ValidatorPeer = Callable[[bytes], "str | None"]
# the vote topic's checks after decoding (window, known validator, signature, watch, pool)
JudgeVote = Callable[[SignedVote], Checked]


class VoteDelivery:
    """Both sides of the direct vote protocol for one node (see the module docstring)."""

    def __init__(self, chain: BlockTree, network: NetworkAPI, clock: Clock, config: NodeConfig, chain_id: str,
                 epoch_slots: int, vote_pool: VotePool, judge: JudgeVote, validator_peer: ValidatorPeer,
                 gossip: Callable[[bytes], Awaitable[None]]) -> None:
        self.chain = chain
        self.network = network
        self.clock = clock
        self.config = config
        self.chain_id = chain_id
        self.protocol = topics.vote_protocol(chain_id)
        self.epoch_slots = epoch_slots
        self.vote_pool = vote_pool
        self.judge = judge
        self.validator_peer = validator_peer
        self.gossip = gossip
        self.buckets: TokenBuckets[str] = TokenBuckets(config.vote_requests_per_minute / 60,
                                                       config.vote_requests_burst, max_entries=4096)
        self.total: TokenBuckets[str] = TokenBuckets(TOTAL_VOTE_REQUESTS_PER_S, TOTAL_VOTE_REQUESTS_BURST)
        self.over_rate = RefusalCounter(config.vote_requests_burst, 60_000)
        # what happened to the votes this node cast, and to those handed to it
        self.sent_direct = 0
        self.asked = {"acked": 0, "late": 0, "refused": 0}  # the answers to this node's requests
        self.gossiped = 0
        self.gossiped_uncounted = 0  # taken by proposers, yet not counted by the head later
        self.held_back_overloaded = 0  # uncounted, but not gossiped: blocks were arriving late
        self.served: dict[str, int] = {}

    def register(self) -> None:
        self.network.set_request_handler(self.protocol, guard_request("vote handler", self.serve, self.network.penalise),
                                         MAX_VOTE_BYTES)

    # ---------------------------------------------------------------- serving

    async def serve(self, peer_id: str, request: bytes) -> bytes:
        outcome = self._take(peer_id, request)
        self.served[outcome] = self.served.get(outcome, 0) + 1
        return outcome.encode()

    def _take(self, peer_id: str, request: bytes) -> str:
        now = self.clock.now_ms()
        if not (self.buckets.allow(peer_id, now) and self.total.allow("all", now)):
            if self.over_rate.refused(peer_id, now):
                self.network.penalise(peer_id, "vote_flood", PENALTY_VOTE_FLOOD)
            return "rate_limited"
        return self.judge_request(peer_id, request)

    def judge_request(self, peer_id: str, request: bytes) -> str:
        """A request within the rate: the vote's outcome (penalising invalid input)."""
        signed_vote = decode_on_chain(SignedVote, request, self.chain_id, vote_chain, MAX_VOTE_BYTES)
        if isinstance(signed_vote, Checked):
            self.network.penalise(peer_id, f"vote_{signed_vote.reason}", PENALTY_INVALID_VOTE)
            return signed_vote.reason
        if self.validator_peer(signed_vote.vote.validator) != peer_id:
            return "not_own_vote"  # relaying is gossip's job; here each validator speaks for itself
        if self.vote_pool.holds(signed_vote):
            return HELD  # the same signed bytes were verified when they were pooled
        checked = self.judge(signed_vote)
        if checked.verdict == Verdict.ACCEPT:
            return ACCEPTED
        if checked.verdict == Verdict.REJECT:
            self.network.penalise(peer_id, f"vote_{checked.reason}", PENALTY_INVALID_VOTE)
        return checked.reason

    # ---------------------------------------------------------------- sending

    def proposers_for(self, signed_vote: SignedVote, slot: int) -> list[bytes]:
        """The distinct proposers of the `direct_vote_slots` slots after `slot` that may still
        include the vote (blocks of its target epoch and the next one), soonest first."""
        last = (signed_vote.vote.target.epoch + 2) * self.epoch_slots - 1
        state = self.chain.head_state()
        proposers: list[bytes] = []
        for s in range(slot + 1, min(slot + self.config.direct_vote_slots, last) + 1):
            proposer = consensus.proposer_for_slot(state, s)
            if proposer is not None and proposer not in proposers:
                proposers.append(proposer)
        return proposers

    async def deliver(self, signed_vote: SignedVote, slot: int, own_key: bytes) -> bool:
        """Hand the vote (already pooled here) to the coming proposers; gossip it when too few
        may have taken it. True when it went directly."""
        data = codec.encode(signed_vote)
        proposers = self.proposers_for(signed_vote, slot)
        needed = min(self.config.direct_vote_acks, len(proposers))
        taken = 1 if own_key in proposers else 0
        peers = [p for p in (self.validator_peer(hot) for hot in proposers if hot != own_key) if p is not None]
        if proposers and taken < needed and peers:
            taken += await self._ask(peers, data)
        if proposers and taken >= needed:
            self.sent_direct += 1
            return True
        self.gossiped += 1
        await self.gossip(data)
        return False

    async def gossip_if_uncounted(self, signed_vote: SignedVote, slot: int, block_delay_ms: int | None = None) -> bool:
        """Gossip a vote `deliver` handed over directly if the head's chain has not counted it and
        a block may still carry it: the proposers that took it may have lied (or not answered).

        Not while blocks arrive more than half a slot late (`block_delay_ms`: the median delay of
        recent gossip blocks): then the machine or the network is overloaded, votes are uncounted
        because every block is late, and gossiping them all adds the load that made the blocks
        late (a 32-peer testnet on a busy machine never recovered once every vote was gossiped).
        One proposer withholding its block does not move that median."""
        vote = signed_vote.vote
        if slot > (vote.target.epoch + 2) * self.epoch_slots - 1:
            return False
        if vote.validator in finality.counted_voters(self.chain.head_state(), vote.target.epoch):
            return False
        if block_delay_ms is not None and block_delay_ms > self.chain.head_param("slot_ms") // 2:
            self.held_back_overloaded += 1
            return False
        self.gossiped_uncounted += 1
        await self.gossip(codec.encode(signed_vote))
        return True

    async def _ask(self, peers: list[str], data: bytes) -> int:
        """How many of `peers` took the vote or may have: an answer `accepted`/`held`, or no
        answer in time. A timeout is counted as taken: on a busy machine the request usually
        arrived and only the answer is late, and gossiping every such vote as well multiplied the
        load that made the answers late (every vote of a 32-peer testnet ended up gossiped).
        Only a refusal or an unreachable proposer counts against delivery."""
        outcomes = {"acked": 0, "late": 0, "refused": 0}
        timeout_s = self.config.direct_vote_timeout_ms / 1000

        async def ask(peer: str) -> None:
            try:
                # The dial before the request has no bound of the request's own.
                with trio.fail_after(2 * timeout_s):
                    answer = await self.network.request(peer, self.protocol, data, timeout=timeout_s,
                                                        max_response_bytes=MAX_ANSWER_BYTES)
            except (RequestTimeout, trio.TooSlowError):
                outcomes["late"] += 1
                return
            except RequestError as exc:
                log.debug("vote to %s not delivered: %s", peer, exc)
                outcomes["refused"] += 1
                return
            if answer in ACKS:
                outcomes["acked"] += 1
            else:
                log.debug("vote refused by %s: %r", peer, answer[:MAX_ANSWER_BYTES])
                outcomes["refused"] += 1

        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(ask, peer)
        for outcome, count in outcomes.items():
            self.asked[outcome] += count
        return outcomes["acked"] + outcomes["late"]
