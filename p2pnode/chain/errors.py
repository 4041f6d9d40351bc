"""Named rejections of the state transition."""

from __future__ import annotations


class TxInvalid(Exception):
    """A transaction cannot apply; `reason` is a stable snake_case name, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BlockInvalid(Exception):
    """A block cannot apply; nothing of it was kept."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
