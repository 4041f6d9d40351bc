"""Block signatures checked in a helper process while this one applies the blocks before them.

Range sync imports blocks one after the other, and verifying their signatures (ed25519, ~55 µs
each) is about as much work as the state transition. On a machine with more than one core a
helper process is sent the signatures of the blocks about to be imported (public key, message,
signature, reason: `protocols.validation.block_signature_checks`, which the in-process check runs
too) and answers, per block and in order, the first that fails; the importer, meanwhile, applies
the blocks before. A thread would not do: libsodium drops the GIL while it verifies, but each
verification's Python around it waits for the importer to hand the GIL over (up to the 5 ms
switch interval), so a verifying thread beside a busy one crawls.

The helper is only ever an accelerator: its verdict is used for the very block object whose checks
it was sent, and anything unusual (not started yet, gone, slow, a block it was not sent) means the
importer verifies the block itself. Nothing is read from the helper but a verdict per block.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path

from p2pnode.chain.types import Block
from protocols.crypto import verify
from protocols.validation import SignatureCheck, block_signature_checks

log = logging.getLogger(__name__)

# Blocks sent ahead of the one being imported: enough to keep the helper busy while the importer
# applies one block, few enough that they sit in the socket buffer and sending never waits.
WINDOW = 3
# How long the importer waits for one verdict before it stops using the helper (a stuck or
# starved helper; checking a 4 MiB block takes well under a second).
VERDICT_TIMEOUT_S = 20.0
OK = b"ok"
BAD_PREFIX = b"bad:"  # followed by the index of the first check that failed
# The helper's socket buffers: a few blocks' checks (~33 KiB per 100 transfers) fit without a wait.
SOCKET_BUFFER_BYTES = 1 << 20


def pack_checks(checks: list[SignatureCheck]) -> bytes:
    """A block's checks as sent to the helper: per check, 1-byte key length, key, 1-byte signature
    length, signature, 4-byte message length, message (reasons stay here: the helper answers with
    an index)."""
    parts: list[bytes] = []
    for public_key, message, signature, _ in checks:
        parts += (bytes((len(public_key),)), public_key, bytes((len(signature),)), signature,
                  len(message).to_bytes(4, "big"), message)
    return b"".join(parts)


def unpack_checks(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """The (public key, message, signature) triples of `pack_checks`; ValueError when malformed."""
    out = []
    pos, end = 0, len(data)
    while pos < end:
        key_end = pos + 1 + data[pos]
        sig_end = key_end + 1 + data[key_end]
        msg_end = sig_end + 4 + int.from_bytes(data[sig_end : sig_end + 4], "big")
        if msg_end > end:
            raise ValueError("truncated checks")
        out.append((data[pos + 1 : key_end], data[sig_end + 4 : msg_end], data[key_end + 1 : sig_end]))
        pos = msg_end
    return out


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def serve(conn: Connection) -> None:
    """The helper process: a verdict for every block's checks it is sent, in order, until the pipe
    closes: OK, or BAD_PREFIX and the index of the first check whose signature does not verify."""
    from protocols.crypto import verify

    conn.send_bytes(b"ready")
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            verdict = OK
            for index, (public_key, message, signature) in enumerate(unpack_checks(data)):
                if not verify(public_key, message, signature):
                    verdict = BAD_PREFIX + str(index).encode()
                    break
        except (ValueError, IndexError):  # not packed checks: a bug; the importer verifies itself
            verdict = b"unreadable"
        conn.send_bytes(verdict)


# The directory `p2pnode` is imported from, for the helper's interpreter.
_IMPORT_ROOT = str(Path(__file__).resolve().parents[3])


class SignatureHelper:
    """One helper process checking the signatures of blocks about to be imported (see the module).

    Not thread-safe: the block tree's owner uses it. `expect` queues blocks (in import order);
    `verdict` gives a queued block's result, or None when it has none to give.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._ready = False
        self._broken = False
        self._queued: deque[Block] = deque()  # not yet sent
        self._in_flight: deque[Block] = deque()  # sent, verdicts not yet read (in order)
        self.verdicts_used = 0

    # ---------------------------------------------------------------- lifecycle

    def _start(self) -> None:
        # A plain interpreter running this module: nothing of this process (its main module, trio,
        # threads) is copied or re-imported there, and it imports only the codec and the checks.
        ours, theirs = socket.socketpair()
        for end, option in ((ours, socket.SO_SNDBUF), (theirs, socket.SO_RCVBUF)):
            end.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_IMPORT_ROOT, env.get("PYTHONPATH")) if p)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
            )
        except OSError as exc:
            log.info("no signature helper process: %s", exc)
            ours.close()
            self._broken = True
            return
        finally:
            theirs.close()
        self._process, self._conn = process, Connection(ours.detach())

    def _is_ready(self) -> bool:
        """Whether the helper has started (never waits: until then the importer verifies itself)."""
        if self._ready:
            return True
        if self._broken:
            return False
        if self._conn is None:
            self._start()
            if self._conn is None:
                return False
        try:
            if self._conn.poll(0):
                self._ready = self._conn.recv_bytes() == b"ready"
                if not self._ready:
                    self._give_up("did not start")
        except (EOFError, OSError):
            self._give_up("exited while starting")
        return self._ready

    def wait_until_ready(self, timeout_s: float) -> bool:
        """Start the helper and wait until it can take blocks (tests and benchmarks; a node never
        waits: it verifies blocks itself until the helper is up)."""
        if not self._is_ready() and self._conn is not None:
            try:
                if self._conn.poll(timeout_s):
                    return self._is_ready()
            except (EOFError, OSError):
                self._give_up("exited while starting")
        return self._ready

    def _give_up(self, why: str) -> None:
        log.info("signature helper %s: blocks are verified in this process", why)
        self._broken = True
        self._ready = False
        self._queued.clear()
        self._in_flight.clear()
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the helper sees the end of its input and exits
            self._conn = None
        if self._process is not None:
            try:
                self._process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=2)
            self._process = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._conn is not None and not self._broken

    @property
    def expecting(self) -> bool:
        """Whether any block is queued or in flight (else `verdict` has nothing to say)."""
        return bool(self._queued or self._in_flight)

    # ---------------------------------------------------------------- use

    def expect(self, blocks: list[Block]) -> None:
        """The blocks about to be imported, in order; replaces what was queued before."""
        if self._broken:
            return
        self._queued = deque(blocks)
        if self._is_ready():
            self._fill()

    def _fill(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while self._queued and len(self._in_flight) < WINDOW:
                block = self._queued.popleft()
                conn.send_bytes(pack_checks(block_signature_checks(block)))
                self._in_flight.append(block)
        except (EOFError, OSError):
            self._give_up("is gone")

    def verdict(self, block: Block) -> str | None:
        """For `block` (the object queued, not an equal one): "" when every signature verified,
        the reason when one did not, None when the helper has no verdict (the caller verifies)."""
        if not self._is_ready():
            return None
        position = next((i for i, sent in enumerate(self._in_flight) if sent is block), None)
        if position is None:
            if not any(queued is block for queued in self._queued):
                return None  # a block from elsewhere (gossip) between two of the range
            # Whatever is in flight or queued before it was skipped (known already): drop it.
            while self._queued[0] is not block:
                self._queued.popleft()
            if self._read_replies(len(self._in_flight)) is None:
                return None
            self._fill()
            position = 0
        reply = self._read_replies(position + 1)
        if reply is None:
            return None
        self._fill()
        if reply == OK:
            self.verdicts_used += 1
            return ""
        if reply.startswith(BAD_PREFIX):
            # Which check failed: its reason is rebuilt here, and that one signature verified again
            # so that nothing but a real failure refuses a block (a bad block is rare).
            checks = block_signature_checks(block)
            index = int(reply[len(BAD_PREFIX):]) if reply[len(BAD_PREFIX):].isdigit() else -1
            if 0 <= index < len(checks):
                public_key, message, signature, reason = checks[index]
                if not verify(public_key, message, signature):
                    self.verdicts_used += 1
                    return reason
        return None

    def _read_replies(self, count: int) -> bytes | None:
        """Read the verdicts of the next `count` blocks in flight; the last one (b"" for none), or
        None when the helper failed (it is then given up)."""
        conn = self._conn
        if conn is None:
            return None
        reply = b""
        try:
            for _ in range(count):
                if not conn.poll(VERDICT_TIMEOUT_S):
                    self._give_up("is too slow")
                    return None
                reply = conn.recv_bytes()
                self._in_flight.popleft()
        except (EOFError, OSError):
            self._give_up("is gone")
            return None
        return reply


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1])))
