"""What a pin may be, below both the ecosystems and the builder.

``validate`` is the one grammar of manifest values that reach a lockfile, a Dockerfile, a
command line or a terminal; ``errors`` the lock and build errors (``ManifestRefused``,
``LockError``); ``hashes`` the package indexes' file hashes that pin a release. The
ecosystems' build parts and the builder both stand on them, so they live in a folder of
their own under both (docs/architecture.md).
"""
