from p2pnode.store.chain_db import ChainDB, ImportResult
from p2pnode.store.sqlite_store import Store, StoreError

__all__ = ["ChainDB", "ImportResult", "Store", "StoreError"]
