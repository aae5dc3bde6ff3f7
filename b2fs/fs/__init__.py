"""The filesystem core: inodes, listings, handles and POSIX operations, without FUSE."""
