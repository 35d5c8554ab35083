"""Heavy stages on a Dask cluster (``build --scheduler tcp://HOST:8786 | local:N``).

The coordinator still plans, decides and records; only the running of a stage moves. Workers
on this machine share its cache folder; workers elsewhere exchange inputs and outputs through
the remote cache, and the coordinator re-hashes every output it takes back."""
