"""The one composition root: builds the `Services` every use case acts through.

Nothing else in certpilot builds a vault, an issuer, a DNS provider or a notifier. Three ways in:
- `services()`: what tasks and flows use. The installed `Services` (`install`/`use`: `certpilot
  up`, tests, scripts), else one built from the Prefect blocks named by the `certpilot-config`
  block (a worker of a `prefect deploy` setup). A missing config block is an error that names
  it, never a silent fallback to the embedded defaults.
- `for_cli()`: what the CLI uses: the blocks when a Prefect API is configured and holds a
  `certpilot-config` block (so `certpilot import` seals keys in the vault the workers open),
  else the explicit local defaults.
- `local_services()`: the embedded defaults (private CA, local master key, files/nginx targets).
The services hold no key material: the vault opens keys inside the adapters that need them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from certpilot.core.deployment import KeyOpenerById
from certpilot.core.errors import MissingBlockError, PermanentError
from certpilot.core.issuers import RenewalTiming
from certpilot.core.models import Certificate, Policy
from certpilot.core.validity import CabfSchedule


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
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
        timing: the renewal due point (the later of N days and a fraction of the lifetime left).
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
    timing: RenewalTiming = field(default_factory=RenewalTiming)
    """When a certificate is due for renewal (`config/defaults.toml` [renewal_timing])."""

    def session(self, readonly: bool = False):
        """A transactional session on the store (commit on success, rollback on error).

        Args:
            readonly: a deferred transaction for reads (listings, the scanner's decision).
        """
        from certpilot.store.db import session_scope

        return session_scope(self.database_url, readonly=readonly)

    def now(self) -> datetime:
        """The services' clock (tests inject a fixed or moving one)."""
        return self.clock()

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

    def issuer_choice(self, cert: Certificate):
        """The issuer `cert` is applied to and its fallbacks (`core.issuers.choose_issuer`): its own
        choice (`certpilot policy ID --issuer NAME`), else its lineage's, else by origin (EL-4:
        a private-CA certificate from a private CA), else the default issuer.

        Raises:
            RefusedError: UNKNOWN_ISSUER: the chosen issuer is not configured, or a private-CA
                certificate and no private CA is configured (never sent to a public CA).
        """
        from certpilot.core.errors import RefusedError
        from certpilot.core.issuers import IssuerChoice, choose_issuer
        from certpilot.store.issuer_queries import recorded_choices

        with self.session(readonly=True) as s:
            own, inherited = recorded_choices(s, cert.id)
        choice = choose_issuer(own=own, inherited=inherited, origin=cert.origin, configured=list(self.issuers),
                               default=self.default_issuer, certificate_id=cert.id)
        if not isinstance(choice, IssuerChoice):
            raise RefusedError(choice)
        return choice

    def issuer_ref(self, issuer: Any) -> str:
        """The configured reference (e.g. ``acme/pebble``) of an issuer object, else its own name."""
        return next((k for k, v in self.issuers.items() if v is issuer), getattr(issuer, "name", ""))

    def _ordered_with(self, cert: Certificate):
        """The issuer the certificate's CA order was placed with, when one was (a fallback's order
        is followed, polled and collected at the fallback)."""
        from certpilot.store.issuer_queries import ordered_with

        with self.session(readonly=True) as s:
            ref = ordered_with(s, cert.id)
        if ref is None:
            return None
        if ref in self.issuers:
            return self.issuers[ref]
        # Orders recorded before issue 13 carry the adapter's own name (a directory URL).
        return next((v for v in self.issuers.values() if getattr(v, "name", None) == ref), None)

    def issuer_for(self, cert: Certificate, *, emergency: bool = False):
        """The issuer a stage calls for `cert`: the emergency issuer (EM-1); the issuer its CA
        order was placed with, once placed; else its chosen issuer (`issuer_choice`).

        Raises:
            RefusedError: UNKNOWN_ISSUER (see `issuer_choice`).
        """
        if emergency:
            return self.issuer(self.emergency_issuer or self.default_issuer)
        placed = self._ordered_with(cert)
        if placed is not None:
            return placed
        return self.issuers[self.issuer_choice(cert).name]

    def issuer_chain(self, cert: Certificate, *, emergency: bool = False) -> list[tuple[str, Any]]:
        """(reference, issuer) to try in order for a new CA order: the chosen issuer, then its
        fallbacks (the emergency issuer alone for EM-1)."""
        if emergency:
            ref = self.emergency_issuer or self.default_issuer
            return [(ref, self.issuer(ref))]
        return [(ref, self.issuers[ref]) for ref in self.issuer_choice(cert).chain]

    def paid(self, cert: Certificate) -> bool:
        """Whether renewing `cert` is billed (quota, managed credits, payment form): a property of
        its issuer (`paid`, default True: the seed's paid CA service); a free ACME CA bills nothing."""
        return bool(getattr(self.issuers.get(self.issuer_choice(cert).name), "paid", True))

    def dns_writable(self, names: Sequence[str]) -> bool:
        """PL-5/DV-2: a configured provider holds the zone of every name."""
        from certpilot.adapters.dns.base import challenge_name, provider_for

        return bool(names) and all(provider_for(challenge_name(n), list(self.dns_providers)) for n in names)

    def delegated(self, names: Sequence[str]) -> bool:
        """PL-5: every name's ``_acme-challenge`` is delegated (CNAME) into a zone a configured
        provider writes (a `DelegatingProvider`, the config block's `dns_delegation`)."""
        from certpilot.adapters.dns.base import challenge_name

        checks = [p for p in self.dns_providers if hasattr(p, "is_delegated")]
        return bool(names) and bool(checks) and all(any(p.is_delegated(challenge_name(n)) for p in checks)
                                                    for n in names)

    @property
    def inbox(self):
        """The in-product message channel (DEP-3): always on, whatever else is configured."""
        from certpilot.adapters.notify.inbox import InboxNotifier
        from certpilot.store.ports import SqlInboxStore

        return InboxNotifier(SqlInboxStore(self.session))

    @property
    def all_notifiers(self) -> list[Any]:
        """The inbox plus the configured channels (email, webhooks, Prefect blocks)."""
        return [self.inbox, *self.notifiers]

    def notify(self, event, *, session=None) -> dict[str, Exception]:
        """Put `event` in the inbox and send it through every configured channel.

        Build events with the operations package's `notices` module (one subject style, the owner's address).

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
        from certpilot.store.ports import SqlInboxStore

        inbox = InboxNotifier(SqlInboxStore(lambda: nullcontext(session))) if session is not None else self.inbox
        notify_all([inbox], event)
        self.emit_notification(event)
        return notify_all(self.notifiers, event)

    def emit(self, what: str, *, certificate_id: str, common_name: str, **payload: Any) -> None:
        """Emit the Prefect event `certpilot.certificate.<what>` (`extra["events"]`, a
        `certpilot.adapters.events.EventSink`; none configured: nothing). Never raises."""
        sink = self.extra.get("events")
        if sink is not None:
            sink.emit(what, certificate_id=certificate_id, common_name=common_name, payload=payload)

    def emit_notification(self, event) -> None:
        """The Prefect event of a notification (expiring, deploy failed, human step, drift, …)."""
        from certpilot.adapters.events import emit_notification

        emit_notification(self.extra.get("events"), event)

    def authoritative_for(self, fqdn: str) -> list[tuple[str, int]]:
        """The servers to ask whether a record is served (DV-7): the configured ones, or the
        NS hosts of the name's zone on port 53."""
        if self.nameservers:
            return list(self.nameservers)
        import dns.resolver

        from certpilot.adapters.dns.checks import authoritative_servers, find_zone

        resolver = dns.resolver.Resolver()
        return authoritative_servers(find_zone(fqdn, resolver), resolver)

    def key_opener(self) -> KeyOpenerById:
        """`open_key(certificate_id) -> key PEM`: a certificate's private key from the vault, for
        adapters only (CSR-5).

        Each opening reads the sealed key in a short read-only transaction of its own, then opens
        it with the vault outside that transaction (a KMS vault is a network call).

        Raises (when called):
            RefusedError: the certificate has no stored key (KEY_NOT_HELD, CSR-2; NOT_DEPLOYABLE
                when it is not issued yet). NotFoundError: no such certificate.
        """
        from certpilot.crypto.vault import key_aad
        from certpilot.store.ports import SqlCertificateKeys

        keys = SqlCertificateKeys(lambda: self.session(readonly=True))
        vault = self.vault

        def open_key(certificate_id: str) -> bytes:
            held = keys.sealed_key_of(certificate_id)
            return vault.open(held.sealed, key_aad(held.public_fingerprint))

        return open_key


_lock = threading.Lock()
_override: Services | None = None
_cached: Services | None = None


@contextlib.contextmanager
def use(svc: Services) -> Iterator[Services]:
    """Make `svc` the process's services for the duration of the block (tests, scripts)."""
    global _override
    with _lock:
        previous, _override = _override, svc
    try:
        yield svc
    finally:
        with _lock:
            _override = previous


def install(svc: Services) -> None:
    """Make `svc` the process's services until replaced (long-lived serving processes)."""
    global _override
    with _lock:
        _override = svc


def services() -> Services:
    """The services in force: the installed ones, else built once from the Prefect blocks.

    Raises:
        MissingBlockError: no `certpilot-config` block (a deployment run never falls back to
            the embedded defaults silently).
    """
    global _cached
    with _lock:
        if _override is not None:
            return _override
        if _cached is None:
            _cached = from_blocks()
        return _cached


def local_services(*, database_url: str | None = None, **overrides: Any) -> Services:
    """The embedded defaults: the private CA as issuer, the local master key (CERTPILOT_MASTER_KEY
    or the 0600 file under CERTPILOT_HOME), files/nginx targets, TLS probe verifier.

    Args:
        database_url: the store (None: the settings' default).
        overrides: any `Services` field (tests and `certpilot up` inject a vault, issuers, a clock).
    """
    from certpilot.adapters.deploy.factory import default_target_factory
    from certpilot.adapters.events import PrefectEvents
    from certpilot.adapters.issuers.private_ca import PrivateCa
    from certpilot.adapters.probe.verifier import ProbeVerifier, trusting
    from certpilot.config import load_policy, load_schedule, load_timing
    from certpilot.crypto.vault import default_vault
    from certpilot.store.db import session_scope
    from certpilot.store.ports import SqlPrivateCaStore

    vault = overrides.pop("vault", None) or _LocalVault(default_vault)
    clock = overrides.pop("clock", _now)
    sessions = lambda: session_scope(database_url)  # noqa: E731 - a factory the CA's store calls
    issuers = overrides.pop("issuers", None)
    if issuers is None:
        from certpilot.crypto.safefile import offline_key_sink
        from certpilot.settings import get_settings

        issuers = {"private-ca": PrivateCa(SqlPrivateCaStore(sessions), vault, clock=clock,
                                           offline_sink=offline_key_sink(get_settings().home / "private-ca-offline"))}
    return Services(
        vault=vault, issuers=issuers, default_issuer=overrides.pop("default_issuer", next(iter(issuers), "")),
        target_factory=trusting(overrides.pop("target_factory", None) or default_target_factory(alibaba=alibaba_cas_api)),
        verifier=overrides.pop("verifier", None) or ProbeVerifier(trust=overrides.pop("trust", None),
                                                                  private_roots=_private_roots(issuers),
                                                                  clock=clock),
        policy=overrides.pop("policy", None) or load_policy(), schedule=overrides.pop("schedule", None) or load_schedule(),
        timing=overrides.pop("timing", None) or load_timing(), database_url=database_url, clock=clock,
        extra={"events": PrefectEvents(), **overrides.pop("extra", {})}, **overrides)


def _private_roots(issuers: dict[str, Any]):
    """`() -> [root PEM]` of the private CA issuers: what a target with `trust = "private-ca"` adds to
    its probe bundle (read when such a target is first verified, so no CA is created before)."""
    return lambda: [i.root_pem() for i in issuers.values()
                    if callable(getattr(i, "root_pem", None)) and not getattr(i, "publicly_trusted", True)]


class _LocalVault:
    """The local master-key vault, opened on first use.

    A command that only reads the inventory (`certpilot list`) neither creates nor reads the
    master key file; the first seal or open does, and refuses a group/world-readable file then.
    """

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._vault: Any = None
        self._lock = threading.Lock()

    def _get(self):
        with self._lock:
            if self._vault is None:
                self._vault = self._factory()
            return self._vault

    def seal(self, key_pem: bytes, aad: bytes):
        """Seal `key_pem` (see `KeyVault.seal`)."""
        return self._get().seal(key_pem, aad)

    def open(self, sealed, aad: bytes) -> bytes:
        """Open a sealed key (see `KeyVault.open`)."""
        return self._get().open(sealed, aad)

    def __getattr__(self, name: str):
        return getattr(self._get(), name)

    def __repr__(self) -> str:
        return "KeyVault(local master key, opened on first use)"


CONFIG_BLOCK = "certpilot-config"
"""The block type slug of the configuration that names every other block."""


def _load(block_cls, name: str, what: str):
    """Load block `name` of `block_cls`, or say which block is missing and how to make it.

    Raises:
        MissingBlockError: no such block.
    """
    try:
        return block_cls.load(name)
    except ValueError:
        slug = block_cls.get_block_type_slug()
        raise MissingBlockError(
            f"the Prefect block {slug}/{name} ({what}) does not exist: create it with `certpilot setup "
            f"--config FILE` (or `certpilot setup --private-ca` for the embedded private CA), "
            f"`prefect block create {slug}` or the UI's Blocks page, or name an existing one in the "
            f"{CONFIG_BLOCK} block") from None


def _vault_from_blocks(config_name: str):
    """The vault of `certpilot-key-vault/NAME`, else the local master key (env value or 0600 file)."""
    import blocks as b
    from certpilot.crypto.vault import default_vault

    try:
        return b.KeyVaultBlock.load(config_name).vault()
    except ValueError:  # no vault block: the documented local master key, not a silent guess
        return default_vault()


def _issuers_from_blocks(config, base: Services, providers: list, nameservers, http01=None) -> dict[str, Any]:
    """The issuers `config` names (default, emergency and its `issuers` list), built with the base
    services' store and vault: ``private-ca/NAME``, ``acme/NAME``, ``aws-pca/NAME``."""
    import blocks as b
    from certpilot.store.ports import SqlAcmeAccountStore, SqlPrivateCaStore

    issuers: dict[str, Any] = {}
    refs = (config.default_issuer, config.emergency_issuer, *getattr(config, "issuers", ()))
    for ref in dict.fromkeys(r for r in refs if r):
        kind, _, name = ref.partition("/")
        if kind == "private-ca":
            block = _load(b.PrivateCaBlock, name or "default", "the private CA issuer")
            issuers[ref] = block.issuer(SqlPrivateCaStore(base.session), base.vault, clock=base.clock)
        elif kind == "acme":
            authoritative = (lambda _fqdn: list(nameservers)) if nameservers else None
            block = _load(b.AcmeAccountBlock, name, "the ACME account issuer")
            issuers[ref] = block.issuer(SqlAcmeAccountStore(base.session), base.vault, dns_providers=providers,
                                        authoritative=authoritative, clock=base.clock, http01=http01)
        elif kind == "aws-pca":
            issuers[ref] = _load(b.AwsPrivateCaBlock, name, "the AWS Private CA issuer").issuer()
        elif kind == "alibaba-cas":
            block = _load(b.AlibabaCloudBlock, name or "default", "the Alibaba Cloud account (CAS issuer)")
            issuers[ref] = block.issuer(dns_providers=providers)
        else:
            raise MissingBlockError(f"issuer reference {ref!r} in the {CONFIG_BLOCK} block: use private-ca/NAME, "
                                    "acme/NAME, aws-pca/NAME or alibaba-cas/NAME")
    return issuers


def _notifiers_from_blocks(config) -> list[Any]:
    """The notification channels `config` names: email-notices/NAME, webhook-notices/NAME or any
    Prefect notification block."""
    from prefect.blocks.core import Block

    import blocks as b

    notifiers: list[Any] = []
    for ref in config.notification_blocks:
        kind, _, name = ref.partition("/")
        if kind == "email-notices":
            notifiers.append(_load(b.SmtpNotifierBlock, name, "an email notification channel").notifier())
        elif kind == "webhook-notices":
            notifiers.append(_load(b.WebhookNotifierBlock, name, "a webhook notification channel").notifier())
        else:
            try:
                notifiers.append(PrefectNotifier(Block.load(ref)))
            except ValueError:
                raise MissingBlockError(f"the notification block {ref} named in the {CONFIG_BLOCK} block does "
                                        "not exist: create it or remove it from notification_blocks") from None
    return notifiers


def from_blocks(config_name: str = "default", *, database_url: str | None = None) -> Services:
    """Build the services from Prefect blocks: `certpilot-config/NAME` names the others.

    Issuer references are ``private-ca/<block name>`` or ``acme/<block name>``; DNS providers
    ``rfc2136/<name>`` or ``route53/<name>``; notification references are Prefect notification
    blocks (``<block type slug>/<name>``, e.g. ``slack-webhook/ops``) or ``email-notices/<name>``.
    The vault is `certpilot-key-vault/NAME` when it exists, else the local master key; AWS
    deploy targets use `certpilot-aws-deploy/NAME` when it exists.

    Raises:
        MissingBlockError: the configuration block, or a block it names, does not exist (never a
            silent fallback to the embedded defaults).
    """
    import blocks as b
    from certpilot.adapters.deploy.factory import default_target_factory
    from certpilot.adapters.probe.verifier import ProbeVerifier, trusting

    config = _load(b.CertpilotConfigBlock, config_name, "which issuer, DNS and notifications certpilot uses")
    base = local_services(database_url=database_url, vault=_vault_from_blocks(config_name), issuers={})
    nameservers = [(h, int(p or 53)) for h, _, p in (ns.partition(":") for ns in config.nameservers)] or None
    kinds = {"rfc2136": (b.Rfc2136Block, "an RFC 2136 DNS provider"), "route53": (b.Route53Block, "a Route 53 DNS provider"),
             "alidns": (b.AlibabaCloudBlock, "the Alibaba Cloud account whose AliDNS zones are written")}
    providers = []
    for kind, _, name in (r.partition("/") for r in config.dns_providers):
        if kind not in kinds:
            raise MissingBlockError(f"DNS provider reference {kind}/{name} in the {CONFIG_BLOCK} block: use "
                                    "rfc2136/NAME, route53/NAME or alidns/NAME")
        block = _load(kinds[kind][0], name, kinds[kind][1])
        providers.append(block.dns_provider() if kind == "alidns" else block.provider())
    providers = _delegating(providers, nameservers) if config.dns_delegation else providers
    http01 = None
    if config.http01_webroot:  # DV-3 file validation through the web server's webroot
        from certpilot.adapters.http01.webroot import WebrootResponder

        http01 = WebrootResponder(config.http01_webroot)
    target_factory = base.target_factory
    try:  # ACM / load-balancer targets with the credentials (and endpoint) of this block
        aws = b.AwsDeployBlock.load(config_name)
        target_factory = trusting(default_target_factory(aws=lambda service, _cfg: aws.client(service),
                                                         alibaba=alibaba_cas_api))
    except ValueError:
        pass
    issuers = _issuers_from_blocks(config, base, providers, nameservers, http01)
    return Services(vault=base.vault, issuers=issuers, http01=http01,
                    default_issuer=config.default_issuer, emergency_issuer=config.emergency_issuer,
                    dns_providers=providers, notifiers=_notifiers_from_blocks(config), target_factory=target_factory,
                    verifier=ProbeVerifier(trust=config.probe_ca_bundle, private_roots=_private_roots(issuers),
                                           clock=base.clock),
                    policy=base.policy, schedule=base.schedule, timing=base.timing, nameservers=nameservers,
                    database_url=database_url, extra=dict(base.extra))


def _delegating(providers: list, nameservers) -> list:
    """PL-5's validation-free authorization: one provider that follows ``_acme-challenge`` CNAMEs
    into the zones `providers` write (and writes the other names directly)."""
    import dns.resolver

    from certpilot.adapters.dns.delegation import DelegatingProvider

    resolver = dns.resolver.Resolver()
    if nameservers:
        resolver.nameservers = [h for h, _ in nameservers]
        resolver.port = nameservers[0][1]
    return [DelegatingProvider(providers, resolver)]


def _prefect_api_configured() -> bool:
    """Whether a Prefect API is configured for this process (environment or active profile)."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        return True
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def for_cli(*, database_url: str | None = None, config_name: str = "default") -> Services:
    """The services of a command-line process.

    With a Prefect API configured that holds the `certpilot-config` block, the same blocks the
    workers use (so a key imported here is sealed in the vault a flow run opens); otherwise the
    explicit local defaults (`local_services`), as on a machine without Prefect.

    Raises:
        MissingBlockError: the configuration block exists but names a block that does not.
        PermanentError: a Prefect API is configured but does not answer, or refuses this client
            (401/403: the message names the auth setting to provide).
    """
    if _prefect_api_configured():
        import httpx

        import blocks as b

        try:
            b.CertpilotConfigBlock.load(config_name)
        except ValueError:
            return local_services(database_url=database_url)
        except httpx.HTTPError as exc:
            from prefect.settings import get_current_settings

            url = get_current_settings().api.url
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403):  # it answers, but not to us: say which credential is missing
                raise PermanentError(
                    f"the Prefect API at {url} refused this client (HTTP {status}): set PREFECT_API_AUTH_STRING "
                    "(a local `certpilot up` keeps it in $CERTPILOT_HOME/prefect-api-auth) or PREFECT_API_KEY"
                ) from None
            raise PermanentError(
                f"the Prefect API at {url} does not answer ({type(exc).__name__}): start "
                "it (`certpilot up`), or unset PREFECT_API_URL to use the local defaults") from None
        return from_blocks(config_name, database_url=database_url)
    return local_services(database_url=database_url)


class PrefectNotifier:
    """Any Prefect notification block (Slack, Teams, webhook, Apprise…) as a certpilot Notifier."""

    name = "prefect"

    def __init__(self, block):
        self.block = block

    def send(self, event) -> None:
        """Send the event's subject and body through the block."""
        self.block.notify(event.body, subject=event.subject)


def acm_fleet(svc: Services, *, region: str | None = None):
    """The ACM reader of `certpilot import --from acm` (`adapters.fleet.acm.AcmFleet`).

    Its client is `svc.extra["aws"](service, region)` when the services carry one (tests,
    scripts), else a boto3 client from the environment: AWS credentials (variables, profile),
    `AWS_ENDPOINT_URL`, and `region` or `AWS_DEFAULT_REGION` (default us-east-1).
    """
    import os

    from certpilot.adapters.deploy.aws_acm import acm_client
    from certpilot.adapters.fleet.acm import AcmFleet

    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
    factory = svc.extra.get("aws")
    client = factory("acm", region) if factory else acm_client(region=region)
    return AcmFleet(client, region=region)


def alibaba_connection(svc: Services | None, name: str = "default"):
    """The `AlibabaConnection` called `name`: `svc.extra["alibaba"](name)` when the services carry
    one (tests, scripts), else the `certpilot-alibaba-cloud/NAME` block.

    Raises:
        MissingBlockError: no such block (the message says how to create it).
    """
    factory = svc.extra.get("alibaba") if svc is not None else None
    if factory is not None:
        return factory(name)
    import blocks as b

    return _load(b.AlibabaCloudBlock, name, "the Alibaba Cloud account: AccessKey, region").connection()


def alibaba_cas_api(config: dict[str, Any]):
    """The CAS API a deployment-job target's `connection` names (the target factory's `alibaba`)."""
    svc = _override or _cached
    return alibaba_connection(svc, str(config.get("connection") or "default")).cas()


def alibaba_inventory(svc: Services, name: str = "default"):
    """The reader of `certpilot sync alibaba` (`adapters.alibaba.inventory.CasInventory`)."""
    from certpilot.adapters.alibaba.inventory import CasInventory

    return CasInventory(alibaba_connection(svc, name).cas())
