"""Moving bytes: prefetching reads, the write-back buffer and its journal, uploads, copies."""
