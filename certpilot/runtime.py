"""The adapters a running certpilot uses, assembled once per process.

Tasks and flows never build adapters themselves: they ask `current()` for the `Runtime`, which
is either set explicitly (`use(runtime)`: `certpilot up`, tests, scripts) or built from the
Prefect blocks named by the `certpilot-config` block (a worker of a `prefect deploy` setup).
The runtime holds no key material: the vault opens keys inside the adapters that need them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from certpilot.core.errors import PermanentError
from certpilot.core.models import Certificate, Origin, Policy
from certpilot.core.validity import CabfSchedule


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """Everything the pipeline acts through.

    Attributes:
        database_url: the store (None: settings' default).
        vault: the `KeyVault`.
        issuers: issuers by name (e.g. "private-ca", "acme").
        default_issuer: the issuer name for certificates certpilot renews.
        emergency_issuer: the (ACME) issuer for EM-1; default `default_issuer`.
        dns_providers: DnsProviders that write zones (DV-2, PL-5).
        http01: the HTTP-01 responder (file validation), if any.
        nameservers: authoritative servers (host, port) to check visibility at (DV-7), if fixed.
        notifiers: channels for notices (NT-1, NT-2, DEP-3).
        target_factory: builds deploy adapters from target records.
        verifier: proves what endpoints serve (VER-1/VER-2).
        policy, schedule: rule parameters (LC-4, PL-4, NT-1, VA-5).
        clock: wall clock (tests inject a fixed or moving one).
        poll_seconds: how long `apply` polls a CA review before leaving it to the scanner (CA-1).
    """

    vault: Any
    issuers: dict[str, Any]
    default_issuer: str
    target_factory: Callable
    verifier: Callable
    policy: Policy
    schedule: CabfSchedule
    database_url: str | None = None
    emergency_issuer: str | None = None
    dns_providers: Sequence[Any] = ()
    http01: Any = None
    nameservers: Sequence[tuple[str, int]] | None = None
    notifiers: Sequence[Any] = ()
    clock: Callable[[], datetime] = _now
    poll_seconds: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)

    def session(self):
        """A transactional session on the store (commit on success, rollback on error)."""
        from certpilot.store.db import session_scope

        return session_scope(self.database_url)

    def issuer(self, name: str | None = None):
        """The issuer called `name` (default: the default issuer).

        Raises:
            PermanentError: no such issuer is configured.
        """
        key = name or self.default_issuer
        try:
            return self.issuers[key]
        except KeyError:
            raise PermanentError(f"no issuer {key!r} is configured (have: {', '.join(self.issuers) or 'none'}); "
                                 "add its block and name it in the certpilot-config block") from None

    def issuer_for(self, cert: Certificate, *, emergency: bool = False):
        """EL-4: private-CA certificates come from the private CA; EM-1 from the emergency issuer."""
        if emergency:
            return self.issuer(self.emergency_issuer or self.default_issuer)
        if cert.origin is Origin.PRIVATE_CA:
            private = next((k for k in self.issuers if k.startswith("private-ca")), None)
            if private is not None:
                return self.issuers[private]
        return self.issuer()

    def dns_writable(self, names: Sequence[str]) -> bool:
        """PL-5/DV-2: a configured provider holds the zone of every name."""
        from certpilot.adapters.dns.base import challenge_name, provider_for

        return bool(names) and all(provider_for(challenge_name(n), list(self.dns_providers)) for n in names)

    @property
    def inbox(self):
        """The in-product message channel (DEP-3): always on, whatever else is configured."""
        from certpilot.adapters.notify.inbox import InboxNotifier

        return InboxNotifier(self.session)

    @property
    def all_notifiers(self) -> list[Any]:
        """The inbox plus the configured channels (email, webhooks, Prefect blocks)."""
        return [self.inbox, *self.notifiers]

    def notify(self, event, *, session=None) -> dict[str, Exception]:
        """Put `event` in the inbox and send it through every configured channel.

        Args:
            event: the NotificationEvent.
            session: the caller's open transaction, if it holds one: the inbox message is then
                written in it (committed or rolled back with the caller's record of the notice;
                and SQLite's single writer is not asked for a second transaction).

        Returns:
            The configured channels that failed (never raised); the inbox is not counted, so a
            caller can still retry a notice no external channel delivered.
        """
        from contextlib import nullcontext

        from certpilot.adapters.notify.base import notify_all
        from certpilot.adapters.notify.inbox import InboxNotifier

        if event.owner_email is None:  # the owner hears of their certificate (NT-1, NT-2, DEP-3)
            event = event.model_copy(update={"owner_email": self._owner_email(event.certificate_id, session)})
        inbox = InboxNotifier(lambda: nullcontext(session)) if session is not None else self.inbox
        notify_all([inbox], event)
        return notify_all(self.notifiers, event)

    def _owner_email(self, certificate_id: str, session=None) -> str | None:
        from certpilot.store.tables import CertificateRow

        def read(s):
            row = s.get(CertificateRow, certificate_id)
            return row.owner_email if row is not None else None

        if session is not None:
            return read(session)
        with self.session() as s:
            return read(s)

    def authoritative_for(self, fqdn: str) -> list[tuple[str, int]]:
        """The servers to ask whether a record is served (DV-7): the configured ones, or the
        NS hosts of the name's zone on port 53."""
        if self.nameservers:
            return list(self.nameservers)
        import dns.resolver

        from certpilot.adapters.dns.checks import authoritative_servers, find_zone

        resolver = dns.resolver.Resolver()
        return authoritative_servers(find_zone(fqdn, resolver), resolver)

    def key_opener(self, session):
        """Opens a certificate's private key from the vault, inside adapters only (CSR-5)."""
        from certpilot.operations.deployments import vault_key_opener

        return vault_key_opener(session, self.vault)


_lock = threading.Lock()
_override: Runtime | None = None
_cached: Runtime | None = None


@contextlib.contextmanager
def use(runtime: Runtime) -> Iterator[Runtime]:
    """Make `runtime` the process's runtime for the duration of the block."""
    global _override
    with _lock:
        previous, _override = _override, runtime
    try:
        yield runtime
    finally:
        with _lock:
            _override = previous


def install(runtime: Runtime) -> None:
    """Make `runtime` the process's runtime until replaced (for long-lived serving processes)."""
    global _override
    with _lock:
        _override = runtime


def current() -> Runtime:
    """The runtime in force: the installed one, else one built from the Prefect blocks."""
    global _cached
    with _lock:
        if _override is not None:
            return _override
        if _cached is None:
            _cached = from_blocks()
        return _cached


def local_runtime(*, database_url: str | None = None, **overrides: Any) -> Runtime:
    """The embedded defaults: the private CA as issuer, files/nginx targets, TLS probe verifier."""
    from certpilot.adapters.issuers.private_ca import PrivateCa
    from certpilot.config import load_policy, load_schedule
    from certpilot.crypto.vault import default_vault
    from certpilot.operations.deployments import ProbeVerifier, default_target_factory
    from certpilot.store.db import session_scope

    vault = overrides.pop("vault", None) or default_vault()
    clock = overrides.pop("clock", _now)
    sessions = lambda: session_scope(database_url)  # noqa: E731 - a factory the CA calls
    issuers = overrides.pop("issuers", None) or {"private-ca": PrivateCa(sessions, vault, clock=clock)}
    return Runtime(
        vault=vault, issuers=issuers, default_issuer=overrides.pop("default_issuer", next(iter(issuers))),
        target_factory=overrides.pop("target_factory", None) or default_target_factory(),
        verifier=overrides.pop("verifier", None) or ProbeVerifier(trust=overrides.pop("trust", None)),
        policy=overrides.pop("policy", None) or load_policy(), schedule=overrides.pop("schedule", None) or load_schedule(),
        database_url=database_url, clock=clock, **overrides)


def from_blocks(config_name: str = "default") -> Runtime:
    """Build the runtime from Prefect blocks: `certpilot-config/NAME` names the others.

    Issuer references are ``private-ca/<block name>`` or ``acme/<block name>``; DNS providers
    ``rfc2136/<name>`` or ``route53/<name>``; notification references are Prefect notification
    blocks (``<block type slug>/<name>``, e.g. ``slack-webhook/ops``) or ``email-notices/<name>``.
    Without a configuration block, the embedded defaults (`local_runtime`).

    Raises:
        ValueError: a block the configuration names does not exist.
    """
    from prefect.blocks.core import Block

    import blocks as b

    try:
        config = b.CertpilotConfigBlock.load(config_name)
    except ValueError:
        return local_runtime()
    try:
        vault = b.KeyVaultBlock.load(config_name).vault()
    except ValueError:
        vault = None
    base = local_runtime(vault=vault)
    nameservers = [(h, int(p or 53)) for h, _, p in (ns.partition(":") for ns in config.nameservers)] or None
    kinds = {"rfc2136": b.Rfc2136Block, "route53": b.Route53Block}
    providers = [kinds[k].load(n).provider() for k, _, n in (r.partition("/") for r in config.dns_providers)]
    issuers: dict[str, Any] = {}
    for ref in dict.fromkeys(r for r in (config.default_issuer, config.emergency_issuer) if r):
        kind, _, name = ref.partition("/")
        if kind == "private-ca":
            issuers[ref] = b.PrivateCaBlock.load(name or "default").issuer(base.session, base.vault, clock=base.clock)
        elif kind == "acme":
            authoritative = (lambda _fqdn: list(nameservers)) if nameservers else None
            issuers[ref] = b.AcmeAccountBlock.load(name).issuer(base.session, base.vault, dns_providers=providers,
                                                                 authoritative=authoritative, clock=base.clock)
        else:
            raise ValueError(f"issuer reference {ref!r}: use private-ca/NAME or acme/NAME")
    notifiers: list[Any] = []
    for ref in config.notification_blocks:
        kind, _, name = ref.partition("/")
        if kind == "email-notices":
            notifiers.append(b.SmtpNotifierBlock.load(name).notifier())
        else:
            notifiers.append(PrefectNotifier(Block.load(ref)))
    from certpilot.operations.deployments import ProbeVerifier, default_target_factory

    target_factory = base.target_factory
    try:  # ACM / load-balancer targets with the credentials (and endpoint) of this block
        aws = b.AwsDeployBlock.load(config_name)
        target_factory = default_target_factory(aws=lambda service, _cfg: aws.client(service))
    except ValueError:
        pass
    return Runtime(vault=base.vault, issuers=issuers, default_issuer=config.default_issuer,
                   emergency_issuer=config.emergency_issuer, dns_providers=providers, notifiers=notifiers,
                   target_factory=target_factory, verifier=ProbeVerifier(trust=config.probe_ca_bundle),
                   policy=base.policy, schedule=base.schedule, nameservers=nameservers)


class PrefectNotifier:
    """Any Prefect notification block (Slack, Teams, webhook, Apprise…) as a certpilot Notifier."""

    name = "prefect"

    def __init__(self, block):
        self.block = block

    def send(self, event) -> None:
        """Send the event's subject and body through the block."""
        self.block.notify(event.body, subject=event.subject)
