"""The ``envcap`` command: click code only, one module per command group, every command
a call into the library. See :mod:`.main` for the group and its exit codes."""

from .main import main

__all__ = ["main"]
