"""The little of the OCI distribution API envcap needs: is the registry there, and which
manifest digest does a tag name.

Plain HTTP for registries on loopback (as Docker itself treats them), HTTPS elsewhere
unless the user says otherwise. No credentials are handled here: a registry that asks
for them answers 401, which is reported as such.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass

from ..core.errors import UsageError
from ..pins.errors import BuildError

MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
_REPOSITORY = re.compile(r"^(?P<host>[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
                         r"(?P<path>[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Repository:
    host: str
    path: str

    @classmethod
    def parse(cls, text: str) -> Repository:
        match = _REPOSITORY.match(text or "")
        if not match:
            raise UsageError(f"--registry {text!r} must be REGISTRY-HOST[:PORT]/REPOSITORY, "
                             "for example 127.0.0.1:5000/envs")
        return cls(match.group("host"), match.group("path"))

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"

    @property
    def loopback(self) -> bool:
        name = self.host.rsplit(":", 1)[0].strip("[]") if not self.host.endswith("]") else self.host.strip("[]")
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


class Registry:
    def __init__(self, repository: Repository, *, insecure: bool | None = None, timeout: float = 10.0) -> None:
        self.repository = repository
        plain = repository.loopback if insecure is None else insecure
        self.base = f"{'http' if plain else 'https'}://{repository.host}/v2"
        self.timeout = timeout
        self._context = None if plain else ssl.create_default_context()

    def _request(self, method: str, url: str, accept: str | None = None) -> tuple[int, dict[str, str]]:
        headers = {"User-Agent": "envcap"}
        if accept:
            headers["Accept"] = accept
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as exc:
            return exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BuildError(f"the registry {self.repository.host} is unreachable ({reason}): start it "
                             "(scripts/testbed.sh up on the test bed) or check --registry") from exc

    def ping(self) -> None:
        status, _ = self._request("GET", self.base + "/")
        if status == 401:
            raise BuildError(f"the registry {self.repository.host} asks for credentials, which envcap does "
                             "not handle yet; log in with docker login and push a mirror, or use another registry")
        if status != 200:
            raise BuildError(f"{self.base}/ answered HTTP {status}: {self.repository.host} is not an OCI registry")

    def manifest_digest(self, reference: str) -> str | None:
        """The digest of the manifest a tag or digest names; None when it is absent."""
        status, headers = self._request("HEAD", f"{self.base}/{self.repository.path}/manifests/{reference}",
                                        accept=MANIFEST_TYPES)
        if status == 404:
            return None
        if status != 200:
            raise BuildError(f"the registry answered HTTP {status} for {self.repository}:{reference}")
        digest = headers.get("docker-content-digest", "")
        if not _DIGEST.match(digest):
            if _DIGEST.match(reference):
                return reference
            raise BuildError(f"the registry did not say which digest {self.repository}:{reference} has")
        return digest
