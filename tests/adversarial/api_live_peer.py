"""Kept for tests written against the old location; the helper is `p2pnode.testing.live_peer`."""

from p2pnode.testing.live_peer import LivePeer, json_request, raw_request, start_live_peer, wait_until

__all__ = ["LivePeer", "json_request", "raw_request", "start_live_peer", "wait_until"]
