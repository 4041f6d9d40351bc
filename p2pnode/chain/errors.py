"""The chain layer's exceptions: one root, and one base for named rejections.

`ChainError` is the root of every exception the chain core raises on purpose, so a caller can tell
"the chain refused this" from a bug. `Rejected` carries a stable snake_case `reason` and a free-form
`detail`; other layers subclass it for their own named rejections (a mempool refusal, a gossip
verdict), so one handler can report any of them the same way.
"""

from __future__ import annotations


class ChainError(Exception):
    """Root of the chain core's exceptions."""


class Rejected(ChainError):
    """Input refused for a named reason; `reason` is stable snake_case, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TxInvalid(Rejected):
    """A transaction cannot apply; the state is unchanged."""


class BlockInvalid(Rejected):
    """A block cannot apply; nothing of it was kept."""
