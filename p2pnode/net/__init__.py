"""The libp2p network: the only package that imports libp2p (see docs/networking.md).

- `host.LibP2PNetwork`: `protocols.network.NetworkAPI` over a py-libp2p host (Noise, Yamux,
  GossipSub, Kademlia, request/response).
- `identity`: hotkey seed -> key pair and PeerID.
- `scoring`: peer scores (pure); `reqresp`: framing and limits;
  `libp2p_workarounds`: the py-libp2p 0.8.1 hardening.

Nothing is re-exported here, so importing the pure modules (`scoring`) does not import libp2p.
"""
