"""Multi-device checks of SAM and SSAM, run in one subprocess by ``test_sharding.py``.

``runner`` holds the case registry and the entry point, ``common`` the shared
set-up, and ``data_parallel``, ``shard_map`` and ``fsdp`` the cases.
"""
