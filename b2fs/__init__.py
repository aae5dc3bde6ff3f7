"""b2fs: Backblaze B2 buckets as a Linux directory, over FUSE.

The package is layered (see docs/ARCHITECTURE.md): ``b2`` is the B2 Native API client,
``cache`` and ``transfer`` hold data on local disk and move it, ``fs`` is the FUSE-agnostic
filesystem core, ``fuse_ops`` adapts it to pyfuse3 and ``mount``/``cli`` compose everything.
``emulator`` is a separate local server of the B2 Native API that shares no code with ``b2``.
"""

__version__ = "0.1.0"
