"""A lone validator peer process on loopback (tests of the API, events and dashboard), and raw HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import trio

from p2pnode.cli.testnet import make_genesis

START_DEADLINE_S = 90.0

T = TypeVar("T")


@dataclass
class LivePeer:
    process: subprocess.Popen[bytes]
    api: str
    data_dir: Path
    log: Path

    @property
    def port(self) -> int:
        return urlsplit(self.api).port or 80

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def spawn_peer(tmp: Path, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
               ) -> tuple[subprocess.Popen[str], Path, Path]:
    """`p2pnode join` on `tmp/genesis.json` with `args`: its data in `tmp/name`, its API on a free
    port, listening on loopback, logging at info to `tmp/name.log`, this environment plus `env`.
    Returns (process, ready file, log file); the caller waits for the ready file."""
    ready, log = tmp / f"{name}-ready.json", tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "p2pnode", "join", "--network", str(tmp / "genesis.json"), "--data-dir",
         str(tmp / name), "--api-port", "0", "--ready-file", str(ready), "--listen", "/ip4/127.0.0.1/tcp/0",
         "--no-progress", "--log-level", "info", *args],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True,  # noqa: SIM115
        env=dict(os.environ, **(env or {})))
    return process, ready, log


def start_live_peer(tmp: Path, *, market: bool = True, genesis: dict[str, Any] | None = None) -> LivePeer:
    """validator-0 as a peer process, on a one-validator network or on `genesis` when given."""
    if genesis is None:
        genesis = make_genesis(1, market=market, slot_ms=500)
    (tmp / "genesis.json").write_text(json.dumps(genesis))
    ready, log, data = tmp / "ready.json", tmp / "peer.log", tmp / "data"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "p2pnode", "join", "--network", str(tmp / "genesis.json"), "--data-dir", str(data),
             "--dev-key", "validator-0-hot", "--validator", "--api-port", "0", "--ready-file", str(ready),
             "--no-progress", "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + START_DEADLINE_S
    # Another process writes the ready file: there is no event to wait on, so poll it with a deadline.
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the peer did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return LivePeer(process, json.loads(ready.read_text())["api"], data, log)


def module_peer_fixture(directory: str, *, market: bool = True) -> Any:
    """A module-scoped pytest fixture running one lone peer for all the tests of a module
    (`peer = module_peer_fixture("events")` at the top of the module)."""

    @pytest.fixture(scope="module")
    def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LivePeer]:
        running = start_live_peer(tmp_path_factory.mktemp(directory), market=market)
        yield running
        running.stop()

    return peer


def stop_processes(processes: Iterable[subprocess.Popen[Any]], grace_s: float = 20.0) -> None:
    """Ask every process to stop, then kill those still running after `grace_s` each."""
    processes = list(processes)
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()


def raw_request(peer: LivePeer, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the headers given (`Host` included: a default one is added only if absent)."""
    headers = dict(headers or {})
    connection = http.client.HTTPConnection("127.0.0.1", peer.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        headers.setdefault("Host", f"127.0.0.1:{peer.port}")
        if body is not None:
            headers.setdefault("Content-Length", str(len(body)))
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        reply = connection.getresponse()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, reply.read()
    finally:
        connection.close()


def json_request(peer: LivePeer, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, raw = raw_request(peer, method, path, body, headers)
    return status, json.loads(raw)


async def get_json(peer: LivePeer, path: str) -> Any:
    """GET `path` from trio (the request runs in a worker thread); the reply must be 200."""
    status, body = await trio.to_thread.run_sync(json_request, peer, "GET", path)
    assert status == 200, (path, status, body)
    return body


def wait_until(condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll `condition` (state in other processes: there is no event to wait on) until it is truthy."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
