"""Access to intelligence: choosing miners, asking them, and the `query` / `metagraph` commands."""

from __future__ import annotations

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
from p2pnode.cli import main
from p2pnode.services.market.chain_view import NeuronInfo
from p2pnode.services.market.client import InferenceClient
from p2pnode.services.market.miner import MinerServer
from p2pnode.services.market.query import QueryError, handle_query, pick_miners, request_from_input
from p2pnode.testing.memnet import MemoryHub

pytestmark = pytest.mark.timeout(60)

CLIENT = key("query-client")


def test_pick_miners_by_incentive() -> None:
    rows = [
        NeuronInfo(0, CLIENT.public_key, "self", incentive=60_000),
        NeuronInfo(1, key("a").public_key, "pa", incentive=6_000),
        NeuronInfo(2, key("b").public_key, "pb", incentive=30_000),
        NeuronInfo(3, key("c").public_key, "pc", incentive=30_000),
        NeuronInfo(4, key("d").public_key, "", incentive=65_535),  # not serving
    ]
    assert [c.uid for c in pick_miners(rows, 2, exclude=CLIENT.public_key)] == [2, 3]
    assert [c.uid for c in pick_miners(rows, 10, exclude=CLIENT.public_key)] == [2, 3, 1]


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

    def add(self, uid: int, incentive: int, name: str, peer_id: str) -> Any:
        self.rows.append(NeuronInfo(uid, key(name).public_key, peer_id, incentive=incentive))

    def serving(self, uid: int, incentive: int, name: str) -> tuple[Any, Any]:
        """A miner key and its network, listed in the metagraph."""
        miner_key = key(name)
        net = join(self.hub, miner_key)
        self.add(uid, incentive, name, net.peer_id)
        return miner_key, net

    async def ask(self, text: str, task: Any = None, top_k: int = 3) -> dict[str, Any]:
        return await handle_query(
            InferenceClient(self.net, CLIENT, CHAIN, wall_clock()),
            self.rows,
            NETUID,
            task or ForecastTask(),
            text,
            top_k=top_k,
            timeout_s=2.0,
        )


async def test_query_returns_a_top_miners_answer_and_skips_a_hung_one() -> None:
    subnet = Subnet()
    async with trio.open_nursery() as nursery:
        for uid, incentive in ((1, 13_000), (2, 45_000), (3, 3_000)):
            miner_key, net = subnet.serving(uid, incentive, f"real-miner-{uid}")
            server = MinerServer(
                miner_key, CHAIN, NETUID, FakeForecastModel(), ForecastTask(), lambda _: 1, wall_clock()
            )
            await nursery.start(server.run, net)
        hung = FakeMiner(subnet.hub, "hung", "hang")
        subnet.rows.append(NeuronInfo(4, hung.key.public_key, hung.net.peer_id, incentive=59_000))

        result = await subnet.ask("1,2,3,4,5,6,7,8", top_k=3)
        assert result["uid"] == 2  # asked 4 (hung), 2 and 1; of those that answered, 2 ranks highest
        assert result["response"] == {"forecast": [8.0] * 12}
        assert sorted(result["asked"]) == [1, 2, 4]
        assert result["failures"]["4"].startswith("too slow")
        assert result["latency_ms"] >= 0 and result["hotkey"].startswith("p2p1")
        nursery.cancel_scope.cancel()


async def test_query_with_task_confidence_waits_for_all_and_picks_the_most_confident() -> None:
    class ConfidentForecast(ForecastTask):
        def confidence(self, request: dict[str, Any], response: dict[str, Any]) -> float:
            return -abs(response["forecast"][0] - 100.0)  # whoever says 100 is most confident

    subnet = Subnet()
    async with trio.open_nursery() as nursery:
        for uid, offset in ((1, 0.0), (2, 5.0), (3, -50.0)):
            miner_key, net = subnet.serving(uid, 30_000, f"level-miner-{uid}")
            server = MinerServer(
                miner_key,
                CHAIN,
                NETUID,
                FakeForecastModel(offset=offset),
                ForecastTask(),
                lambda _: 1,
                wall_clock(),
            )
            await nursery.start(server.run, net)
        # Answers: 93, 98 and 43; 98 is closest to 100.
        result = await subnet.ask('{"history": [1,2,3,4,5,6,7,93], "horizon": 1}', task=ConfidentForecast())
        assert (result["uid"], result["response"], result["confidence"]) == (2, {"forecast": [98.0]}, -2.0)
        assert result["failures"] == {}
        nursery.cancel_scope.cancel()


async def test_query_failures_have_statuses(autojump_clock: Any) -> None:
    subnet = Subnet()
    with pytest.raises(QueryError) as info:
        await subnet.ask("1,2,3,4,5,6,7,8")
    assert info.value.status == 503
    for uid, behaviour in ((1, "garbage"), (2, "hang"), (3, "forged")):
        miner = FakeMiner(subnet.hub, f"bad-{uid}", behaviour)
        subnet.rows.append(NeuronInfo(uid, miner.key.public_key, miner.net.peer_id, incentive=1))
    with pytest.raises(QueryError) as info:
        await subnet.ask("1,2,3,4,5,6,7,8")
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
