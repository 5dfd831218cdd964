"""The core every other folder stands on: the manifest record and its ids, the error
family, configuration, redaction, and the fences around files, SQLite and programs.

Nothing in here imports anything of envcap outside ``core`` (docs/architecture.md).
"""
