"""What the engines share: progress lines, TLS for loopback registries, and the one
sentence a failed build's log comes down to."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

Progress = Callable[[str], None]


def tls_args(reference: str, insecure_hosts: Iterable[str] = ()) -> list[str]:
    """``--tls-verify=false`` for a registry on loopback (or named insecure), else nothing."""
    host = reference.split("/", 1)[0]
    loop = host.startswith(("127.", "localhost", "[::1]"))
    return ["--tls-verify=false"] if loop or host in set(insecure_hosts) else []


def explain_failure(log: str) -> str:
    """What a failed build's log says went wrong, and what to do, in one sentence."""
    apt = re.search(r"E: Version '([^']+)' for '([^']+)' was not found", log)
    if apt:
        return (f"the apt mirror no longer serves {apt.group(2)}={apt.group(1)}: build against the dated archive "
                "(`envcap lock` writes apt-snapshot.sources; use a base image whose sources point there), "
                "or capture the environment again after upgrading it")
    missing = re.search(r"E: Unable to locate package (\S+)", log)
    if missing:
        return f"the apt mirror has no package {missing.group(1)}: check the base image's sources for this release"
    pip = re.search(r"No matching distribution found for (\S+)", log)
    if pip:
        return (f"the package index does not serve {pip.group(1)} for this interpreter and platform: "
                "name the index it came from with --extra-index-url")
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in log:
        return "a downloaded file did not match its locked hash: the index changed the file; lock again with --refresh"
    if "self-signed certificate" in log or "CERTIFICATE_VERIFY_FAILED" in log:
        return "TLS verification failed inside the build: pass your proxy's CA bundle with --ca-bundle FILE"
    tail = [line for line in log.strip().splitlines() if line.strip()][-12:]
    return "the build failed; the last lines of its log:\n  " + "\n  ".join(tail)



def short(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__



# A line that one of envcap's step scripts (images/steps) prints for the user: the
# engines pass it on as progress (the dated archive added, the interpreter installed).
STEP_NOTE = "envcap: "


def step_line(text: str) -> str:
    line = text.strip().splitlines()[0]
    if " : RUN [" in line:
        head, _, rest = line.partition(" : RUN ")
        parts = re.findall(r'"([^"]*)"', rest)
        script = next((p.rsplit("/", 1)[1] for p in parts if p.endswith(".sh")), "RUN")
        return f"{head} : RUN {script}"
    return line if len(line) <= 120 else line[:117] + "..."

