"""The content-addressed store, the state database and file hashing."""
