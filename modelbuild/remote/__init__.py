"""A shared cache on any fsspec filesystem (s3://, gs://, file://): one machine builds, the
others fetch. The local store stays the truth of a build; the remote only ever fills it, and
everything fetched is re-hashed before it is trusted."""
