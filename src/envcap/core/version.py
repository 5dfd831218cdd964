"""envcap's version, which every record it writes carries (``envcap_version``).

It lives in the core, below every folder that writes it; ``envcap.__version__`` is this.
Keep it equal to ``pyproject.toml``'s ``version``.
"""

__version__ = "0.1.0"
