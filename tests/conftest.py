from __future__ import annotations

import os

os.environ.setdefault("P2PNODE_KDF", "fast")
