"""ACME (RFC 8555) issuer on the `acme` + `josepy` libraries (certbot's client), not a hand-written one.

Steps, each re-entrant from the order URL alone:
  submit   DV-4 and CAA (DV-7) checks first — a refusal places no order — then `newOrder`;
           the caller records the order URL before anything else happens.
  advance  re-fetch the order by URL; answer the authorizations still pending (valid ones are
           skipped) through a DNS provider (dns-01) or the HTTP-01 responder; wait until every
           record is visible at the authoritative servers (DV-7) before telling the CA to
           validate; finalize; wait for the certificate. Challenge records are removed after
           validation whatever the outcome.
  fetch    download the full chain (leaf + intermediates).

Polling never uses the library's fixed 1 s sleeps: a short first delay growing ×1.5 up to a cap,
never shorter than the CA's Retry-After. Errors: badNonce is retried (bounded, beyond the
library's single retry); rateLimited and server errors are `TransientError` (with
`retry_after`); unauthorized, caa, dns, incorrectResponse, rejectedIdentifier and other CA
refusals are `PermanentError` carrying the CA's detail.

The account key is generated once per directory, sealed in the key vault and kept, with the
account URL, through an `AcmeAccountStore` port (the store's `acme_accounts` table); the
opened key is held only in memory here.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import josepy as jose
import requests
from acme import challenges, messages
from acme import errors as acme_errors
from acme.client import ClientV2

from certpilot.adapters.dns.base import DnsProvider, provider_for
from certpilot.adapters.http01.manual import ManualFile, ManualFileRequired, file_served
from certpilot.adapters.issuers import acme_private
from certpilot.adapters.issuers.acme_private import network_keeping_retry_after, post_as_get
from certpilot.adapters.issuers.base import (
    Application,
    IssuedChain,
    OrderStatus,
    PollResult,
    split_pem_chain,
)
from certpilot.core.errors import (
    BadInputError,
    PermanentError,
    Reason,
    Refusal,
    RefusedError,
    TransientError,
)
from certpilot.core.limits import MAX_HTTP_BODY_BYTES, MAX_RETRY_AFTER_SECONDS
from certpilot.core.models import KeyAlgorithm, ValidationMethod
from certpilot.core.text import visible
from certpilot.core.validation import check_validation_method
from certpilot.crypto.keys import PrivateKey, generate_key, open_key, public_fingerprint, store_key

log = logging.getLogger(__name__)

T = TypeVar("T")

ACCOUNT_PURPOSE = "acme-account"

TRANSIENT_CODES = frozenset({"rateLimited", "serverInternal", "badNonce"})
"""ACME problem types worth retrying later; every other problem is the CA's refusal."""

_STATUS = {
    messages.STATUS_PENDING: OrderStatus.PENDING,
    messages.STATUS_READY: OrderStatus.READY,
    messages.STATUS_PROCESSING: OrderStatus.PROCESSING,
    messages.STATUS_VALID: OrderStatus.VALID,
    messages.STATUS_INVALID: OrderStatus.INVALID,
}


class AcmeAccountRecord(Protocol):
    """The account recorded for a directory (no key material: the key is referenced by id)."""

    @property
    def key_id(self) -> str:
        """The sealed account key's id."""
        ...

    @property
    def public_fingerprint(self) -> str:
        """The account key's public fingerprint (binds the vault's associated data)."""
        ...

    @property
    def account_url(self) -> str:
        """The account's URL at the CA; "" until the registration is recorded."""
        ...


class AcmeAccountStore(Protocol):
    """Where the issuer keeps its account: one per directory URL, its key sealed (the store
    implements it: `certpilot.store.ports.SqlAcmeAccountStore`). Each method is one transaction."""

    def load(self, directory_url: str) -> AcmeAccountRecord | None:
        """The account recorded for `directory_url`, or None."""
        ...

    def create(self, directory_url: str, *, contact: str | None, seal_key: Callable[[Any], str]) -> bool:
        """Record an unregistered account whose key `seal_key` seals (given a `crypto.keys`
        key store, it returns the key id) in the same transaction; False when another
        process recorded one for the directory first (then nothing of this call is kept)."""
        ...

    def set_account_url(self, directory_url: str, account_url: str) -> None:
        """Record the account URL the CA registered."""
        ...

    def get_sealed_key(self, key_id: str) -> object:
        """The sealed key blob stored under `key_id` (opened by the vault here, never by the store)."""
        ...


class Http01Responder(Protocol):
    """Serves ``/.well-known/acme-challenge/<token>`` (the webroot responder of adapters/http01)."""

    def present(self, token: str, key_authorization: str) -> None:
        """Publish the key authorization at the token's path."""
        ...

    def cleanup(self, token: str) -> None:
        """Remove the token's file."""
        ...


@dataclass(frozen=True)
class ExternalAccount:
    """External Account Binding credentials a CA issued (kid + base64url HMAC key)."""

    kid: str
    hmac_key: str = field(repr=False)
    hmac_alg: str = "HS256"


class _NewOrderReplacing(messages.NewOrder):
    """newOrder with ARI's `replaces` (RFC 9773 section 5): the certificate identifier of the
    certificate this order replaces, so the CA can lift rate limits for it."""

    replaces: str | None = jose.field("replaces", omitempty=True)


def ari_cert_id(leaf_pem: str) -> str:
    """ARI's certificate identifier (RFC 9773 section 4.1): base64url(AKI keyIdentifier) "."
    base64url(serial DER), the library's own construction.

    Raises:
        PermanentError: the certificate has no Authority Key Identifier (no ARI for it).
    """
    from cryptography import x509 as _x509

    cert = _x509.load_pem_x509_certificate(leaf_pem.encode())
    try:
        return acme_private.ari_cert_id(cert)
    except _x509.ExtensionNotFound:
        raise PermanentError("the certificate has no Authority Key Identifier: the CA cannot identify it for "
                             "renewal information (RFC 9773)") from None


def _keep_retry_after(error: messages.Error, response: requests.Response) -> None:
    error.retry_after = _retry_after_seconds(response)


_Network = network_keeping_retry_after(_keep_retry_after)
"""ClientNetwork that keeps the response's Retry-After on the ACME problem it raises."""


def _retry_after_seconds(response: requests.Response | None) -> float | None:
    if response is None or "Retry-After" not in response.headers:
        return None
    # RFC 9110: delay-seconds or an HTTP-date (always GMT). Parsed here rather than through the
    # library, which returns a naive datetime to compare with the local clock.
    # A hostile or broken CA may ask for years: the wait is clamped to MAX_RETRY_AFTER_SECONDS
    # (the run then fails over to the next scan, which asks again), and an absurd value is ignored.
    value = response.headers["Retry-After"].strip()
    if len(value) > 64:
        return None
    if value.isdigit():
        return min(float(value), float(MAX_RETRY_AFTER_SECONDS))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return min(max(0.0, (when - _dt.datetime.now(_dt.UTC)).total_seconds()), float(MAX_RETRY_AFTER_SECONDS))


def _json(response: requests.Response, what: str) -> dict:
    """The JSON object of a CA's answer, refusing what is not one (an HTML error page, a huge body).

    Raises:
        TransientError: the body is larger than MAX_HTTP_BODY_BYTES, not JSON, or not an object
            (a proxy's page or a CA outage: the next run asks again).
    """
    body = response.content or b""
    if len(body) > MAX_HTTP_BODY_BYTES:
        raise TransientError(f"{what}: the CA's answer is {len(body)} bytes, more than the "
                             f"{MAX_HTTP_BODY_BYTES} certpilot reads; retry later")
    try:
        value = json.loads(body)
    except ValueError:
        kind = visible(response.headers.get("Content-Type", "no content type"), limit=60)
        raise TransientError(f"{what}: the CA answered {response.status_code} with a body that is not JSON "
                             f"({kind}); retry later") from None
    if not isinstance(value, dict):
        raise TransientError(f"{what}: the CA answered JSON that is not an object; retry later")
    return value


def _parse(kind: type[T], data: dict, what: str) -> T:
    """`kind.from_json(data)`, a malformed ACME object becoming a TransientError naming `what`."""
    try:
        return kind.from_json(data)
    except (jose.DeserializationError, TypeError, ValueError, KeyError):
        raise TransientError(f"{what}: the CA's answer is not a valid ACME {kind.__name__.lower()}; "
                             "retry later") from None


def check_authorizations(authzrs: Sequence[messages.AuthorizationResource], names: Sequence[str],
                         directory_url: str) -> None:
    """Refuse authorizations the application did not ask for before answering any (issue 15).

    A hostile or compromised CA could list an authorization for another name, making certpilot
    publish a validation record in a zone it writes for someone else; or point it at another
    host. Every authorization must be on the directory's host and name one of the order's names
    (a wildcard's authorization names its base with `wildcard: true`).

    Raises:
        PermanentError(CA_REJECTED): naming the foreign authorization.
    """
    wanted = {n.lower() for n in names}
    host = urllib.parse.urlsplit(directory_url).netloc.lower()
    for authzr in authzrs:
        ident = authzr.body.identifier
        value = (ident.value or "").lower()
        name = f"*.{value}" if authzr.body.wildcard else value
        where = urllib.parse.urlsplit(authzr.uri or "").netloc.lower()
        if where != host:
            raise PermanentError(f"the CA's order lists an authorization on another host "
                                 f"('{visible(where, limit=80)}', not '{host}'); certpilot answers none of it. "
                                 "Check the ACME directory URL.", Reason.CA_REJECTED)
        if name not in wanted:
            raise PermanentError(f"the CA's order holds an authorization for '{visible(name, limit=80)}', "
                                 f"which this application did not ask for ({', '.join(sorted(wanted))}); "
                                 "certpilot answers none of it. Check the ACME directory URL.",
                                 Reason.CA_REJECTED)


def _renewal_info_url(directory: messages.Directory) -> str:
    """The directory's renewalInfo URL (RFC 9773), "" when the CA serves no ARI."""
    return str(directory.to_partial_json().get("renewalInfo") or "")


def _aware(value: _dt.datetime) -> _dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.UTC)


def problem_text(error: messages.Error | None) -> str:
    """The CA's own words for a problem: ``type: detail`` (plus subproblems), no library prose."""
    if error is None:
        return "no detail given by the CA"
    code = error.code or str(error.typ).rsplit(":", 1)[-1]
    text = f"{code}: {error.detail or error.title or error.description or ''}".rstrip(": ")
    for sub in error.subproblems or ():
        ident = f" ({sub.identifier.value})" if sub.identifier else ""
        text += f"; {sub.code or sub.typ}{ident}: {sub.detail or ''}"
    return text


def _jwk_and_alg(key: PrivateKey) -> tuple[jose.JWK, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec

    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {"secp256r1": jose.ES256, "secp384r1": jose.ES384}[key.curve.name]
        return jose.JWKEC(key=key), alg
    return jose.JWKRSA(key=key), jose.RS256


class AcmeIssuer:
    """An ACME CA (Let's Encrypt, ZeroSSL, Pebble, ...) as an `Issuer`."""

    def __init__(self, directory_url: str, *, accounts: AcmeAccountStore, vault,
                 ca_bundle: str | bool = True, contact_email: str | None = None,
                 eab: ExternalAccount | None = None,
                 dns_providers: Sequence[DnsProvider] = (), http01: Http01Responder | None = None,
                 manual_dns: DnsProvider | None = None,
                 caa_check: Callable[[Sequence[str]], Refusal | None] | None = None,
                 wait_visible: Callable[[str, str], object] | None = None,
                 publicly_trusted: bool = True, validation_timeout: float = 120.0,
                 first_delay: float = 0.05, max_delay: float = 2.0, nonce_retries: int = 8,
                 account_key_algorithm: KeyAlgorithm = KeyAlgorithm.EC_P256,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic,
                 paid: bool = True, profile: str | None = None, preferred_chain: str | None = None,
                 allow_insecure: bool = False) -> None:
        """Args:
            directory_url: the CA's ACME directory.
            accounts: where the account (URL, sealed key) is kept.
            vault: the `KeyVault` sealing the account key.
            ca_bundle: path of the CA bundle for the ACME server's TLS (or True for the system's).
            contact_email: account contact (``mailto:``).
            eab: External Account Binding credentials, for CAs that require them.
            dns_providers: writers of DNS-01 records; the one holding the most specific zone is used.
            manual_dns: used for a name no provider holds (DV-3): it hands the exact record to a
                human (`ManualActionRequired`) and checks it is served before the CA is told.
            http01: the HTTP-01 responder.
            caa_check: `names -> Refusal | None` (DV-7, e.g. `checks.caa_refusal` bound to a resolver).
            wait_visible: `(fqdn, value) -> ...` returning once every authoritative server serves
                the TXT value, raising `RefusedError(RECORD_NOT_VISIBLE)` otherwise (DV-7).
            publicly_trusted: whether browsers trust this CA (VA-5); Pebble: False.
            validation_timeout: seconds `advance` may wait for validation and issuance.
            first_delay, max_delay: polling delays (grow ×1.5 from the first up to the cap).
            nonce_retries: extra attempts after a badNonce beyond the library's own retry.
            account_key_algorithm: algorithm of a new account key.
            sleep, monotonic: injected for tests.
            paid: whether this CA is a paid service (its renewals consume quota and managed
                credits and may need a payment form); False for a free CA (Let's Encrypt).
            profile: the certificate profile to ask for in new orders (ACME profiles), if any.
            preferred_chain: the common name of the root (or topmost issuer) to prefer among
                the CA's alternative chains; the default chain when none matches.
            allow_insecure: accept a plain-http directory URL (tests only: ACME over http
                exposes nothing secret, but lets anyone on the path swap the CA's answers).

        Raises:
            BadInputError: the directory URL is not https and `allow_insecure` is not set.
        """
        from urllib.parse import urlparse

        if urlparse(directory_url).scheme != "https" and not allow_insecure:
            raise BadInputError(f"the ACME directory {directory_url} is not https: an ACME CA is reached over TLS; "
                                "use its https URL (allow_insecure is for test servers only)")
        self.paid = paid
        self.profile = profile or None
        self.preferred_chain = preferred_chain or None
        self.directory_url = directory_url
        self._accounts = accounts
        self._vault = vault
        self.ca_bundle = ca_bundle
        self.contact_email = contact_email
        self.eab = eab
        self.dns_providers = tuple(dns_providers)
        self.manual_dns = manual_dns
        self.http01 = http01
        self.http01_port = 80
        """The port the CA fetches HTTP-01 files at (80; a test CA's own port), for manual files (DV-3)."""
        self.http01_host: str | None = None
        """Where `file_served` connects to check a manual file (None: the name itself; tests: loopback)."""
        self.caa_check = caa_check
        self.wait_visible = wait_visible
        self._publicly_trusted = publicly_trusted
        self.validation_timeout = validation_timeout
        self.first_delay, self.max_delay = first_delay, max_delay
        self.nonce_retries = nonce_retries
        self.account_key_algorithm = account_key_algorithm
        self._sleep, self._monotonic = sleep, monotonic
        self._local = threading.local()
        self._account_lock = threading.Lock()
        self._account: tuple[PrivateKey, str, messages.Directory] | None = None
        # Per-process shortcuts between steps (never needed for correctness: a rerun reads by URL).
        self._fresh: dict[str, messages.OrderResource] = {}
        self._valid: dict[str, messages.Order] = {}

    # ------------------------------------------------------------------ Issuer properties
    @property
    def name(self) -> str:
        """``acme:<directory URL>``."""
        return f"acme:{self.directory_url}"

    @property
    def publicly_trusted(self) -> bool:
        """As configured (VA-5 caps validity for publicly trusted CAs)."""
        return self._publicly_trusted

    # ------------------------------------------------------------------ errors and retries
    def _do(self, what: str, call: Callable[[], T]) -> T:
        """Run one protocol call: retry badNonce (bounded), map every failure to our error family."""
        attempt = 0
        while True:
            try:
                return call()
            except messages.Error as error:
                if error.code == "badNonce" and attempt < self.nonce_retries:
                    attempt += 1
                    continue
                detail = problem_text(error)
                if error.code in TRANSIENT_CODES:
                    raise TransientError(f"{what}: the CA answered {detail}; retry later",
                                         retry_after=getattr(error, "retry_after", None)) from None
                raise PermanentError(f"{what}: the CA refused: {detail}", Reason.CA_REJECTED) from None
            except acme_errors.TimeoutError:
                raise TransientError(f"{what}: the CA did not answer in time; retry later") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"{what}: cannot reach the CA at {self.directory_url} "
                                     f"({type(exc).__name__}); retry later") from None
            except acme_errors.ClientError as exc:
                raise TransientError(f"{what}: unexpected answer from the CA ({type(exc).__name__}); "
                                     "retry later") from None

    # ------------------------------------------------------------------ account and client
    def _client(self) -> ClientV2:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
        return client

    def _network(self, key: PrivateKey) -> _Network:
        jwk, alg = _jwk_and_alg(key)
        net = _Network(jwk, alg=alg, verify_ssl=self.ca_bundle, user_agent="certpilot")
        # requests re-reads the proxy environment on every request (milliseconds of CPU each,
        # under the GIL): resolve it once per client instead; TLS verification is explicit.
        net.session.proxies = requests.utils.get_environ_proxies(self.directory_url)
        net.session.trust_env = False
        return net

    def _load_account(self) -> tuple[AcmeAccountRecord, PrivateKey] | None:
        account = self._accounts.load(self.directory_url)
        if account is None:
            return None
        key = open_key(account.key_id, account.public_fingerprint, vault=self._vault, repo=self._accounts,
                       purpose=ACCOUNT_PURPOSE)
        return account, key

    def _connect(self) -> ClientV2:
        """A client for this thread, bound to the directory's account (registered on first use).

        The account (key, URL) and the directory are loaded once per issuer and shared; each
        thread gets its own network object (the library's nonce pool is not thread-safe).
        """
        with self._account_lock:
            if self._account is None:
                self._account = self._load_or_register()
            key, account_url, directory = self._account
        net = self._network(key)
        net.account = messages.RegistrationResource(body=messages.Registration(), uri=account_url)
        return ClientV2(directory, net)

    def _load_or_register(self) -> tuple[PrivateKey, str, messages.Directory]:
        loaded = self._load_account()
        if loaded is None:
            # The key is sealed and recorded *before* the CA hears of it, so a crash between the
            # registration and its record cannot lose the account's key: the rerun registers
            # the same key again, and the CA answers with the same account (RFC 8555 7.3.1).
            # If another process recorded its key first, `create` keeps nothing: that one is used.
            self._accounts.create(self.directory_url, contact=self.contact_email, seal_key=self._seal_new_key)
            loaded = self._load_account()
            assert loaded is not None
        account, key = loaded
        net = self._network(key)
        directory = self._do("reading the ACME directory", lambda: ClientV2.get_directory(self.directory_url, net))
        if account.account_url:
            return key, account.account_url, directory
        client = ClientV2(directory, net)
        eab = None
        if self.eab is not None:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=net.key.public_key(), kid=self.eab.kid, hmac_key=self.eab.hmac_key,
                directory=directory, hmac_alg=self.eab.hmac_alg)
        elif client.external_account_required():
            raise PermanentError(f"the CA at {self.directory_url} requires External Account Binding; "
                                 "configure the kid and HMAC key the CA gave you.", Reason.BAD_INPUT)
        reg = messages.NewRegistration.from_data(email=self.contact_email, terms_of_service_agreed=True,
                                                 external_account_binding=eab)
        def register() -> str:
            try:
                return client.new_account(reg).uri
            except acme_errors.ConflictError as exc:  # this key already has an account: it is ours
                return exc.location

        uri = self._do("registering the ACME account", register)
        self._accounts.set_account_url(self.directory_url, uri)
        log.info("registered ACME account %s at %s", uri, self.directory_url)
        return key, uri, directory

    def _seal_new_key(self, keys) -> str:
        """Generate an account key and seal it into `keys` (the store's transaction); its id."""
        key_id, _fp = store_key(generate_key(self.account_key_algorithm), vault=self._vault, repo=keys,
                                purpose=ACCOUNT_PURPOSE)
        return key_id

    def account_url(self) -> str:
        """The account URL at this CA (registers the account on first use)."""
        return self._client().net.account.uri

    # ------------------------------------------------------------------ Issuer
    def submit(self, application: Application) -> str:
        """Check DV-4 and CAA (DV-7), then place a new order; returns the order URL.

        Raises:
            RefusedError: WILDCARD_FILE_VALIDATION or CAA_FORBIDS — no order was placed.
            TransientError / PermanentError: the CA's answer.
        """
        names = list(application.names)
        refusal = check_validation_method(names, application.method)
        if refusal is None and self.caa_check is not None:
            refusal = self.caa_check(names)
        if refusal is not None:
            raise RefusedError(refusal)
        client = self._client()
        replaces = self._replaces(client, application.replaces_pem)
        orderr = self._do("placing the ACME order", lambda: self._new_order(client, application.csr_pem, replaces))
        self._check_identifiers(orderr.body, application, orderr.authorizations or ())
        log.info("ACME order %s placed for %s", orderr.uri, ", ".join(names))
        # The order and its authorizations as just read: `advance` in this process starts from
        # them instead of reading them again (another process simply reads them by URL).
        self._fresh[orderr.uri] = orderr
        return orderr.uri

    def _replaces(self, client: ClientV2, leaf_pem: str) -> str | None:
        """ARI's certificate identifier of the certificate a new order replaces (RFC 9773 section
        5), when the CA serves ARI and the old certificate is known."""
        if not leaf_pem or not _renewal_info_url(client.directory):
            return None
        return ari_cert_id(leaf_pem)

    def _new_order(self, client: ClientV2, csr_pem: bytes, replaces: str | None) -> messages.OrderResource:
        """newOrder with the configured profile and ARI's `replaces` (the library's `new_order`
        has no `replaces`); authorizations are read as the library does."""
        if replaces is None:
            return client.new_order(csr_pem, profile=self.profile)
        from acme import crypto_util
        from cryptography import x509 as _x509

        csr = _x509.load_pem_x509_csr(csr_pem)
        dns_names, ips = crypto_util.get_identifiers_from_x509(csr.subject, csr.extensions)
        identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in dns_names]
        identifiers += [messages.Identifier(typ=messages.IDENTIFIER_IP, value=str(ip)) for ip in ips]
        order = _NewOrderReplacing(identifiers=identifiers, profile=self.profile, replaces=replaces)
        response = acme_private.post(client, client.directory["newOrder"], order)
        body = messages.Order.from_json(response.json())
        authzrs = [acme_private.authorization(client, url) for url in body.authorizations]
        return messages.OrderResource(body=body, uri=response.headers.get("Location"), authorizations=authzrs,
                                      csr_pem=csr_pem)

    @staticmethod
    def _check_identifiers(body: messages.Order, application: Application,
                           authzrs: Sequence[messages.AuthorizationResource] = ()) -> None:
        """The order and its authorizations name only the certificate's names: a CA (or anyone
        between) that asks to validate another name gets no answer from us.

        Raises:
            PermanentError: an identifier that is not one of the application's names.
        """
        wanted = {n.lower().removeprefix("*.") for n in application.names}
        asked = [i.value for i in body.identifiers or ()]
        asked += [a.body.identifier.value for a in authzrs]
        stray = sorted({v for v in asked if v.lower().removeprefix("*.") not in wanted})
        if stray:
            raise PermanentError(f"the CA's order asks to validate {', '.join(stray)}, which the certificate does not "
                                 f"name ({', '.join(application.names)}); nothing was answered. Check the CA's "
                                 "directory URL and resubmit.", Reason.CA_REJECTED)

    def _order(self, ref: str) -> tuple[messages.Order, requests.Response]:
        client = self._client()
        response = self._do(f"reading order {ref}", lambda: post_as_get(client, ref))
        what = f"reading order {ref}"
        return _parse(messages.Order, _json(response, what), what), response

    def _authz(self, url: str) -> tuple[messages.AuthorizationResource, requests.Response]:
        client = self._client()
        what = f"reading authorization {url}"
        response = self._do(what, lambda: post_as_get(client, url))
        return messages.AuthorizationResource(body=_parse(messages.Authorization, _json(response, what), what),
                                              uri=url), response

    def poll(self, ref: str) -> PollResult:
        """The order's state (no side effect); an invalid order carries the CA's detail."""
        body, response = self._order(ref)
        status = _STATUS.get(body.status, OrderStatus.PENDING)
        detail = ""
        if status is OrderStatus.INVALID:
            detail = self._failure_detail(body)
        return PollResult(status, detail, retry_after=_retry_after_seconds(response))

    def _failure_detail(self, body: messages.Order) -> str:
        if body.error is not None:
            return problem_text(body.error)
        problems = []
        for url in body.authorizations or ():
            authzr, _ = self._authz(url)
            for challb in authzr.body.challenges:
                if challb.error is not None:
                    problems.append(f"{authzr.body.identifier.value}: {problem_text(challb.error)}")
        return "; ".join(problems) or "the CA marked the order invalid without detail"

    def _wait(self, what: str, fetch: Callable[[], tuple[T, requests.Response]],
              done: Callable[[T], bool], deadline: float) -> T:
        """Poll `fetch` until `done`: first delay short, ×1.5 up to the cap, never under Retry-After."""
        delay = self.first_delay
        while True:
            value, response = fetch()
            if done(value):
                return value
            now = self._monotonic()
            if now >= deadline:
                raise TransientError(f"{what} is still not done after {self.validation_timeout:.0f}s; "
                                     "the next run resumes the same order")
            pause = max(delay, _retry_after_seconds(response) or 0.0)
            self._sleep(min(pause, deadline - now))
            delay = min(delay * 1.5, self.max_delay)

    def advance(self, ref: str, application: Application) -> PollResult:
        """Drive the order as far as it goes: validation, finalization, issuance.

        Returns:
            VALID when the certificate can be fetched, INVALID with the CA's detail (CA-2).
        Raises:
            RefusedError: a record is not visible at the authoritative servers (DV-7), or no
                configured DNS provider holds a name's zone.
            TransientError: rate limits, timeouts (rerun: it resumes this order).
        """
        deadline = self._monotonic() + self.validation_timeout
        fresh = self._fresh.pop(ref, None)
        body, authzrs = (fresh.body, fresh.authorizations) if fresh is not None else (self._order(ref)[0], None)
        if body.status == messages.STATUS_PENDING:
            body = self._validate(ref, body, application, deadline, authzrs)
        if body.status == messages.STATUS_READY:
            body = self._finalize(ref, body, application) or body
        done = (messages.STATUS_VALID, messages.STATUS_INVALID)
        if body.status not in done:
            body = self._wait(f"order {ref}", lambda: self._order(ref), lambda b: b.status in done, deadline)
        if body.status == messages.STATUS_INVALID:
            return PollResult(OrderStatus.INVALID, self._failure_detail(body))
        self._valid[ref] = body
        return PollResult(OrderStatus.VALID)

    def _finalize(self, ref: str, body: messages.Order, application: Application) -> messages.Order | None:
        """Send the CSR; returns the order as the CA answered (None when another run finalized it)."""
        client = self._client()
        orderr = messages.OrderResource(body=body, uri=ref, csr_pem=application.csr_pem, authorizations=[])
        try:
            return self._do(f"finalizing order {ref}", lambda: client.begin_finalization(orderr)).body
        except PermanentError as exc:
            # Another run finalized it meanwhile: the order is processing or valid already.
            if "orderNotReady" not in exc.message:
                raise
            return None

    def _challenge(self, authzr: messages.AuthorizationResource, method: ValidationMethod) -> messages.ChallengeBody:
        http = (ValidationMethod.HTTP_FILE, ValidationMethod.HTTP_MANUAL)
        wanted = challenges.HTTP01 if method in http else challenges.DNS01
        for challb in authzr.body.challenges:
            if isinstance(challb.chall, wanted):
                return challb
        raise PermanentError(f"the CA offers no {wanted.typ} challenge for {authzr.body.identifier.value}; "
                             "choose another validation method.", Reason.CA_REJECTED)

    def _validate(self, ref: str, body: messages.Order, application: Application, deadline: float,
                  authzrs: list[messages.AuthorizationResource] | None = None) -> messages.Order:
        """Answer every pending authorization, wait until the order leaves `pending`, return it.

        Records are removed afterwards whatever happens.
        """
        client = self._client()
        jwk = client.net.key
        if authzrs is None:
            authzrs = [self._authz(url)[0] for url in body.authorizations]
        check_authorizations(authzrs, application.names, self.directory_url)
        self._check_identifiers(body, application)
        pending = [a for a in authzrs if a.body.status == messages.STATUS_PENDING]
        cleanups: list[Callable[[], None]] = []
        try:
            answers: list[tuple[messages.ChallengeBody, Any]] = []
            visible: list[tuple[str, str]] = []
            manual: list[ManualFile] = []
            for authzr in pending:
                challb = self._challenge(authzr, application.method)
                domain = authzr.body.identifier.value
                response, validation = challb.response_and_validation(jwk)
                if isinstance(challb.chall, challenges.DNS01):
                    fqdn = challb.chall.validation_domain_name(domain)
                    provider = provider_for(fqdn, self.dns_providers) or self.manual_dns
                    if provider is None:
                        raise RefusedError(Refusal(
                            Reason.DNS_NOT_WRITABLE,
                            f"no configured DNS provider holds the zone of {fqdn}; configure one for it, "
                            "or add the TXT record by hand (manual DNS validation).", "DV-2"))
                    provider.present(fqdn, validation)
                    cleanups.append(lambda p=provider, f=fqdn, v=validation: p.cleanup(f, v))
                    # A delegation (PL-5) serves the record at its CNAME's target: check it there.
                    record_name = getattr(provider, "record_name", None)
                    visible.append((record_name(fqdn) if record_name else fqdn, validation))
                elif application.method is ValidationMethod.HTTP_MANUAL:
                    # DV-3 by a person: nothing is written; the file must be served before the CA is told.
                    manual.append(ManualFile(domain, challb.chall.encode("token"), validation, self.http01_port))
                else:
                    if self.http01 is None:
                        raise PermanentError("HTTP-01 validation needs a webroot responder; configure one "
                                             "or validate by DNS.", Reason.BAD_INPUT)
                    token = challb.chall.encode("token")
                    self.http01.present(token, validation)
                    cleanups.append(lambda t=token: self.http01.cleanup(t))
                answers.append((challb, response))
            missing = [f for f in manual if not file_served(f, host=self.http01_host)]
            if missing:
                raise ManualFileRequired(missing)
            # DV-7: the CA is told to validate only once every record is served by every
            # authoritative server, so its first lookup succeeds.
            if self.wait_visible is not None:
                for fqdn, value in visible:
                    self.wait_visible(fqdn, value)
            for challb, response in answers:
                if challb.status == messages.STATUS_PENDING:
                    self._do(f"answering the challenge {challb.uri}",
                             lambda c=challb, r=response: client.answer_challenge(c, r))
            # One request per poll whatever the number of names: the order leaves `pending` once
            # every authorization is valid (ready) or one failed (invalid), RFC 8555 section 7.1.6.
            return self._wait(f"validation of order {ref}", lambda: self._order(ref),
                              lambda b: b.status != messages.STATUS_PENDING, deadline)
        finally:
            for cleanup in cleanups:
                try:
                    cleanup()
                except Exception as exc:  # noqa: BLE001 - a leftover record must not hide the outcome
                    log.warning("could not remove a challenge record (%s): %s", type(exc).__name__, exc)

    def fetch_chain(self, ref: str) -> IssuedChain:
        """Download the issued full chain (leaf first, then intermediates).

        Raises:
            PermanentError: the order is not valid (no certificate to fetch).
        """
        body = self._valid.pop(ref, None) or self._order(ref)[0]
        if body.status != messages.STATUS_VALID or not body.certificate:
            raise PermanentError(f"order {ref} is {body.status}: no certificate to fetch yet; "
                                 "advance the application first.")
        client = self._client()
        response = self._do("downloading the certificate", lambda: post_as_get(client, body.certificate))
        if len(response.content or b"") > MAX_HTTP_BODY_BYTES:
            raise TransientError(f"the CA's certificate at {body.certificate} is more than "
                                 f"{MAX_HTTP_BODY_BYTES} bytes; retry later")
        pems = split_pem_chain(response.text)
        if not pems:
            raise TransientError(f"the CA returned no certificate at {body.certificate}; retry")
        if self.preferred_chain:
            pems = self._preferred(client, response, pems)
        return IssuedChain(leaf_pem=pems[0], chain_pems=tuple(pems[1:]))

    def _preferred(self, client: ClientV2, response: requests.Response, default: list[str]) -> list[str]:
        """The chain whose topmost certificate's issuer (or subject) common name is the preferred
        one, among the default and the CA's alternates (Link rel="alternate"); else the default."""
        from cryptography import x509 as _x509
        from cryptography.x509.oid import NameOID

        def matches(pems: list[str]) -> bool:
            top = _x509.load_pem_x509_certificate(pems[-1].encode())
            names = {a.value for n in (top.issuer, top.subject) for a in n.get_attributes_for_oid(NameOID.COMMON_NAME)}
            return self.preferred_chain in names

        if matches(default):
            return default
        for url in acme_private.alternate_links(client, response):
            alt = split_pem_chain(self._do("downloading an alternative chain", lambda u=url: post_as_get(client, u)).text)
            if alt and matches(alt):
                return alt
        return default

    def revoke(self, leaf_pem: str, reason: str) -> None:
        """Revoke `leaf_pem` at the CA (RFC 8555 section 7.6), signed by this account.

        Raises:
            BadInputError: an unknown reason name.
            PermanentError: the CA refused (e.g. alreadyRevoked, unauthorized).
            TransientError: the CA could not be reached.
        """
        from cryptography import x509 as _x509

        from certpilot.adapters.issuers.base import REVOCATION_REASONS

        if reason not in REVOCATION_REASONS:
            raise BadInputError(f"unknown revocation reason {reason!r}; use one of {', '.join(REVOCATION_REASONS)}")
        client = self._client()
        cert = _x509.load_pem_x509_certificate(leaf_pem.encode())
        self._do("revoking the certificate", lambda: client.revoke(cert, REVOCATION_REASONS[reason]))
        log.info("revoked serial %x at %s (%s)", cert.serial_number, self.directory_url, reason)

    def renewal_window(self, leaf_pem: str):
        """ARI (RFC 9773): the CA's suggested renewal window for `leaf_pem`, and the seconds until
        it should be asked again (its Retry-After, else six hours).

        Returns:
            (`RenewalWindow`, seconds), or (None, six hours) when the directory has no renewalInfo.

        Raises:
            TransientError: the CA could not be reached or answered an error.
        """
        from certpilot.core.issuers import RenewalWindow

        default_wait = 6 * 3600.0
        client = self._client()
        base = _renewal_info_url(client.directory)
        if not base:
            return None, default_wait
        url = base.rstrip("/") + "/" + ari_cert_id(leaf_pem)
        net = client.net
        response = self._do("reading renewal information", lambda: net.get(url, content_type="application/json"))
        info = messages.RenewalInfo.from_json(response.json())
        window = info.suggested_window
        start, end = _aware(window.start), _aware(window.end)
        explanation = (response.json() or {}).get("explanationURL", "")
        return RenewalWindow(start, end, explanation), _retry_after_seconds(response) or default_wait

    def fingerprint_of_account(self) -> str:
        """The account key's public fingerprint (for operators comparing accounts)."""
        return public_fingerprint(self._client().net.key.key)
