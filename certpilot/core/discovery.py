"""Pure parts of discovery: which endpoints to probe, from `host:port/sni` specs or from the TLS
`server` blocks of an nginx configuration (its `listen ... ssl` ports and `server_name`s).

No I/O: the configuration's text is an argument (the operation reads the file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certpilot.core.errors import BadInputError
from certpilot.core.verification import Endpoint


def parse_endpoint(spec: str, *, default_port: int = 443) -> Endpoint:
    """`host`, `host:port`, `host/sni`, `host:port/sni` or `[v6]:port/sni` → Endpoint.

    Raises:
        BadInputError: empty host, or a port that is not 1..65535.
    """
    text = spec.strip()
    where, _, sni = text.partition("/")
    if where.startswith("["):
        host, _, rest = where[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif where.count(":") == 1:
        host, _, port_text = where.partition(":")
    else:
        host, port_text = where, ""
    if not host:
        raise BadInputError(f"endpoint {spec!r} has no host: write host, host:port or host:port/sni")
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise BadInputError(f"endpoint {spec!r}: the port must be a number from 1 to 65535")
    return Endpoint(host, int(port_text) if port_text else default_port, sni or None)


@dataclass(frozen=True)
class NginxServers:
    """What an nginx configuration serves over TLS: the endpoints to probe and the names left out."""

    endpoints: tuple[Endpoint, ...]
    skipped: tuple[str, ...]
    """server_name values that cannot be asked for by SNI (regexes, `_`, wildcards), with why."""


_COMMENT = re.compile(r"#[^\n]*")
_TOKEN = re.compile(r"\"[^\"]*\"|'[^']*'|[{};]|[^\s{};]+")


def _statements(text: str):
    """Yield (depth path, directive words) for every `;`-terminated directive, and ('{', words)
    for every block opening, from nginx configuration text."""
    words: list[str] = []
    for tok in _TOKEN.findall(_COMMENT.sub("", text)):
        if tok == ";":
            yield ";", words
            words = []
        elif tok == "{":
            yield "{", words
            words = []
        elif tok == "}":
            yield "}", []
            words = []
        else:
            words.append(tok.strip("\"'"))


def nginx_tls_servers(text: str, *, connect: str = "127.0.0.1") -> NginxServers:
    """The TLS `server` blocks of an nginx configuration: one endpoint per (listen port, name).

    Args:
        text: the configuration (one file; `include`d files are not followed — pass them too).
        connect: the host to connect to when a `listen` names only a port (where nginx runs).
    Returns:
        endpoints (in order, without duplicates) and the names that cannot be probed by SNI.
    """
    endpoints: list[Endpoint] = []
    skipped: list[str] = []
    stack: list[dict | None] = []
    for kind, words in _statements(text):
        if kind == "{":
            stack.append({"listen": [], "names": []} if words[:1] == ["server"] else None)
            continue
        if kind == "}":
            block = stack.pop() if stack else None
            if block is not None:
                _emit(block, connect, endpoints, skipped)
            continue
        block = stack[-1] if stack else None
        if block is None or not words:
            continue
        if words[0] == "listen" and len(words) > 1 and ("ssl" in words[2:] or words[1].endswith(":443")
                                                      or words[1] == "443"):
            block["listen"].append(words[1])
        elif words[0] == "server_name":
            block["names"].extend(words[1:])
    seen: set[Endpoint] = set()
    unique = [e for e in endpoints if not (e in seen or seen.add(e))]
    return NginxServers(tuple(unique), tuple(skipped))


def _emit(block: dict, connect: str, endpoints: list[Endpoint], skipped: list[str]) -> None:
    for listen in block["listen"]:
        host, port = connect, listen
        if listen.startswith("["):
            host, _, port = listen[1:].partition("]:")
        elif ":" in listen:
            host, _, port = listen.rpartition(":")
        if not port.isdigit():
            continue
        if host in ("*", "0.0.0.0", "::"):
            host = connect
        for name in block["names"]:
            if name.startswith("~") or name == "_" or "*" in name or name == "":
                note = f"{name} (not a name a client sends by SNI)"
                if name and note not in skipped:
                    skipped.append(note)
                continue
            endpoints.append(Endpoint(host, int(port), name.rstrip(".")))


@dataclass(frozen=True)
class Discovered:
    """One probed endpoint: what it serves and what discovery did with it.

    `added`: stored now as a discovered certificate (no key held); `known`: already in the
    inventory (or found earlier in this run); `error`: not probed, or not storable, and why.
    """

    endpoint: str
    certificate_id: str | None = None
    fingerprint: str | None = None
    common_name: str = ""
    not_after: str | None = None
    added: bool = False
    known: bool = False
    error: str = ""


@dataclass(frozen=True)
class DiscoveryReport:
    """What a discovery run found: per endpoint, and the totals."""

    items: tuple[Discovered, ...]
    skipped: tuple[str, ...] = ()

    @property
    def added(self) -> int:
        return sum(i.added for i in self.items)

    @property
    def known(self) -> int:
        return sum(i.known for i in self.items)

    @property
    def failed(self) -> int:
        return sum(bool(i.error) for i in self.items)
