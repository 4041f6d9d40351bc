"""Generation: text sampled from miners' own models, streamed in chunks, failing over mid-stream."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
import trio
from marketutil import CHAIN, NETUID, join, key, wall_clock

from models.tasks import TextTask
from models.tasks.text import VOCAB, sampling_uniform
from p2pnode.chain.address import decode_address
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import InferenceClient
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.query import QueryError, start_generation
from p2pnode.services.market.routing import Router
from p2pnode.testing.memnet import MemoryHub
from protocols.inference import decode_response, verify_response

pytestmark = pytest.mark.timeout(60)

CLIENT = key("generation-client")
PROMPT = "def read(self"


class CountingTextModel:
    """A text "model" without torch or corpus: the character after the context's last one in the
    vocabulary, with probability 0.9 (the rest spread evenly)."""

    max_batch_size = 64

    def answer_batch(self, requests: list[Any]) -> list[dict[str, Any]]:
        out = []
        for request in requests:
            following = VOCAB[(VOCAB.index(request["context"][-1]) + 1) % len(VOCAB)]
            out.append({"logprobs": [[following, math.log(0.9)]]})
        return out


@pytest.fixture
def text_model() -> Any:
    return CountingTextModel()


class TextSubnet:
    def __init__(self) -> None:
        self.hub = MemoryHub()
        self.rows: list[NeuronInfo] = []
        self.router = Router(InferenceClient(join(self.hub, CLIENT), CLIENT, CHAIN, wall_clock()), TrioClock())

    async def miner(self, nursery: trio.Nursery, uid: int, incentive: int, model: Any) -> str:
        miner_key = key(f"text-miner-{uid}")
        net = join(self.hub, miner_key)
        self.rows.append(NeuronInfo(uid, miner_key.public_key, net.peer_id, incentive=incentive))
        server = MinerServer(miner_key, CHAIN, NETUID, model, TextTask(), lambda _: 1, wall_clock())
        await nursery.start(server.run, net)
        return net.peer_id

    def stream(self, max_tokens: int, **options: Any) -> Any:
        return start_generation(self.router, self.rows, NETUID, TextTask(), PROMPT, max_tokens=max_tokens, **options)


def test_sampling_is_a_deterministic_inverse_cdf() -> None:
    task = TextTask()
    certain = {"logprobs": [["e", 0.0]]}
    assert {task.sample(certain, u / 10, 1.0) for u in range(10)} == {"e"}
    even = task.baseline_response({"context": "x"})
    assert task.sample(even, 0.0, 1.0) == VOCAB[0] and task.sample(even, 0.999999, 1.0) == VOCAB[-1]
    assert task.sample({"logprobs": [["a", -0.1], ["b", -2.5]]}, 0.7, 0.0) == "a"  # greedy
    assert 0 <= sampling_uniform(1, 2) < 1 and sampling_uniform(1, 2) == sampling_uniform(1, 2) != sampling_uniform(1, 3)


async def test_generation_streams_chunks_with_receipts(text_model: Any) -> None:
    subnet = TextSubnet()
    async with trio.open_nursery() as nursery:
        await subnet.miner(nursery, 1, 40_000, text_model)
        await subnet.miner(nursery, 2, 10_000, text_model)
        events = [event async for event in subnet.stream(40, temperature=0.8, seed=7)]
        assert [kind for kind, _ in events] == ["chunk", "chunk", "chunk", "done"]
        chunks = [data for kind, data in events if kind == "chunk"]
        assert [len(c["text"]) for c in chunks] == [16, 16, 8] and {c["uid"] for c in chunks} == {1}
        done = events[-1][1]
        assert done["text"] == "".join(c["text"] for c in chunks) and len(done["text"]) == 40
        assert all(ch in VOCAB for ch in done["text"])
        for chunk in chunks:  # every chunk is receipted by its writer
            signed = decode_response(base64.b64decode(chunk["receipt"]))
            verified = verify_response(signed, chain_id=CHAIN, request_id=bytes.fromhex(chunk["request_id"]),
                                       miner=decode_address(chunk["hotkey"]))
            assert json.loads(verified.payload) == {"text": chunk["text"]}
        # Same miners' model, prompt and seed: the same text.
        again = [event async for event in subnet.stream(40, temperature=0.8, seed=7)]
        assert again[-1][1]["text"] == done["text"]
        nursery.cancel_scope.cancel()


async def test_a_miner_killed_mid_stream_fails_over_to_the_next(text_model: Any) -> None:
    subnet = TextSubnet()
    async with trio.open_nursery() as nursery:
        first = await subnet.miner(nursery, 1, 40_000, text_model)
        await subnet.miner(nursery, 2, 10_000, text_model)
        events: list[tuple[str, dict[str, Any]]] = []
        async for kind, data in subnet.stream(48, seed=3):
            events.append((kind, data))
            if len(events) == 1:
                subnet.hub.kill(first)  # the writer dies after its first chunk
        kinds = [kind for kind, _ in events]
        assert kinds == ["chunk", "chunk", "chunk", "done"]
        writers = [data["uid"] for kind, data in events if kind == "chunk"]
        assert writers == [1, 2, 2]
        assert "1" in events[1][1]["failures"] and len(events[-1][1]["text"]) == 48
        nursery.cancel_scope.cancel()


async def test_generation_requests_are_checked_before_streaming(text_model: Any) -> None:
    subnet = TextSubnet()
    with pytest.raises(QueryError) as info:
        subnet.stream(8)
    assert info.value.status == 503
    async with trio.open_nursery() as nursery:
        await subnet.miner(nursery, 1, 1, text_model)
        for options, status in (({"max_tokens": 0}, 400), ({"max_tokens": 5000}, 400),
                                ({"max_tokens": 8, "temperature": 3.0}, 400), ({"max_tokens": 8, "uid": 9}, 404)):
            with pytest.raises(QueryError) as info:
                start_generation(subnet.router, subnet.rows, NETUID, TextTask(), PROMPT, **options)
            assert info.value.status == status, options
        with pytest.raises(QueryError) as info:
            start_generation(subnet.router, subnet.rows, NETUID, TextTask(), "caf\u00e9", max_tokens=4)
        assert info.value.status == 400
        nursery.cancel_scope.cancel()


class JunkGenerator(MinerServer):
    """Honest distributions, junk text: what the validator's generation check must catch."""

    async def _generate(self, request: dict[str, Any], stake: int, deadline_ms: int) -> dict[str, Any]:
        return {"text": "#" * request["max_tokens"]}


class FixedContexts:
    """Text challenges without the corpus (kind "private"), so the test stays fast."""

    kind = "private"

    def make(self, seed: int) -> tuple[dict[str, Any], str]:
        context = "".join(VOCAB[(seed + i) % len(VOCAB)] for i in range(40))
        return {"context": context}, VOCAB[(seed + 40) % len(VOCAB)]


async def test_validators_catch_generations_inconsistent_with_reported_distributions(
    text_model: Any, tmp_path: Any
) -> None:
    from marketutil import OneSubnet

    from p2pnode.services.market.validator import ValidatorConfig, ValidatorLoop

    hub = MemoryHub()
    validator_key = key("generation-validator")
    rows = [NeuronInfo(0, validator_key.public_key, join(hub, validator_key).peer_id)]
    servers = []
    async with trio.open_nursery() as nursery:
        for uid, kind in ((1, MinerServer), (2, JunkGenerator)):
            miner_key = key(f"checked-miner-{uid}")
            net = join(hub, miner_key)
            rows.append(NeuronInfo(uid, miner_key.public_key, net.peer_id))
            server = kind(miner_key, CHAIN, NETUID, text_model, TextTask(), lambda _: 1, wall_clock())
            await nursery.start(server.run, net)
            servers.append(server)
        submitted: list[Any] = []

        async def submit(body: Any) -> bool:
            submitted.append(body)
            return True

        loop = ValidatorLoop(
            validator_key, CHAIN, NETUID, TextTask(), hub.peers[rows[0].peer_id], OneSubnet(rows, task="text"),
            submit, tmp_path, wall_clock(), rng_seed=3, challenges=FixedContexts(),  # type: ignore[arg-type]
            config=ValidatorConfig(generation_check_probability=1.0, truth_delay_rounds=0),
        )
        report = await loop.run_round()
        assert report.outcomes[1] == "scored" and report.scores[1] > 0.5
        assert report.outcomes[2].startswith("inconsistent generation: character 0")
        assert report.scores[2] == 0.0
        nursery.cancel_scope.cancel()
