"""The routes of the node's local API, built on a small typed view of the peer (`ApiBackend`).

The peer hands in what the API may read and call; the routes never reach into the peer itself, so
adding a route means adding a handler here (and a field to `ApiBackend` if it needs something new).
Every integer taken from a path is checked against the range of what it names (u16 for subnet and
uid, u64 for heights and ids) and every failure is a named 4xx.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from p2pnode.chain import governance
from p2pnode.chain.address import AddressError, decode_address
from p2pnode.net.host import LibP2PNetwork
from p2pnode.services.api import charts, dashboard, receipts, views
from p2pnode.services.api.events import EVENT_TYPES, EventHub, TooManyClients
from p2pnode.services.api.guard import check_request
from p2pnode.services.api.history import ChainHistory
from p2pnode.services.api.http import MAX_BODY_BYTES, HttpApi, HttpError, Request, Response
from p2pnode.services.chain.block_tree import BlockTree
from p2pnode.services.chain.chain_service import ChainService
from p2pnode.services.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from p2pnode.services.metrics import NodeMetrics
from p2pnode.store import Store
from p2pnode.store.epoch_records import EpochRecordStore
from protocols import codec

U16_MAX = (1 << 16) - 1
U64_MAX = (1 << 64) - 1
# Heights above SQLite's largest INTEGER cannot be stored, so no block has one.
MAX_STORED_HEIGHT = (1 << 63) - 1
# ASCII digits only: str.isdigit() and int() also accept other scripts' digits and superscripts.
_DECIMAL = re.compile(r"[0-9]{1,20}")
_BLOCK_HASH = re.compile(r"[0-9a-fA-F]{64}")
MAX_QUERY_INPUT_CHARS = 64 * 1024
MAX_GENERATE_TOKENS = 4096
# POST /txs: a quarter of the default mempool per request; 1,024 transfers are far below the body bound.
MAX_BATCH_TXS = 1024
MAX_BATCH_BYTES = MAX_BODY_BYTES
# Each miner has 10 s (+1 s grace) and the router hedges and fails over to up to four of them
# (services/market/routing.py); the CLI waits 30 s, so the API answers just before that.
QUERY_DEADLINE_S = 28.0


@dataclass
class ApiBackend:
    """What the local API reads and calls, handed in by the peer (the composition root)."""

    chain: BlockTree
    store: Store
    service: ChainService
    network: LibP2PNetwork
    hotkey_address: str
    roles: dict[str, Any]
    started_at: float
    pid: int
    halted: Callable[[], str | None]
    # Answers POST /query: (netuid, input text) -> the answer; raises HttpError when it cannot.
    answer_query: Callable[[int, str, int | None], Awaitable[dict[str, Any]]]
    # (height, block hash hex, local ms) per head change, newest last; empty unless recording.
    arrivals: Callable[[], list[tuple[int, str, int]]]
    # The inputs and outputs of recent epochs (GET /receipts, /explain).
    epoch_records: EpochRecordStore
    # The peer's Prometheus registry (GET /metrics).
    metrics: NodeMetrics
    # kind -> {"reason", "height"}: the latest refusal of each kind of the hotkey's own transactions.
    own_tx_refusals: Callable[[], dict[str, Any]]
    data_dir: str
    # Live events for GET /events.
    events: EventHub
    # Recent finality lag and per-uid epoch results for the charts.
    history: ChainHistory
    # Starts POST /generate (checked at once, raises HttpError), then ("chunk" | "done" | "error", data).
    start_generation: Callable[[GenerateRequest], AsyncIterator[tuple[str, dict[str, Any]]]] | None = None


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    netuid: int
    prompt: str
    max_tokens: int
    temperature: float = 1.0
    seed: int = 0
    uid: int | None = None


def path_int(req: Request, index: int, name: str, maximum: int) -> int:
    """The integer at path segment `index`, in 0..maximum, else a named 400."""
    text = req.parts[index] if index < len(req.parts) else ""
    if not _DECIMAL.fullmatch(text) or int(text) > maximum:
        raise HttpError(400, f"bad_{name}", f"expected a {name} between 0 and {maximum} in the path")
    return int(text)


def query_int(req: Request, name: str, maximum: int) -> int | None:
    """The integer query parameter `name` in 0..maximum, None when absent, else a named 400."""
    if name not in req.query:
        return None
    text = req.query[name]
    if not _DECIMAL.fullmatch(text) or int(text) > maximum:
        raise HttpError(400, f"bad_{name}", f"expected a {name} between 0 and {maximum}")
    return int(text)


def path_address(req: Request, index: int) -> bytes:
    if index >= len(req.parts):
        raise HttpError(400, "missing_address", "expected an address in the path")
    try:
        return decode_address(req.parts[index])
    except AddressError as exc:
        raise HttpError(400, "bad_address", str(exc)) from None


def status_view(backend: ApiBackend, api_port: int | None) -> dict[str, Any]:
    status = backend.service.status()
    state = backend.chain.head_state()
    finalized_root = None
    if status["finalized_hash"]:
        header = backend.store.header(bytes.fromhex(status["finalized_hash"]))
        finalized_root = None if header is None else header.state_root.hex()
    status.update(
        api=f"http://127.0.0.1:{api_port}",
        pid=backend.pid,
        hotkey=backend.hotkey_address,
        listen_addrs=backend.network.listen_addrs(),
        network=backend.network.reachability_view(),
        height=status["head_height"],
        finalized_state_root=finalized_root,
        min_fee=state.param("min_fee"),
        protocol_version=state.param("protocol_version"),
        supported_versions=views.supported_versions(),
        pending_upgrade=governance.pending_upgrade(state),
        halted=backend.halted(),
        roles=backend.roles,
        uptime_s=round(time.time() - backend.started_at, 1),
        own_tx_refusals=backend.own_tx_refusals(),
        data_dir=backend.data_dir,
        event_streams=backend.events.clients,
    )
    return status


def parse_query(body: bytes) -> tuple[int, str, int | None]:
    """`{"netuid": N, "input": "...", "uid": U (optional)}` from a POST /query body, or a named 400."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise HttpError(400, "bad_query", 'expected {"netuid": N, "input": "..."}') from None
    if not isinstance(doc, dict) or "netuid" not in doc or "input" not in doc:
        raise HttpError(400, "bad_query", 'expected {"netuid": N, "input": "..."}')
    netuid, text = doc["netuid"], doc["input"]
    if type(netuid) is not int or not 0 <= netuid <= U16_MAX:
        raise HttpError(400, "bad_netuid", f"netuid must be an integer between 0 and {U16_MAX}")
    if not isinstance(text, str) or len(text) > MAX_QUERY_INPUT_CHARS:
        raise HttpError(400, "bad_input", f"input must be a string of at most {MAX_QUERY_INPUT_CHARS} characters")
    uid = doc.get("uid")
    if uid is not None and (type(uid) is not int or not 0 <= uid <= U16_MAX):
        raise HttpError(400, "bad_uid", f"uid must be an integer between 0 and {U16_MAX}")
    return netuid, text, uid


def parse_generate(body: bytes) -> GenerateRequest:
    """`{"netuid", "input", "max_tokens", "temperature"?, "seed"?, "uid"?}` from POST /generate, or a 400."""
    netuid, prompt, uid = parse_query(body)
    doc = json.loads(body)
    max_tokens, temperature, seed = doc.get("max_tokens"), doc.get("temperature", 1.0), doc.get("seed", 0)
    if type(max_tokens) is not int or not 1 <= max_tokens <= MAX_GENERATE_TOKENS:
        raise HttpError(400, "bad_max_tokens", f"max_tokens must be an integer between 1 and {MAX_GENERATE_TOKENS}")
    if type(temperature) not in (int, float) or not 0 <= temperature <= 2:
        raise HttpError(400, "bad_temperature", "temperature must be a number between 0 and 2")
    if type(seed) is not int or not 0 <= seed < 2**53:
        raise HttpError(400, "bad_seed", "seed must be an integer between 0 and 2^53 - 1")
    return GenerateRequest(netuid, prompt, max_tokens, float(temperature), seed, uid)


def parse_tx_batch(body: bytes) -> list[bytes]:
    """The encoded SignedTxs of a POST /txs body (a canonical-CBOR array of byte strings, each
    what POST /tx takes), at most MAX_BATCH_TXS of them, or a named 400. Each item is judged on its
    own by the mempool, so one bad transaction never refuses the others."""
    try:
        items = codec.decode_plain(body, max_bytes=MAX_BATCH_BYTES)
    except codec.MalformedMessage as exc:
        raise HttpError(400, "bad_batch", f"expected a CBOR array of encoded transactions: {exc}") from None
    if type(items) is not list or any(type(item) is not bytes for item in items):
        raise HttpError(400, "bad_batch", "expected a CBOR array of byte strings, each an encoded SignedTx")
    if not items:
        raise HttpError(400, "empty_batch", "the batch holds no transaction")
    if len(items) > MAX_BATCH_TXS:
        raise HttpError(400, "batch_too_large", f"at most {MAX_BATCH_TXS} transactions per batch, got {len(items)}")
    return items


def install_routes(api: HttpApi, backend: ApiBackend) -> None:
    """Serve the node's views on `api`: GET for reading, POST /tx, /txs and /query for acting."""
    chain, store, service, network = backend.chain, backend.store, backend.service, backend.network
    api.guards.append(check_request)

    async def status(req: Request) -> Response:
        return Response.json(status_view(backend, api.port))

    def peer_json(peer: str) -> dict[str, Any]:
        view = network.peer_score(peer)
        return {"peer_id": peer, "connected": peer in network.connected_peers(),
                "score": round(view.score, 3), "fault_points": round(view.fault_points, 3),
                "banned": network.is_banned(peer), "ban_count": view.ban_count,
                "relayed": network.is_relayed(peer), "connection_addrs": network.connection_addrs(peer)}

    async def peers(req: Request) -> Response:
        if len(req.parts) > 1:
            return Response.json(peer_json(req.parts[1]))
        return Response.json([peer_json(p) for p in network.connected_peers()])

    async def accounts(req: Request) -> Response:
        pub = path_address(req, 1)
        state = chain.head_state()
        view = views.account_view(state, pub)
        view["pending_txs"] = service.mempool.next_nonce(pub, state) - view["nonce"]
        return Response.json(view)

    async def blocks(req: Request) -> Response:
        if len(req.parts) < 2:
            raise HttpError(400, "missing_block", "GET /blocks/HEIGHT or /blocks/HASH")
        ref = req.parts[1]
        if _BLOCK_HASH.fullmatch(ref):
            block = store.block(bytes.fromhex(ref))
        else:
            height = path_int(req, 1, "height", U64_MAX)
            block = store.canonical_block(height) if height <= MAX_STORED_HEIGHT else None
        if block is None:
            raise HttpError(404, "unknown_block", ref)
        return Response.json(views.block_view(block))

    async def subnets(req: Request) -> Response:
        return Response.json(views.subnets_view(chain.head_state()))

    async def metagraph(req: Request) -> Response:
        netuid = path_int(req, 1, "netuid", U16_MAX)
        rows = views.metagraph_view(chain.head_state(), netuid)
        if rows is None:
            raise HttpError(404, "unknown_subnet", f"netuid {netuid}")
        return Response.json(rows)

    async def explain(req: Request) -> Response:
        """How the uid was paid in an epoch (?epoch=E, default the latest; ?verify=1 adds the checks),
        with its current row under "current" and its live weight commits; without a kept record of
        the epoch, "explanation_unavailable" says why."""
        netuid, uid = path_int(req, 1, "netuid", U16_MAX), path_int(req, 2, "uid", U16_MAX)
        state = chain.head_state()
        current = views.explain_view(state, netuid, uid)
        if current is None:
            raise HttpError(404, "unknown_uid", f"netuid {netuid} uid {uid}")
        epoch = query_int(req, "epoch", U64_MAX)
        try:
            view = receipts.explain_view(state, store, backend.epoch_records, netuid, uid, epoch,
                                         verify=req.query.get("verify") in ("1", "true"))
        except receipts.ReceiptLookupError as exc:
            if epoch is not None:
                raise HttpError(404, exc.name, exc.message) from None
            view = {"netuid": netuid, "uid": uid, "explanation_unavailable": exc.message}
        view["current"] = current
        view["weight_commits"] = len(state.weight_commits(netuid, decode_address(current["hotkey"])))
        return Response.json(view)

    async def epoch_receipts(req: Request) -> Response:
        """GET /receipts/N: the receipts in state and the epochs kept here; /receipts/N/E: one record."""
        netuid = path_int(req, 1, "netuid", U16_MAX)
        state = chain.head_state()
        try:
            if len(req.parts) > 2:
                epoch = path_int(req, 2, "epoch", U64_MAX)
                return Response.json(receipts.record_view(state, store, backend.epoch_records, netuid, epoch))
            return Response.json(receipts.receipts_view(state, backend.epoch_records, netuid))
        except receipts.ReceiptLookupError as exc:
            raise HttpError(404, exc.name, exc.message) from None

    async def proposals(req: Request) -> Response:
        state = chain.head_state()
        if len(req.parts) > 1:
            prop = governance.proposal(state, path_int(req, 1, "proposal", U64_MAX))
            if prop is None:
                raise HttpError(404, "unknown_proposal", req.parts[1])
            return Response.json(views.proposal_json(prop))
        return Response.json(views.proposals_view(state))

    async def arrivals(req: Request) -> Response:
        return Response.json(backend.arrivals())

    async def supply(req: Request) -> Response:
        return Response.json(views.supply_view(chain.head_state()))

    async def submit(req: Request) -> Response:
        admission = await service.submit_tx(req.body)
        if not admission.added:
            raise HttpError(422, admission.reason, f"transaction {admission.tx_id.hex()[:16]} refused")
        return Response.json({"tx": admission.tx_id.hex(), "added": True, "reason": admission.reason})

    async def submit_batch(req: Request) -> Response:
        datas = parse_tx_batch(req.body)
        admissions = await service.submit_txs(datas)
        results = [{"tx": a.tx_id.hex(), "added": a.added, "reason": a.reason} for a in admissions]
        return Response.json({"added": sum(a.added for a in admissions), "results": results})

    async def tx_status(req: Request) -> Response:
        """GET /tx/{id}?since=HEIGHT: pending (and why it would fail now), included, or unknown."""
        if len(req.parts) < 2 or not _BLOCK_HASH.fullmatch(req.parts[1]):
            raise HttpError(400, "bad_tx_id", "expected a 64-hex-digit transaction id in the path")
        since = query_int(req, "since", MAX_STORED_HEIGHT) or 0
        return Response.json(dict(service.tx_status(bytes.fromhex(req.parts[1]), since), tx=req.parts[1].lower()))

    async def query(req: Request) -> Response:
        netuid, text, uid = parse_query(req.body)
        return Response.json(await backend.answer_query(netuid, text, uid))

    async def generate(req: Request) -> AsyncIterator[bytes]:
        if backend.start_generation is None:
            raise HttpError(404, "no_generation", "this node does not generate")
        events = backend.start_generation(parse_generate(req.body))

        async def sse() -> AsyncIterator[bytes]:
            async for kind, data in events:
                yield f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()

        return sse()

    async def events(req: Request) -> AsyncIterator[bytes]:
        kinds = [k for k in req.query.get("types", ",".join(EVENT_TYPES)).split(",") if k]
        unknown = sorted(set(kinds) - set(EVENT_TYPES))
        if unknown or not kinds:
            raise HttpError(400, "bad_event_type", f"types is a comma-separated subset of {', '.join(EVENT_TYPES)}")
        try:
            client = backend.events.subscribe(kinds)
        except TooManyClients as exc:
            raise HttpError(503, "too_many_streams", str(exc)) from None
        return backend.events.stream(client)

    async def chart(req: Request) -> Response:
        name = req.parts[1] if len(req.parts) > 1 else ""
        if name == "finality.svg" and len(req.parts) == 2:
            svg = charts.line_chart("Finality lag", [("lag", backend.history.finality_lag())],
                                    x_label="head height", y_label="blocks")
        elif name in ("incentive", "emission") and len(req.parts) == 3:
            netuid = path_int(req, 2, "netuid", U16_MAX)
            title, unit = ("Incentive", "share") if name == "incentive" else ("Emission", "TAO")
            svg = charts.line_chart(f"{title} per uid, subnet {netuid}", backend.history.per_uid(netuid, name),
                                    x_label="epoch", y_label=unit)
        else:
            raise HttpError(404, "unknown_chart", "charts: finality.svg, incentive/NETUID, emission/NETUID")
        return Response(200, svg.encode(), "image/svg+xml",
                        {"Content-Security-Policy": dashboard.CONTENT_SECURITY_POLICY})

    async def metrics(req: Request) -> Response:
        return Response(200, backend.metrics.render(), METRICS_CONTENT_TYPE)

    get_routes = [
        ("status", status, "/status", "chain, head, finality, peers, mempool, protocol version, roles"),
        ("peers", peers, "/peers/{peer_id}", "connected peers (or one) with score, faults and ban state"),
        ("accounts", accounts, "/accounts/{address}", "balance, nonce, stakes, locked stake, pending transactions"),
        ("blocks", blocks, "/blocks/{height_or_hash}", "a block's header and transaction summaries"),
        ("subnets", subnets, "/subnets", "every subnet with its hyperparameters and pending emission"),
        ("metagraph", metagraph, "/metagraph/{netuid}", "per uid: hotkey, stake, permit, consensus, incentive, ..."),
        ("epochs", metagraph, "/epochs/{netuid}", "the same as /metagraph/{netuid}"),
        ("explain", explain, "/explain/{netuid}/{uid}", "one uid's epoch inputs and outputs"),
        ("receipts", epoch_receipts, "/receipts/{netuid}/{epoch}", "epoch receipts in state (or one epoch's record)"),
        ("proposals", proposals, "/proposals/{id}", "governance proposals (or one) and their tallies"),
        ("supply", supply, "/supply", "genesis, emitted, burned, locked, pending and staked amounts"),
        ("arrivals", arrivals, "/arrivals", "when each block became the head (benchmarks; opt-in)"),
        ("tx", tx_status, "/tx/{id}", "a submitted transaction: pending (and why it would fail), included, unknown"),
    ]
    for name, handler, path, summary in get_routes:
        api.route("GET", name, handler, path=path, summary=summary)
    api.route("GET", "metrics", metrics, summary="Prometheus text format", content_type="text/plain")
    api.stream("POST", "generate", generate,
               summary="generated text, streamed as server-sent events: chunk (text, uid, receipt) ... done")
    api.stream("GET", "events", events, summary="server-sent events: " + ", ".join(EVENT_TYPES)
               + " (?types=a,b to choose)")
    api.route("GET", "charts", chart, path="/charts/{chart}", content_type="image/svg+xml",
              summary="SVG charts: finality.svg, incentive/NETUID, emission/NETUID (recent epochs)")
    dashboard.install(api)
    api.route("POST", "tx", submit, summary="submit a canonical-CBOR SignedTx; 422 with the reason if refused")
    api.route("POST", "txs", submit_batch,
              summary=f"submit a CBOR array of at most {MAX_BATCH_TXS} encoded SignedTxs (byte strings); "
              '{"added": N, "results": [{"tx", "added", "reason"}, ...]} in order')
    api.route("POST", "query", query, summary='{"netuid": N, "input": "..."}: the best answer of the top miners',
              deadline_s=QUERY_DEADLINE_S)
