"""certbot's configuration directory as a fleet to move in: read-only.

certbot keeps one *lineage* per certificate: ``renewal/NAME.conf`` (configobj text: the paths of
the current files at the top, ``[renewalparams]`` with the authenticator, installer, ACME server,
key type and hooks, ``[[webroot_map]]`` under it), ``live/NAME/{cert,chain,fullchain,privkey}.pem``
(symbolic links to the current version) and ``archive/NAME/{cert,chain,fullchain,privkey}N.pem``
(every version). `read_lineages(config_dir)` reads every renewal conf and resolves the current
files; `nginx_sites(nginx_dir)` reads the ``server`` blocks of an nginx configuration that name
certificate files, so a lineage's files can be matched to the sites serving them. Nothing here
writes, and nothing here reads a key's contents (the use case reads the files it imports).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

FILE_KEYS = ("cert", "privkey", "chain", "fullchain")
HOOK_KEYS = ("pre_hook", "post_hook", "deploy_hook", "renew_hook")
LETS_ENCRYPT = {
    "https://acme-v02.api.letsencrypt.org/directory": "Let's Encrypt",
    "https://acme-staging-v02.api.letsencrypt.org/directory": "Let's Encrypt (staging)",
}


@dataclass(frozen=True)
class CertbotLineage:
    """One lineage: its name, its current files and what its renewal conf says."""

    name: str
    conf: str
    """The renewal conf's path."""
    files: dict[str, str]
    """cert, privkey, chain, fullchain → the current file's path (as the conf or live/ names it)."""
    params: dict[str, str]
    """``[renewalparams]``: authenticator, installer, server, key_type, hooks, ..."""
    webroot_map: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    """What could not be read (a missing file, an unreadable conf): the lineage is refused."""

    @property
    def authenticator(self) -> str | None:
        return self.params.get("authenticator")

    @property
    def installer(self) -> str | None:
        return self.params.get("installer")

    @property
    def server(self) -> str | None:
        return self.params.get("server")

    @property
    def hooks(self) -> dict[str, str]:
        """The lineage's hooks (pre, post, deploy/renew): certpilot notes them, never runs them."""
        return {k: v for k, v in self.params.items() if k in HOOK_KEYS and v}


def parse_renewal_conf(text: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(top-level keys, ``[renewalparams]``, ``[[webroot_map]]``) of a renewal conf (configobj
    syntax as certbot writes it: ``key = value``, ``# comments``, sections in brackets)."""
    top: dict[str, str] = {}
    params: dict[str, str] = {}
    webroot: dict[str, str] = {}
    current = top
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[["):
            current = webroot if line.strip("[] ") == "webroot_map" else {}
            continue
        if line.startswith("["):
            current = params if line.strip("[] ") == "renewalparams" else {}
            continue
        key, sep, value = line.partition("=")
        if sep:
            current[key.strip()] = value.strip().strip('"').rstrip(",").strip()
    return top, params, webroot


def read_lineages(config_dir: str | Path) -> list[CertbotLineage]:
    """Every lineage of a certbot configuration directory, by name.

    Raises:
        FileNotFoundError: `config_dir` has no ``renewal/`` directory (not certbot's).
    """
    root = Path(config_dir)
    renewal = root / "renewal"
    if not renewal.is_dir():
        raise FileNotFoundError(f"{root} has no renewal/ directory: not a certbot configuration directory "
                                "(certbot's default is /etc/letsencrypt)")
    lineages = []
    for conf in sorted(renewal.glob("*.conf")):
        name = conf.name.removesuffix(".conf")
        problems: list[str] = []
        try:
            top, params, webroot = parse_renewal_conf(conf.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            top, params, webroot = {}, {}, {}
            problems.append(f"{conf} cannot be read ({getattr(exc, 'strerror', None) or exc})")
        files = {}
        for key in FILE_KEYS:
            path = top.get(key) or str(root / "live" / name / f"{key}.pem")
            files[key] = _rebased(path, root)
            if not Path(files[key]).is_file():
                problems.append(f"{key} file {files[key]} of lineage {name} does not exist")
        lineages.append(CertbotLineage(name=name, conf=str(conf), files=files, params=params, webroot_map=webroot,
                                       problems=tuple(problems)))
    return lineages


def _rebased(path: str, root: Path) -> str:
    """A path of the conf, or the same path under `root` when the directory was copied from its
    original place (a conf written for /etc/letsencrypt read from a backup)."""
    if Path(path).is_file():
        return path
    marker = next((m for m in ("/live/", "/archive/") if m in path), None)
    if marker is None:
        return path
    return str(root / marker.strip("/") / path.split(marker, 1)[1])


def issuer_name(server: str | None) -> str:
    """What the ACME server of a lineage is called: Let's Encrypt by its URLs, else the host."""
    if not server:
        return "Let's Encrypt"  # certbot's default server
    if server in LETS_ENCRYPT:
        return LETS_ENCRYPT[server]
    m = re.match(r"^[a-z]+://([^/]+)", server)
    return m[1] if m else server


@dataclass(frozen=True)
class NginxSite:
    """An nginx ``server`` block serving certificate files over TLS."""

    conf: str
    server_names: tuple[str, ...]
    port: int
    certificate: str
    """``ssl_certificate`` as written (a certbot live/ path, typically fullchain.pem)."""
    key: str
    """``ssl_certificate_key`` as written."""


_SERVER = re.compile(r"\bserver\s*\{")


def nginx_sites(nginx_dir: str | Path) -> list[NginxSite]:
    """The TLS sites of every file under an nginx configuration directory (unreadable files are
    skipped; a site is a ``server`` block with ``ssl_certificate`` and ``ssl_certificate_key``)."""
    sites: list[NginxSite] = []
    for here, dirs, names in os.walk(nginx_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(here) / name
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            sites += _sites_of(str(path), re.sub(r"#[^\n]*", "", text))
    return sites


def _sites_of(conf: str, text: str) -> list[NginxSite]:
    found = []
    for m in _SERVER.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        block = text[m.end():i - 1]
        top = re.sub(r"\{[^{}]*\}", "", block)  # the server's own directives, not its locations'
        directives = dict(re.findall(r"(?m)^\s*(ssl_certificate|ssl_certificate_key)\s+([^;]+);", top))
        if "ssl_certificate" not in directives or "ssl_certificate_key" not in directives:
            continue
        names = tuple(n for d in re.findall(r"(?m)^\s*server_name\s+([^;]+);", top) for n in d.split())
        ports = [int(p) for p in re.findall(r"(?m)^\s*listen\s+(?:[^;\s]*:)?(\d+)[^;]*\bssl\b", top)]
        found.append(NginxSite(conf=conf, server_names=names, port=ports[0] if ports else 443,
                               certificate=directives["ssl_certificate"].strip().strip('"'),
                               key=directives["ssl_certificate_key"].strip().strip('"')))
    return found


def serves(site: NginxSite, lineage: CertbotLineage) -> bool:
    """Whether an nginx site serves a lineage's files (the same file, followed through links)."""
    mine = {os.path.realpath(p) for p in lineage.files.values()} | set(lineage.files.values())
    return site.certificate in mine or os.path.realpath(site.certificate) in mine
