from p2pnode.store.sqlite_store import Store, StoreError

__all__ = ["Store", "StoreError"]
