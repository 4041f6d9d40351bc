"""Access to intelligence: choosing miners, asking them, and the `query` / `metagraph` commands."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trio
from marketutil import CHAIN, NETUID, FakeForecastModel, FakeMiner, join, key, wall_clock

from models.tasks import ForecastTask
from p2pnode.chain.address import decode_address
from p2pnode.cli import main
from p2pnode.services.clock import TrioClock
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import InferenceClient
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.query import QueryError, handle_query, request_from_input
from p2pnode.services.market.routing import Router
from p2pnode.testing.memnet import MemoryHub
from protocols.inference import decode_response, verify_response

pytestmark = pytest.mark.timeout(60)

CLIENT = key("query-client")


async def test_ranking_by_incentive_latency_load_and_failures(autojump_clock: Any) -> None:
    router = Router(InferenceClient(MemoryHub().add_peer("x"), CLIENT, CHAIN, TrioClock()), TrioClock())
    a, b, c = (NeuronInfo(uid, key(name).public_key, f"p{name}", incentive=30_000) for uid, name in ((1, "a"), (2, "b"), (3, "c")))
    rows = [NeuronInfo(0, CLIENT.public_key, "self", incentive=60_000), a, b, c,
            NeuronInfo(4, key("d").public_key, "", incentive=65_535)]  # not serving
    assert [n.uid for n in router.rank(rows, exclude=CLIENT.public_key)] == [1, 2, 3]  # ties: lower uid
    assert [n.uid for n in router.rank([a, NeuronInfo(9, key("z").public_key, "pz", incentive=60_000)])] == [9, 1]
    router._record(a.hotkey, 2_000)  # a is slow,
    router._record(b.hotkey, 20)  # b fast,
    router.stats(c.hotkey).in_flight = 3  # c busy
    assert [n.uid for n in router.rank([a, b, c])] == [2, 3, 1]  # fast first; unmeasured (if busy) before slow
    for _ in range(6):  # failures in a row halve b's score each: it drops below the slow a
        router._record(b.hotkey, None)
    assert router.rank([a, b])[0].uid == 1
    assert 0.3 <= router.hedge_after_s(b) <= 2.0 and router.hedge_after_s(a) == 2.0


def test_input_forms() -> None:
    task = ForecastTask()
    assert request_from_input(task, "1, 2, 3, 4 5 6 7 8") == {
        "history": [1.0, 2, 3, 4, 5, 6, 7, 8],
        "horizon": 12,
    }
    assert request_from_input(task, '{"history": [1,2,3,4,5,6,7,8], "horizon": 2}')["horizon"] == 2
    for bad in ("1, 2, x", "1, 2", '{"history": 1', "{}"):
        with pytest.raises(QueryError) as info:
            request_from_input(task, bad)
        assert info.value.status == 400


class Subnet:
    """A client node and miners on the in-memory network, with incentives in a metagraph."""

    def __init__(self) -> None:
        self.hub = MemoryHub()
        self.net = join(self.hub, CLIENT)
        self.rows: list[NeuronInfo] = []
        self.router = Router(InferenceClient(self.net, CLIENT, CHAIN, wall_clock()), TrioClock())

    def fake(self, uid: int, incentive: int, behaviour: str) -> FakeMiner:
        miner = FakeMiner(self.hub, f"{behaviour}-{uid}", behaviour)
        self.rows.append(NeuronInfo(uid, miner.key.public_key, miner.net.peer_id, incentive=incentive))
        return miner

    async def real(self, nursery: trio.Nursery, uid: int, incentive: int, model: Any = None) -> MinerServer:
        miner_key = key(f"real-miner-{uid}")
        net = join(self.hub, miner_key)
        self.rows.append(NeuronInfo(uid, miner_key.public_key, net.peer_id, incentive=incentive))
        server = MinerServer(
            miner_key, CHAIN, NETUID, model or FakeForecastModel(), ForecastTask(), lambda _: 1, wall_clock()
        )
        await nursery.start(server.run, net)
        return server

    async def ask(self, text: str = "1,2,3,4,5,6,7,8", uid: int | None = None) -> dict[str, Any]:
        return await handle_query(self.router, self.rows, NETUID, ForecastTask(), text, uid=uid, timeout_s=5.0)


async def test_the_best_miner_answers_with_a_receipt() -> None:
    subnet = Subnet()
    async with trio.open_nursery() as nursery:
        for uid, incentive in ((1, 13_000), (2, 45_000), (3, 3_000)):
            await subnet.real(nursery, uid, incentive)
        result = await subnet.ask()
        assert (result["uid"], result["asked"], result["failures"], result["hedged"]) == (2, [2], {}, False)
        assert result["response"] == {"forecast": [8.0] * 12}
        # The receipt: the miner's signed response to our request id, verifiable by anyone.
        signed = decode_response(base64.b64decode(result["receipt"]))
        verified = verify_response(
            signed, chain_id=CHAIN, request_id=bytes.fromhex(result["request_id"]), miner=decode_address(result["hotkey"])
        )
        assert json.loads(verified.payload) == result["response"] and signed.sig.hex() == result["signature"]
        nursery.cancel_scope.cancel()


async def test_a_hung_miner_is_hedged_and_a_failing_one_replaced(autojump_clock: Any) -> None:
    subnet = Subnet()
    async with trio.open_nursery() as nursery:
        subnet.fake(4, 60_000, "hang")  # ranked first: never answers
        subnet.fake(3, 50_000, "error")  # second: fails at once
        subnet.fake(2, 40_000, "naive")  # third: answers
        started = trio.current_time()
        result = await subnet.ask()
        assert result["uid"] == 2 and result["asked"] == [4, 3, 2] and result["hedged"] is True
        assert result["failures"]["4"].startswith("too slow") and "INTERNAL" in result["failures"]["3"]
        # Hedged after 3 x the 500 ms prior (1.5 s), not after the 5 s request timeout.
        assert trio.current_time() - started < 2.0
        # What was learnt: the failing miner is demoted for its failure, the hung one for having
        # been outrun (its latency is at least the wait), the one that answered keeps its place.
        hung, failing, answering = (subnet.router.stats(row.hotkey) for row in subnet.rows)
        assert failing.failures == 1 and hung.latency_ms is not None and hung.latency_ms > 500
        second = await subnet.ask()
        assert second["uid"] == 2
        nursery.cancel_scope.cancel()


async def test_asking_one_uid() -> None:
    subnet = Subnet()
    async with trio.open_nursery() as nursery:
        await subnet.real(nursery, 1, 60_000)
        await subnet.real(nursery, 2, 1_000)
        assert (await subnet.ask(uid=2))["uid"] == 2
        subnet.rows.append(NeuronInfo(7, key("idle").public_key, ""))
        for uid, status in ((7, 503), (8, 404)):
            with pytest.raises(QueryError) as info:
                await subnet.ask(uid=uid)
            assert info.value.status == status
        nursery.cancel_scope.cancel()


async def test_query_failures_have_statuses(autojump_clock: Any) -> None:
    subnet = Subnet()
    with pytest.raises(QueryError) as info:
        await subnet.ask()
    assert info.value.status == 503
    for uid, behaviour in ((1, "garbage"), (2, "hang"), (3, "forged")):
        subnet.fake(uid, 1, behaviour)
    with pytest.raises(QueryError) as info:
        await subnet.ask()
    assert info.value.status == 502
    assert "invalid answer" in info.value.message and "another key" in info.value.message
    with pytest.raises(QueryError) as info:
        await subnet.ask("not numbers")
    assert info.value.status == 400


# ---------------------------------------------------------------- the commands, against a fake API


class FakeAPI(BaseHTTPRequestHandler):
    posted: list[Any] = []

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeAPI.posted.append(body)
        if self.path == "/generate":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for kind, data in (("chunk", {"uid": 2, "text": "lf, size"}), ("chunk", {"uid": 3, "text": "=-1):"}),
                               ("done", {"text": "lf, size=-1):", "uids": [2, 3]})):
                if body["max_tokens"] == 5 and kind == "done":
                    kind, data = "error", {"error": "no miner continued the text after 13 characters"}
                self.wfile.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()
            return
        if body["netuid"] == 9:
            self._send(503, {"error": "no miner serves subnet 9"})
            return
        self._send(
            200,
            {
                "uid": 2,
                "hotkey": "p2p1example",
                "latency_ms": 12.5,
                "response": {"logprobs": [["e", -0.5], [" ", -1.5]]},
                "failures": {},
            },
        )

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/metagraph/1":
            row = {
                "uid": 0,
                "hotkey": "p2p1abc",
                "stake": 1000,
                "validator_permit": True,
                "consensus": 0.5,
                "incentive": 0.25,
                "dividends": 0.0,
                "emission": 12,
                "model": "text-bigram",
                "peer_id": "12D3",
            }
            self._send(200, [row])
        else:
            self._send(404, {"error": "unknown subnet"})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def fake_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_query_and_metagraph_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with fake_api() as url:
        assert main(["query", "--netuid", "1", "Return the", "--api", url]) == 0
        out = capsys.readouterr().out
        assert "uid 2" in out and "12.5 ms" in out and "'e' 60.7%" in out
        assert FakeAPI.posted[-1] == {"netuid": 1, "input": "Return the"}

        assert main(["query", "--netuid", "1", "x", "--api", url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["uid"] == 2
        assert main(["query", "--netuid", "1", "def read(se", "--max-tokens", "13", "--api", url]) == 0
        streamed = capsys.readouterr()
        assert streamed.out == "lf, size=-1):\n" and "written by uid 2, 3" in streamed.err
        assert FakeAPI.posted[-1] == {"netuid": 1, "input": "def read(se", "max_tokens": 13, "temperature": 1.0, "seed": 0}
        assert main(["query", "--netuid", "1", "def read(se", "--max-tokens", "5", "--api", url]) == 1
        assert "generation stopped: no miner continued" in capsys.readouterr().err
        assert main(["query", "--netuid", "1", "--uid", "2", "x", "--api", url]) == 0
        assert FakeAPI.posted[-1] == {"netuid": 1, "input": "x", "uid": 2}
        capsys.readouterr()

        assert main(["metagraph", "--netuid", "1", "--api", url]) == 0
        table = capsys.readouterr().out.splitlines()
        assert table[0].split() == [
            "UID",
            "HOTKEY",
            "STAKE",
            "VPERMIT",
            "CONSENSUS",
            "INCENTIVE",
            "DIVIDENDS",
            "EMISSION",
            "MODEL",
        ]
        assert table[1].split() == [
            "0",
            "p2p1abc",
            "1000",
            "yes",
            "0.5000",
            "0.2500",
            "0.0000",
            "12",
            "text-bigram",
        ]

        assert main(["metagraph", "--netuid", "1", "--api", url, "--json"]) == 0
        [neuron] = json.loads(capsys.readouterr().out)
        assert set(neuron) == {
            "uid", "hotkey", "stake", "validator_permit", "consensus", "incentive", "dividends", "emission", "model"
        }  # fmt: skip

        assert main(["query", "--netuid", "9", "x", "--api", url]) == 1
        assert capsys.readouterr().err.strip().endswith("(503): no miner serves subnet 9")
        assert main(["metagraph", "--netuid", "7", "--api", url]) == 1
        assert "unknown subnet" in capsys.readouterr().err
        assert main(["metagraph", "--netuid", "70000", "--api", url]) == 1
        assert "--netuid" in capsys.readouterr().err

    assert main(["metagraph", "--netuid", "1", "--api", url, "--timeout", "2"]) == 1  # the server is gone
    err = capsys.readouterr().err
    assert err.startswith("p2pnode: error: cannot reach the node's API") and err.count("\n") == 1


def test_miner_device_is_resolved_before_the_peer_starts(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from p2pnode.cli.market import resolve_miner_device

    assert resolve_miner_device("cpu") == "cpu"
    assert resolve_miner_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: `cuda` is not missing here")
    # `cuda` on a machine without one: one line on stderr, exit 1, before any peer state exists.
    code = main(["join", "--network", "devnet", "--data-dir", str(tmp_path / "data"), "--dev-key", "miner-x",
                 "--miner", "text-uniform", "--device", "cuda", "--api-port", "0"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "CUDA is not available" in err
    assert "Traceback" not in err and not (tmp_path / "data").exists()
