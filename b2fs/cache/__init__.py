"""Local caches: the on-disk block cache of immutable B2 versions."""
