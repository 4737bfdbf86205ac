"""A local emulator of Alibaba Cloud CAS (2020-04-07) and AliDNS (2015-01-09) for tests.

Run it as ``python -m tests.servers.alibaba_emulator --port P --dns-port D --tls-port T
--access-key-id ID --workdir DIR`` with the AccessKey secret in the environment variable
``ALIBABA_EMULATOR_ACCESS_KEY_SECRET`` (never on the command line, never logged). The test-side
launcher is `tests.servers.alibaba`.

One process serves:

- **the OpenAPI** (HTTP on 127.0.0.1:P, path ``/``): what the official SDK sends with
  ``Config(endpoint="127.0.0.1:P", protocol="http")`` — RPC style, ACS3-HMAC-SHA256 ("v3")
  signature, parameters in the query string (a form body is read too). Each request's signature
  is recomputed independently (canonical request → string to sign → HMAC-SHA256) and compared;
  an unknown AccessKey id answers 404 ``InvalidAccessKeyId.NotFound``, a wrong signature 400
  ``SignatureDoesNotMatch``, a reused nonce 400 ``SignatureNonceUsed``, an ``x-acs-date`` more
  than 15 minutes away 400 ``InvalidTimeStamp.Expired``, a body that does not hash to
  ``x-acs-content-sha256`` 400 ``ContentSHA256NotMatched``. Errors are JSON
  ``{"Code", "Message", "RequestId"}``; the products are routed on ``x-acs-version`` +
  ``x-acs-action``.
- **an authoritative DNS responder** (UDP+TCP on 127.0.0.1:D) for the AliDNS zones: TXT as
  written through the API, A → 127.0.0.1 for every name of a zone (unless an A record exists),
  so an ACME CA (Pebble ``-dnsserver 127.0.0.1:D``) validates DNS-01 records written through
  AliDNS. Names in no zone answer REFUSED.
- **a TLS listener** (127.0.0.1:T) standing for every cloud resource: by SNI it picks the
  resource whose Domain matches (exact, or a ``*.`` wildcard) and serves that resource's current
  certificate (leaf + intermediate), then answers ``HTTP/1.1 200 OK`` and closes.

Choices where the real service is not documented precisely (kept to the SDK's models):

- **DNS validation record.** ``RecordDomain`` is the host record relative to the zone, like the
  real CAS: ``_dnsauth`` for a zone apex, ``_dnsauth.www`` for ``www.example.com`` in zone
  ``example.com``. The zone is the longest AliDNS zone of the emulator holding the name, else the
  last two labels. A wildcard ``*.x`` is validated at ``x``. For a multi-name order the first
  name carries the record. ``RecordType`` is ``TXT``, ``RecordValue`` a random token.
  ``ValidateType=FILE`` gives ``Uri``/``Content``; the emulator cannot fetch it, so the admin
  API marks such an order validated (``POST /_emulator/orders/<id>/validate``).
- **Order states.** ``domain_verify`` until the TXT value is in the emulator's own zone state
  (checked on each ``DescribeCertificateState``); the call that first sees it answers
  ``process``; the order is issued on the first call at least ``review_seconds`` after that.
  ``verify_fail`` after an admin rejection (the model has no field for its message: the admin
  order view has it). A cancelled (CancelOrderRequest) or deleted (DeleteCertificateRequest)
  order answers 400 ``OrderNotFound`` afterwards and is no longer listed.
- **Issuance.** A real X.509 certificate for the CSR's key (or for a key the emulator makes when
  no CSR was given — then ``PrivateKey`` carries it), signed by the emulator's root →
  intermediate, SANs = the order's names, valid 365 days plus, for a renewal
  (RenewCertificateOrderForPackageRequest), the old certificate's remaining time capped at 30
  days.
- **Order statuses in lists** (``OrderType=CPACK``): CHECKING (domain_verify, process),
  CHECKED_FAIL, ISSUED, WILLEXPIRED (≤ 30 days left), EXPIRED. Certificates (``CERT``,
  ``UPLOAD``): ISSUED, WILLEXPIRED, EXPIRED.
- **Deployment jobs.** editing → (UpdateDeploymentJobStatus scheduling) scheduling → processing
  (from its ScheduleTime) → success | error, ``deploy_seconds`` after it started. A resource is
  switched only to a certificate whose key the emulator holds; otherwise, or when a failure was
  injected, the job ends ``error`` (its message is in the admin job view). With several CertIds
  each resource gets the one covering its Domain. CreateRollbackTask puts each resource back on
  its certificate before the job (with ``WorkerId``: that worker's resource only; the job runs one
  worker per resource, listed by ListWorkerResource: pending → processing → success | error →
  rollback_success); the job's ``Rollback`` becomes 1 and its Status ``rollback``.
  CreateDeploymentJob requires ``ContactIds`` (ListContact lists the account's one contact).
  Times of jobs and resources are epoch milliseconds as strings (the models type them ``str``).
  ``Data`` of UpdateDeploymentJobStatus/CreateRollbackTask is left out.
- **Throttling faults** answer with ``x-acs-retry-after`` (milliseconds, what the SDK's
  ``Utils.get_throttling_time_left`` reads, so it raises ``ThrottlingException``) and
  ``x-ratelimit-user-api`` headers.

State lives in memory behind one lock. The admin API under ``/_emulator/`` (JSON, unsigned) is
for tests: reset, packages, zones and records, seeded certificates and resources, order
rejection, timings, faults, deployment failures, the call log (action, parameters and the JSON
answer; the Authorization header is never stored and private keys are masked), the CA's root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SECRET_ENV = "ALIBABA_EMULATOR_ACCESS_KEY_SECRET"
CAS_VERSION = "2020-04-07"
DNS_VERSION = "2015-01-09"
DAY = dt.timedelta(days=1)
WILL_EXPIRE = dt.timedelta(days=30)
MASKED_PARAMS = frozenset({"Key", "SignPrivateKey", "EncryptPrivateKey", "PrivateKey"})


class ApiError(Exception):
    """An OpenAPI error answer."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def bad(code: str, message: str, status: int = 400) -> ApiError:
    return ApiError(status, code, message)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def parse_time(value: str | None, default: dt.datetime) -> dt.datetime:
    if not value:
        return default
    t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def names_of(cert_or_csr) -> list[str]:
    """CN first, then the SAN DNS names (deduplicated, lower case)."""
    out: list[str] = []
    for a in cert_or_csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        out.append(str(a.value).lower())
    try:
        san = cert_or_csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out += [n.lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    return list(dict.fromkeys(out))


def split_names(domain: str | None) -> list[str]:
    return list(dict.fromkeys(n.strip().lower().rstrip(".") for n in (domain or "").split(",") if n.strip()))


def covers(name: str, domain: str) -> bool:
    name, domain = name.lower().rstrip("."), domain.lower().rstrip(".")
    if name == domain:
        return True
    if name.startswith("*."):
        return domain.count(".") == name.count(".") and domain.endswith(name[1:])
    if domain.startswith("*."):
        return name.count(".") == domain.count(".") and name.endswith(domain[1:])
    return False


class CA:
    """The emulator's issuing hierarchy: root → intermediate → leaves."""

    def __init__(self) -> None:
        t = now()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certpilot emulator"),
                               x509.NameAttribute(NameOID.COMMON_NAME, "Alibaba Emulator Root CA")])
        self.root = self._ca_cert(root_name, root_name, self.root_key.public_key(), self.root_key, t, 1)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        inter_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certpilot emulator"),
                                x509.NameAttribute(NameOID.COMMON_NAME, "Alibaba Emulator DV CA")])
        self.inter = self._ca_cert(inter_name, root_name, self.inter_key.public_key(), self.root_key, t, 0)

    @staticmethod
    def _ca_cert(subject, issuer, public_key, signer, t, path_len) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(t - dt.timedelta(days=3650)).not_valid_after(t + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=path_len), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .sign(signer, hashes.SHA256()))

    def issue(self, names: list[str], public_key, not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                .issuer_name(self.inter.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()),
                               critical=False)
                .sign(self.inter_key, hashes.SHA256()))


def _new_key(algorithm: str = "EC"):
    if algorithm.upper().startswith("RSA"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _algorithm(cert: x509.Certificate) -> str:
    return "RSA" if isinstance(cert.public_key(), rsa.RSAPublicKey) else "ECC"


def _same_key(cert: x509.Certificate, key) -> bool:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)


# ============================================================================ state


class State:
    """Everything the emulator knows; every access holds `lock`."""

    def __init__(self, ca: CA, workdir: Path) -> None:
        self.ca, self.workdir = ca, workdir
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.packages: dict[str, dict] = {}
            self.orders: dict[int, dict] = {}
            self.certs: dict[int, dict] = {}
            self.resources: dict[int, dict] = {}
            self.jobs: dict[int, dict] = {}
            self.zones: dict[str, dict] = {}
            self.records: dict[str, dict] = {}
            self.faults: list[dict] = []
            self.deploy_failures: list[dict] = []
            self.calls: list[dict] = []
            self.nonces: set[str] = set()
            self.review_seconds = 0.0
            self.deploy_seconds = 0.0
            self._ids = itertools.count(10_000_001)
            self._record_ids = itertools.count(880_000_000_000_001)
            self.tls_contexts: dict[int, ssl.SSLContext] = {}

    def next_id(self) -> int:
        return next(self._ids)

    # ------------------------------------------------------------ certificates
    def add_cert(self, cert: x509.Certificate, chain: list[x509.Certificate], key_text: str | None, *, name: str,
                 source: str, order_id: int | None = None, product_code: str = "", root_brand: str = "",
                 cert_type: str = "DV", client_token: str | None = None) -> dict:
        cid = self.next_id()
        entry = {
            "id": cid, "name": name or f"cert-{cid}", "cert": cert, "chain": chain, "key": key_text,
            "source": source, "order_id": order_id, "product_code": product_code,
            "root_brand": root_brand or ("Emulator" if source == "buy" else ""),
            "cert_type": cert_type, "client_token": client_token,
            "instance_id": f"cas-{'upload' if source == 'upload' else 'ivauto'}-{cid}",
            "resource_id": f"{cid}-cn-hangzhou", "created": now(),
        }
        self.certs[cid] = entry
        return entry

    def cert_status(self, entry: dict, t: dt.datetime) -> str:
        not_after = entry["cert"].not_valid_after_utc
        if not_after <= t:
            return "EXPIRED"
        return "WILLEXPIRED" if not_after - t <= WILL_EXPIRE else "ISSUED"

    # ------------------------------------------------------------ DNS zone state
    def zone_of(self, fqdn: str) -> str | None:
        name = fqdn.lower().rstrip(".")
        best = [z for z in self.zones if name == z or name.endswith("." + z)]
        return max(best, key=len) if best else None

    def fqdn_of(self, record: dict) -> str:
        return record["DomainName"] if record["RR"] == "@" else f"{record['RR']}.{record['DomainName']}"

    def txt_values(self, fqdn: str) -> list[str]:
        name = fqdn.lower().rstrip(".")
        return [r["Value"] for r in self.records.values() if r["Type"] == "TXT" and self.fqdn_of(r).lower() == name]

    # ------------------------------------------------------------ deployments
    def advance_jobs(self) -> None:
        """Start and finish the deployment jobs whose time has come (lazily, on every read)."""
        t = now()
        for job in self.jobs.values():
            if job["status"] == "scheduling" and t >= job["start_at"]:
                job["status"], job["start_time"] = "processing", t
                for worker in job["workers"].values():
                    worker["status"] = "processing"
            if job["status"] == "processing" and t >= job["start_time"] + dt.timedelta(seconds=self.deploy_seconds):
                self._finish_job(job, t)

    def _finish_job(self, job: dict, t: dt.datetime) -> None:
        errors: list[str] = []
        certs = [self.certs[c] for c in job["cert_ids"] if c in self.certs]
        for rid in job["resource_ids"]:
            res = self.resources.get(rid)
            if res is None:
                errors.append(f"resource {rid} no longer exists")
                continue
            worker = job["workers"][rid]
            worker["status"] = "error"  # until the resource is switched below
            injected = next((f for f in self.deploy_failures
                             if f.get("job_id") == job["id"] or f.get("resource_id") == rid), None)
            if injected is not None:
                errors.append(f"resource {rid}: {injected.get('message') or 'deployment failed'}")
                continue
            cert = next((c for c in certs if any(covers(n, res["domain"]) for n in names_of(c["cert"]))),
                        certs[0] if len(certs) == 1 else None)
            if cert is None:
                errors.append(f"resource {rid} ({res['domain']}): no certificate of the job covers its domain")
                continue
            if not cert["key"]:
                errors.append(f"resource {rid}: certificate {cert['id']} has no private key in CAS "
                              "(upload it with its key to deploy it)")
                continue
            job["previous"].setdefault(rid, res["cert_id"])
            res["cert_id"], res["modified"] = cert["id"], t
            worker["status"] = "success"
        job["status"] = "error" if errors else "success"
        job["message"] = "; ".join(errors)
        job["end_time"] = job["modified"] = t


# ============================================================================ signature


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    items = sorted(pairs, key=lambda kv: kv[0])
    return "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in items)


def verify_signature(method: str, path: str, raw_query: str, headers, body: bytes,
                     keys: dict[str, str]) -> None:
    """Check an ACS3-HMAC-SHA256 request against `keys` (AccessKey id → secret); raise ApiError."""
    auth = headers.get("Authorization") or ""
    m = re.fullmatch(r"ACS3-HMAC-SHA256\s+Credential=([^,]+),SignedHeaders=([^,]*),Signature=([0-9a-fA-F]+)",
                     auth.strip())
    if not m:
        raise bad("MissingAuthorization" if not auth else "IncompleteSignature",
                  "the request carries no valid ACS3-HMAC-SHA256 Authorization header")
    ak, signed, signature = m.group(1), m.group(2), m.group(3).lower()
    secret = keys.get(ak)
    if secret is None:
        raise ApiError(404, "InvalidAccessKeyId.NotFound", f"Specified access key is not found: {ak}")
    payload_hash = (headers.get("x-acs-content-sha256") or "").lower()
    if payload_hash != hashlib.sha256(body).hexdigest():
        raise bad("ContentSHA256NotMatched", "x-acs-content-sha256 does not match the request body")
    signed_names = [h for h in signed.split(";") if h]
    if signed_names != sorted(signed_names) or not {"host", "x-acs-date", "x-acs-signature-nonce"} <= set(signed_names):
        raise bad("IncompleteSignature", "SignedHeaders must be sorted and include host, x-acs-date, "
                  "x-acs-signature-nonce")
    canonical_headers = ""
    for name in signed_names:
        values = headers.get_all(name) or []
        canonical_headers += f"{name}:{','.join(sorted(v.strip() for v in values))}\n"
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    canonical = "\n".join([method, path or "/", _canonical_query(pairs), canonical_headers, signed, payload_hash])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(canonical.encode()).hexdigest()
    expected = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise bad("SignatureDoesNotMatch", "Specified signature does not match our calculation. "
                  f"server string to sign is:{string_to_sign}")


# ============================================================================ the API


class Api:
    """The CAS and AliDNS actions over `State`."""

    def __init__(self, state: State, keys: dict[str, str]) -> None:
        self.s, self.keys = state, keys

    # ------------------------------------------------------------ dispatch
    def dispatch(self, version: str, action: str, p: dict[str, str]) -> dict:
        table = {CAS_VERSION: "cas_", DNS_VERSION: "dns_"}
        prefix = table.get(version)
        fn = getattr(self, prefix + action, None) if prefix else None
        if fn is None:
            raise ApiError(404, "InvalidAction.NotFound",
                           f"Specified api is not found, please check your url and method: {action} ({version})")
        with self.s.lock:
            body = fn(p)
        return body

    @staticmethod
    def _int(p: dict, key: str, default: int | None = None, *, required: bool = False) -> int | None:
        value = p.get(key)
        if value in (None, ""):
            if required:
                raise bad("MissingParameter", f"The input parameter {key} that is mandatory for processing this "
                          "request is not supplied.")
            return default
        try:
            return int(value)
        except ValueError:
            raise bad("InvalidParameter", f"{key} must be an integer, got {value!r}") from None

    @staticmethod
    def _req(p: dict, key: str) -> str:
        value = p.get(key)
        if not value:
            raise bad("MissingParameter", f"The input parameter {key} that is mandatory for processing this request "
                      "is not supplied.")
        return value

    @staticmethod
    def _page(items: list, p: dict, page_key: str, size_key: str, default_size: int = 50) -> tuple[list, int, int]:
        page = max(Api._int(p, page_key, 1) or 1, 1)
        size = max(Api._int(p, size_key, default_size) or default_size, 1)
        return items[(page - 1) * size: page * size], page, size

    # ------------------------------------------------------------ CAS: packages and orders
    def cas_DescribePackageState(self, p: dict) -> dict:
        code = self._req(p, "ProductCode")
        pkg = self.s.packages.get(code)
        if pkg is None:
            raise bad("InvalidProductCode", f"no certificate package with product code {code} in this account")
        return {"ProductCode": code, "TotalCount": pkg["total"], "UsedCount": pkg["used"],
                "IssuedCount": pkg["issued"]}

    def _order_names(self, p: dict, max_names: int) -> tuple[list[str], str | None, Any]:
        """(names, csr_pem, public key or None) of a new application, checked."""
        csr_text = p.get("Csr") or None
        names = split_names(p.get("Domain"))
        public_key = None
        if csr_text:
            try:
                csr = x509.load_pem_x509_csr(csr_text.encode())
            except ValueError:
                raise bad("InvalidCsr", "the CSR is not a valid PEM certificate signing request") from None
            if not csr.is_signature_valid:
                raise bad("InvalidCsr", "the CSR's signature does not verify")
            csr_names = names_of(csr)
            if not csr_names:
                raise bad("InvalidCsr", "the CSR holds no domain name (no CN, no DNS SAN)")
            if names and set(csr_names) != set(names):
                raise bad("CsrDomainMismatch", f"the CSR is for {', '.join(csr_names)} but Domain is "
                          f"{', '.join(names)}: they must name the same domains")
            names = names or csr_names
            public_key = csr.public_key()
        if not names:
            raise bad("MissingParameter", "Domain is required when no CSR is given")
        if len(names) > max_names:
            raise bad("DomainCountExceeded", f"this product allows {max_names} domain(s) per certificate; "
                      f"{len(names)} were given ({', '.join(names)})")
        return names, csr_text, public_key

    def _new_order(self, product_code: str, names: list[str], csr_text: str | None, public_key,
                   validate_type: str, applicant: dict, renew_of: int | None = None) -> dict:
        pkg = self.s.packages.get(product_code)
        if pkg is None:
            raise bad("InvalidProductCode", f"no certificate package with product code {product_code} in this account")
        if pkg["used"] >= pkg["total"]:
            raise bad("NoAvailableQuota", f"the package {product_code} has no quota left "
                      f"({pkg['used']} of {pkg['total']} used); buy more or cancel an application")
        if validate_type not in ("DNS", "FILE"):
            raise bad("InvalidValidateType", f"ValidateType must be DNS or FILE, not {validate_type!r}")
        key_text = None
        if public_key is None:
            key = _new_key()
            public_key, key_text = key.public_key(), key_pem(key)
        oid = self.s.next_id()
        order = {
            "id": oid, "product_code": product_code, "names": names, "csr": csr_text, "public_key": public_key,
            "key": key_text, "validate_type": validate_type, "status": "domain_verify",
            "token": secrets.token_hex(16), "validated_at": None, "cert_id": None, "renew_of": renew_of,
            "message": "", "applicant": applicant, "created": now(), "instance_id": f"cas-ivauto-{oid}",
        }
        pkg["used"] += 1
        self.s.orders[oid] = order
        return order

    def cas_CreateCertificateForPackageRequest(self, p: dict) -> dict:
        code = self._req(p, "ProductCode")
        pkg = self.s.packages.get(code)
        names, csr_text, public_key = self._order_names(p, pkg["max_domains"] if pkg else 1)
        applicant = {k: p.get(k, "") for k in ("Username", "Phone", "Email", "CompanyName")}
        order = self._new_order(code, names, csr_text, public_key, p.get("ValidateType") or "DNS", applicant)
        return {"OrderId": order["id"]}

    def cas_RenewCertificateOrderForPackageRequest(self, p: dict) -> dict:
        old = self._order(self._int(p, "OrderId", required=True))
        if old["status"] != "certificate":
            raise bad("OrderNotIssued", f"order {old['id']} is not issued ({old['status']}): only an issued "
                      "certificate can be renewed")
        pkg = self.s.packages[old["product_code"]]
        q = dict(p, Domain=",".join(old["names"]))
        names, csr_text, public_key = self._order_names(q, pkg["max_domains"])
        order = self._new_order(old["product_code"], names, csr_text, public_key, old["validate_type"],
                                old["applicant"], renew_of=old["id"])
        return {"OrderId": order["id"]}

    def _order(self, oid: int | None) -> dict:
        order = self.s.orders.get(oid or 0)
        if order is None or order["status"] == "cancelled":
            raise bad("OrderNotFound", f"no certificate order {oid} in this account")
        return order

    def record_domain(self, name: str) -> tuple[str, str]:
        """(host record relative to the zone, zone) of the DNS validation record of `name`."""
        base = name[2:] if name.startswith("*.") else name
        zone = self.s.zone_of(base) or ".".join(base.split(".")[-2:])
        rel = base[: -len(zone)].rstrip(".")
        return ("_dnsauth." + rel if rel else "_dnsauth"), zone

    def _validated(self, order: dict) -> bool:
        if order["validate_type"] != "DNS":
            return False  # FILE: marked by the admin API
        rr, zone = self.record_domain(order["names"][0])
        return order["token"] in self.s.txt_values(f"{rr}.{zone}")

    def cas_DescribeCertificateState(self, p: dict) -> dict:
        order = self._order(self._int(p, "OrderId", required=True))
        t = now()
        if order["status"] == "domain_verify" and self._validated(order):
            order["status"], order["validated_at"] = "process", t
            return {"Type": "process"}
        if order["status"] == "process" and t >= order["validated_at"] + dt.timedelta(seconds=self.s.review_seconds):
            self._issue(order, t)
        if order["status"] == "domain_verify":
            out = {"Type": "domain_verify", "ValidateType": order["validate_type"], "Domain": order["names"][0]}
            if order["validate_type"] == "DNS":
                rr, _ = self.record_domain(order["names"][0])
                out.update(RecordDomain=rr, RecordType="TXT", RecordValue=order["token"])
            else:
                out.update(Uri="/.well-known/pki-validation/fileauth.txt", Content=order["token"])
            return out
        if order["status"] == "certificate":
            cert = self.s.certs[order["cert_id"]]
            return {"Type": "certificate", "Certificate": pem(cert["cert"]) + "".join(pem(c) for c in cert["chain"]),
                    "PrivateKey": order["key"] or "", "CertId": str(cert["id"]), "Domain": order["names"][0]}
        return {"Type": order["status"]}  # process, verify_fail

    def _issue(self, order: dict, t: dt.datetime) -> None:
        not_after = t + 365 * DAY
        if order["renew_of"]:
            old = self.s.orders.get(order["renew_of"])
            if old and old.get("cert_id") in self.s.certs:
                left = self.s.certs[old["cert_id"]]["cert"].not_valid_after_utc - t
                not_after += max(dt.timedelta(0), min(left, WILL_EXPIRE))
        leaf = self.s.ca.issue(order["names"], order["public_key"], t, not_after)
        pkg = self.s.packages[order["product_code"]]
        entry = self.s.add_cert(leaf, [self.s.ca.inter], order["key"], name=f"cert-{order['names'][0]}",
                                source="buy", order_id=order["id"], product_code=order["product_code"],
                                root_brand=pkg["brand"], cert_type=pkg["cert_type"])
        pkg["issued"] += 1
        order["status"], order["cert_id"] = "certificate", entry["id"]

    def _cancel(self, p: dict) -> dict:
        order = self._order(self._int(p, "OrderId", required=True))
        if order["status"] == "certificate":
            raise bad("OrderIssued", f"order {order['id']} is issued: an issued certificate cannot be cancelled")
        order["status"] = "cancelled"
        self.s.packages[order["product_code"]]["used"] -= 1
        return {}

    def cas_DeleteCertificateRequest(self, p: dict) -> dict:
        return self._cancel(p)

    def cas_CancelOrderRequest(self, p: dict) -> dict:
        return self._cancel(p)

    # ------------------------------------------------------------ CAS: certificates
    def _cert_item(self, c: dict, t: dt.datetime) -> dict:
        cert: x509.Certificate = c["cert"]
        names = names_of(cert)
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        item = {
            "CertificateId": c["id"], "Name": c["name"], "Domain": names[0] if names else "",
            "CommonName": names[0] if names else "", "Sans": ",".join(names),
            "CertStartTime": ms(nb), "CertEndTime": ms(na), "StartDate": nb.strftime("%Y-%m-%d"),
            "EndDate": na.strftime("%Y-%m-%d"), "Upload": c["source"] == "upload", "SourceType": c["source"],
            "Status": self.s.cert_status(c, t), "Expired": na <= t,
            "Fingerprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - what CAS shows
            "Sha2": cert.fingerprint(hashes.SHA256()).hex().upper(), "SerialNo": format(cert.serial_number, "x"),
            "Issuer": _cn(cert.issuer), "Algorithm": _algorithm(cert), "InstanceId": c["instance_id"],
            "CertType": c["cert_type"], "RootBrand": c["root_brand"],
        }
        if c["source"] == "buy":
            item.update(OrderId=c["order_id"] or 0, ProductCode=c["product_code"])
        return item

    def _order_item(self, o: dict, t: dt.datetime) -> dict:
        pkg = self.s.packages.get(o["product_code"], {})
        item = {"OrderId": o["id"], "InstanceId": o["instance_id"], "Domain": ",".join(o["names"]),
                "CommonName": o["names"][0], "Sans": ",".join(o["names"]), "ProductCode": o["product_code"],
                "ProductName": pkg.get("product_name", o["product_code"]), "CertType": pkg.get("cert_type", "DV"),
                "RootBrand": pkg.get("brand", ""), "DomainCount": len(o["names"]),
                "BuyDate": ms(o["created"]), "SourceType": "buy", "Upload": False,
                "Status": {"domain_verify": "CHECKING", "process": "CHECKING",
                           "verify_fail": "CHECKED_FAIL"}.get(o["status"], "ISSUED")}
        if o["status"] == "certificate":
            c = self.s.certs[o["cert_id"]]
            item.update(self._cert_item(c, t))
            item["OrderId"], item["InstanceId"] = o["id"], o["instance_id"]
        return item

    def cas_ListUserCertificateOrder(self, p: dict) -> dict:
        t = now()
        order_type = (p.get("OrderType") or "CPACK").upper()
        if order_type in ("CERT", "UPLOAD"):
            items = [self._cert_item(c, t) for c in self.s.certs.values()
                     if order_type == "CERT" or c["source"] == "upload"]
        elif order_type in ("CPACK", "BUY"):
            items = [self._order_item(o, t) for o in self.s.orders.values() if o["status"] != "cancelled"]
        else:
            raise bad("InvalidParameter.OrderType", f"OrderType must be CPACK, BUY, UPLOAD or CERT, not {order_type}")
        if p.get("Status"):
            items = [i for i in items if i["Status"] == p["Status"].upper()]
        if p.get("Keyword"):
            kw = p["Keyword"].lower()
            items = [i for i in items if kw in i.get("Sans", "").lower() or kw in i.get("Name", "").lower()
                     or kw in i.get("Domain", "").lower()]
        page, current, size = self._page(items, p, "CurrentPage", "ShowSize")
        return {"CertificateOrderList": page, "TotalCount": len(items), "CurrentPage": current, "ShowSize": size}

    def _cert(self, cid: int | None) -> dict:
        c = self.s.certs.get(cid or 0)
        if c is None:
            raise bad("CertNotFound", f"no certificate {cid} in this account")
        return c

    def cas_GetUserCertificateDetail(self, p: dict) -> dict:
        c = self._cert(self._int(p, "CertId", required=True))
        cert: x509.Certificate = c["cert"]
        t = now()
        names = names_of(cert)
        nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
        out = {
            "Id": c["id"], "Name": c["name"], "Sans": ",".join(names), "Common": names[0] if names else "",
            "NotBefore": ms(nb), "NotAfter": ms(na), "StartDate": nb.strftime("%Y-%m-%d"),
            "EndDate": na.strftime("%Y-%m-%d"), "BuyInAliyun": c["source"] == "buy",
            "Fingerprint": cert.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - what CAS shows
            "Sha2": cert.fingerprint(hashes.SHA256()).hex().upper(), "SerialNo": format(cert.serial_number, "x"),
            "Issuer": _cn(cert.issuer), "Algorithm": _algorithm(cert), "Expired": na <= t,
            "InstanceId": c["instance_id"],
            "CertChain": [{"CommonName": _cn(x.subject), "IssuerCommonName": _cn(x.issuer),
                           "NotBefore": ms(x.not_valid_before_utc), "NotAfter": ms(x.not_valid_after_utc),
                           "RemainDay": max((x.not_valid_after_utc - t).days, 0)} for x in [cert, *c["chain"]]],
        }
        if c["order_id"]:
            out["OrderId"] = c["order_id"]
        if str(p.get("CertFilter", "")).lower() != "true":
            out["Cert"] = pem(cert) + "".join(pem(x) for x in c["chain"])
            out["Key"] = c["key"] or ""
        return out

    def cas_UploadUserCertificate(self, p: dict) -> dict:
        token = p.get("ClientToken")
        if token:
            done = next((c for c in self.s.certs.values() if c["client_token"] == token), None)
            if done is not None:
                return {"CertId": done["id"], "ResourceId": done["resource_id"]}
        name = self._req(p, "Name")
        try:
            certs = x509.load_pem_x509_certificates(self._req(p, "Cert").encode())
        except ValueError:
            raise bad("InvalidCert", "Cert is not a PEM certificate (chain)") from None
        key_text = p.get("Key") or None
        if key_text:
            try:
                key = serialization.load_pem_private_key(key_text.encode(), password=None)
            except (ValueError, TypeError):
                raise bad("InvalidKey", "Key is not an unencrypted PEM private key") from None
            if not _same_key(certs[0], key):
                raise bad("CertKeyNotMatch", "the private key does not match the certificate's public key")
        if any(c["name"] == name for c in self.s.certs.values()):
            raise bad("NameRepeat", f"a certificate named {name!r} already exists")
        entry = self.s.add_cert(certs[0], certs[1:], key_text, name=name, source="upload", client_token=token,
                                root_brand=_cn(certs[0].issuer), cert_type="DV")
        return {"CertId": entry["id"], "ResourceId": entry["resource_id"]}

    # ------------------------------------------------------------ CAS: resources and deployment
    def _resource_item(self, r: dict) -> dict:
        c = self.s.certs.get(r["cert_id"])
        item = {"Id": r["id"], "CertId": r["cert_id"], "CloudProduct": r["cloud_product"], "Domain": r["domain"],
                "InstanceId": r["instance_id"], "ListenerId": r["listener_id"], "ListenerPort": str(r["listener_port"]),
                "RegionId": r["region_id"], "CloudRegion": r["region_id"], "CloudName": "aliyun", "Status": "Normal",
                "EnableHttps": 1, "UseSsl": 1, "DefaultResource": 1, "UserId": 1234567890,
                "GmtCreate": str(ms(r["created"])), "GmtModified": str(ms(r["modified"]))}
        if c is not None:
            item.update(CertName=c["name"], CertStartTime=str(ms(c["cert"].not_valid_before_utc)),
                        CertEndTime=str(ms(c["cert"].not_valid_after_utc)))
        return item

    def cas_ListCloudResources(self, p: dict) -> dict:
        self.s.advance_jobs()
        items = list(self.s.resources.values())
        if p.get("CertIds"):
            try:
                wanted = {int(x) for x in json.loads(p["CertIds"])}
            except (ValueError, TypeError):
                raise bad("InvalidParameter.CertIds", "CertIds must be a JSON list of certificate ids") from None
            items = [r for r in items if r["cert_id"] in wanted]
        if p.get("CloudProduct"):
            items = [r for r in items if r["cloud_product"].upper() == p["CloudProduct"].upper()]
        if p.get("Keyword"):
            items = [r for r in items if p["Keyword"].lower() in r["domain"].lower()
                     or p["Keyword"].lower() in r["instance_id"].lower()]
        page, current, size = self._page(items, p, "CurrentPage", "ShowSize", 20)
        return {"Data": [self._resource_item(r) for r in page], "Total": len(items), "CurrentPage": current,
                "ShowSize": size}

    @staticmethod
    def _ids(text: str, what: str) -> list[int]:
        try:
            return [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise bad("InvalidParameter", f"{what} must be a comma-separated list of ids, got {text!r}") from None

    def cas_CreateDeploymentJob(self, p: dict) -> dict:
        name = self._req(p, "Name")
        job_type = self._req(p, "JobType")
        cert_ids = self._ids(self._req(p, "CertIds"), "CertIds")
        resource_ids = self._ids(self._req(p, "ResourceIds"), "ResourceIds")
        for cid in cert_ids:
            self._cert(cid)
        for rid in resource_ids:
            if rid not in self.s.resources:
                raise bad("ResourceNotFound", f"no cloud resource {rid} in this account")
        t = now()
        schedule = self._int(p, "ScheduleTime")
        jid = self.s.next_id()
        first = self.s.certs[cert_ids[0]]
        self.s.jobs[jid] = {
            "id": jid, "name": name, "job_type": job_type, "cert_ids": cert_ids, "resource_ids": resource_ids,
            "contact_ids": self._req(p, "ContactIds"), "status": "editing", "rollback": 0, "schedule_time": schedule,
            "start_at": None, "start_time": None, "end_time": None, "created": t, "modified": t, "previous": {},
            "message": "", "cert_domain": names_of(first["cert"])[0], "cert_type": first["cert_type"],
            "product_name": ",".join(sorted({self.s.resources[r]["cloud_product"] for r in resource_ids})),
            # one worker per resource, as the real service runs a job (ListWorkerResource)
            "workers": {rid: {"id": self.s.next_id(), "status": "pending", "message": ""} for rid in resource_ids},
        }
        return {"JobId": jid}

    def _job(self, p: dict) -> dict:
        jid = self._int(p, "JobId", required=True)
        job = self.s.jobs.get(jid or 0)
        if job is None:
            raise bad("JobNotFound", f"no deployment job {jid} in this account")
        return job

    def _job_item(self, j: dict) -> dict:
        item = {"Id": j["id"], "Name": j["name"], "Status": j["status"], "JobType": j["job_type"],
                "Rollback": j["rollback"], "CertDomain": j["cert_domain"], "CertType": j["cert_type"],
                "ProductName": j["product_name"], "Del": 0, "UserId": 1234567890, "InstanceId": f"cas-job-{j['id']}",
                "GmtCreate": str(ms(j["created"])), "GmtModified": str(ms(j["modified"]))}
        for key, field in (("ScheduleTime", "schedule_time"), ("StartTime", "start_time"), ("EndTime", "end_time")):
            value = j[field]
            if value is not None:
                item[key] = str(value if isinstance(value, int) else ms(value))
        return item

    def cas_ListDeploymentJob(self, p: dict) -> dict:
        self.s.advance_jobs()
        items = list(self.s.jobs.values())
        if p.get("JobType"):
            items = [j for j in items if j["job_type"] == p["JobType"]]
        if p.get("Status"):
            items = [j for j in items if j["status"] == p["Status"]]
        if p.get("CertId"):
            items = [j for j in items if int(p["CertId"]) in j["cert_ids"]]
        page, current, size = self._page(items, p, "CurrentPage", "ShowSize", 20)
        return {"Data": [self._job_item(j) for j in page], "Total": len(items), "CurrentPage": current,
                "ShowSize": size}

    def cas_DescribeDeploymentJob(self, p: dict) -> dict:
        self.s.advance_jobs()
        job = self._job(p)
        out = self._job_item(job)
        out["Config"] = json.dumps({"CertIds": job["cert_ids"], "ResourceIds": job["resource_ids"]})
        return out

    def cas_UpdateDeploymentJobStatus(self, p: dict) -> dict:
        self.s.advance_jobs()
        job = self._job(p)
        status = self._req(p, "Status")
        if status not in ("scheduling", "pending", "editing"):
            raise bad("InvalidParameter.Status", f"Status must be scheduling, pending or editing, not {status!r}")
        if job["status"] not in ("editing", "pending", "scheduling"):
            raise bad("JobStatusNotAllowed", f"job {job['id']} is {job['status']}: its status can no longer change")
        t = now()
        job["status"], job["modified"] = status, t
        if status == "scheduling":
            at = job["schedule_time"]
            job["start_at"] = max(t, dt.datetime.fromtimestamp(at / 1000, dt.UTC)) if at else t
        self.s.advance_jobs()
        return {}

    def cas_CreateRollbackTask(self, p: dict) -> dict:
        self.s.advance_jobs()
        job = self._job(p)
        if job["status"] not in ("success", "error"):
            raise bad("JobStatusNotAllowed", f"job {job['id']} is {job['status']}: only a finished job can be "
                      "rolled back")
        t = now()
        worker_id = self._int(p, "WorkerId")
        rids = list(job["previous"])
        if worker_id is not None:  # one worker: its resource only
            rids = [rid for rid, w in job["workers"].items() if w["id"] == worker_id]
            if not rids:
                raise bad("WorkerNotFound", f"job {job['id']} has no worker {worker_id}")
            if job["workers"][rids[0]]["status"] != "success":
                raise bad("WorkerStatusNotAllowed", f"worker {worker_id} is {job['workers'][rids[0]]['status']}: "
                          "only a worker that deployed can be rolled back")
        for rid in rids:
            if rid in job["previous"] and rid in self.s.resources:
                self.s.resources[rid]["cert_id"], self.s.resources[rid]["modified"] = job["previous"][rid], t
            if job["workers"][rid]["status"] == "success":
                job["workers"][rid]["status"] = "rollback_success"
        job["rollback"], job["status"], job["modified"] = 1, "rollback", t
        return {}

    def cas_ListWorkerResource(self, p: dict) -> dict:
        self.s.advance_jobs()
        job = self._job(p)
        items = []
        for rid, w in job["workers"].items():
            res = self.s.resources.get(rid, {})
            items.append({"Id": w["id"], "JobId": job["id"], "ResourceId": rid, "Status": w["status"],
                          "CertId": job["cert_ids"][0], "CertDomain": job["cert_domain"],
                          "CloudProduct": res.get("cloud_product", ""), "ResourceDomain": res.get("domain", ""),
                          "InstanceId": res.get("instance_id", ""), "RegionId": res.get("region_id", ""),
                          "ResourceCertId": res.get("cert_id"), "Port": res.get("listener_port"),
                          "GmtCreate": str(ms(job["created"])), "GmtModified": str(ms(job["modified"]))})
        if p.get("Status"):
            items = [i for i in items if i["Status"] == p["Status"]]
        if p.get("CloudProduct"):
            items = [i for i in items if i["CloudProduct"] == p["CloudProduct"]]
        page, current, size = self._page(items, p, "CurrentPage", "ShowSize", 20)
        return {"Data": [{k: v for k, v in i.items() if v is not None} for i in page], "Total": len(items),
                "CurrentPage": current, "ShowSize": size}

    def cas_ListContact(self, p: dict) -> dict:
        contacts = [{"ContactId": 7001, "Name": "ops", "Email": "ops@example.cn", "Mobile": "13800000000",
                     "EmailStatus": 1, "MobileStatus": 1}]
        page, current, size = self._page(contacts, p, "CurrentPage", "ShowSize", 20)
        return {"ContactList": page, "TotalCount": len(contacts), "CurrentPage": current, "ShowSize": size}

    # ------------------------------------------------------------ AliDNS
    def _zone(self, name: str | None) -> dict:
        zone = self.s.zones.get((name or "").lower().rstrip("."))
        if zone is None:
            raise bad("InvalidDomainName.NoExist", f"The specified domain name does not exist: {name}")
        return zone

    def _record_item(self, r: dict) -> dict:
        return {k: r[k] for k in ("RecordId", "RR", "Type", "Value", "TTL", "DomainName", "Status", "Line",
                                  "Locked", "Weight")}

    def dns_DescribeDomains(self, p: dict) -> dict:
        items = sorted(self.s.zones.values(), key=lambda z: z["name"])
        if p.get("KeyWord"):
            items = [z for z in items if p["KeyWord"].lower() in z["name"]]
        page, current, size = self._page(items, p, "PageNumber", "PageSize", 20)
        domains = [{"DomainName": z["name"], "DomainId": z["id"], "PunyCode": z["name"], "AliDomain": False,
                    "RecordCount": sum(1 for r in self.s.records.values() if r["DomainName"] == z["name"]),
                    "CreateTimestamp": ms(z["created"]),
                    "DnsServers": {"DnsServer": ["ns1.alidns.com", "ns2.alidns.com"]}} for z in page]
        return {"Domains": {"Domain": domains}, "TotalCount": len(items), "PageNumber": current, "PageSize": size}

    def dns_AddDomainRecord(self, p: dict) -> dict:
        zone = self._zone(self._req(p, "DomainName"))
        rr, rtype, value = self._req(p, "RR").strip(), self._req(p, "Type").upper(), self._req(p, "Value")
        if rtype not in ("A", "AAAA", "CNAME", "TXT", "MX", "NS", "CAA", "SRV"):
            raise bad("InvalidRecordType", f"record type {rtype} is not supported")
        for r in self.s.records.values():
            if (r["DomainName"], r["RR"].lower(), r["Type"], r["Value"]) == (zone["name"], rr.lower(), rtype, value):
                raise bad("DomainRecordDuplicate", "The DNS record already exists.")
        rid = str(next(self.s._record_ids))
        t = now()
        self.s.records[rid] = {"RecordId": rid, "RR": rr, "Type": rtype, "Value": value,
                               "TTL": self._int(p, "TTL", 600), "DomainName": zone["name"], "Status": "ENABLE",
                               "Line": p.get("Line") or "default", "Locked": False, "Weight": 1, "created": t}
        return {"RecordId": rid}

    def dns_DescribeDomainRecords(self, p: dict) -> dict:
        zone = self._zone(self._req(p, "DomainName"))
        items = [r for r in self.s.records.values() if r["DomainName"] == zone["name"]]
        for key, field in (("RRKeyWord", "RR"), ("TypeKeyWord", "Type"), ("ValueKeyWord", "Value")):
            if p.get(key):
                items = [r for r in items if p[key].lower() in r[field].lower()]
        if p.get("Type"):
            items = [r for r in items if r["Type"] == p["Type"].upper()]
        if p.get("KeyWord"):
            items = [r for r in items if p["KeyWord"].lower() in (r["RR"] + " " + r["Value"]).lower()]
        page, current, size = self._page(items, p, "PageNumber", "PageSize", 20)
        records = [dict(self._record_item(r), CreateTimestamp=ms(r["created"]), UpdateTimestamp=ms(r["created"]))
                   for r in page]
        return {"DomainRecords": {"Record": records}, "TotalCount": len(items), "PageNumber": current,
                "PageSize": size}

    def dns_DescribeSubDomainRecords(self, p: dict) -> dict:
        sub = self._req(p, "SubDomain").lower().rstrip(".")
        zone_name = (p.get("DomainName") or "").lower().rstrip(".") or self.s.zone_of(sub)
        if not zone_name or zone_name not in self.s.zones:
            raise bad("InvalidDomainName.NoExist", f"The specified domain name does not exist: {sub}")
        items = [r for r in self.s.records.values()
                 if r["DomainName"] == zone_name and self.s.fqdn_of(r).lower() == sub]
        if p.get("Type"):
            items = [r for r in items if r["Type"] == p["Type"].upper()]
        page, current, size = self._page(items, p, "PageNumber", "PageSize", 20)
        return {"DomainRecords": {"Record": [self._record_item(r) for r in page]}, "TotalCount": len(items),
                "PageNumber": current, "PageSize": size}

    def dns_DeleteDomainRecord(self, p: dict) -> dict:
        rid = self._req(p, "RecordId")
        if self.s.records.pop(rid, None) is None:
            raise bad("DomainRecordNotBelongToUser", "The DNS record does not exist or does not belong to you.")
        return {"RecordId": rid}


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else name.rfc4514_string()


# ============================================================================ admin


class Admin:
    """The unsigned JSON admin API under /_emulator/ (tests only)."""

    def __init__(self, state: State, api: Api) -> None:
        self.s, self.api = state, api

    def handle(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        parts = [x for x in path.split("/") if x][1:]
        route = (method, parts[0] if parts else "")
        with self.s.lock:
            if route == ("GET", "health"):
                return 200, {"ok": True}
            if route == ("POST", "reset"):
                self.s.reset()
                return 200, {}
            if route == ("GET", "root"):
                return 200, {"root_pem": pem(self.s.ca.root), "intermediate_pem": pem(self.s.ca.inter)}
            if route == ("POST", "settings"):
                for k in ("review_seconds", "deploy_seconds"):
                    if k in body:
                        setattr(self.s, k, float(body[k]))
                return 200, {"review_seconds": self.s.review_seconds, "deploy_seconds": self.s.deploy_seconds}
            if route == ("POST", "packages"):
                return 200, self._package(body)
            if route == ("GET", "packages"):
                return 200, dict(self.s.packages)
            if route == ("POST", "zones"):
                name = body["zone"].lower().rstrip(".")
                z = self.s.zones.setdefault(name, {"name": name, "id": uuid.uuid4().hex[:20], "created": now()})
                return 200, {"zone": name, "domain_id": z["id"]}
            if route == ("GET", "zones") and len(parts) == 3 and parts[2] == "records":
                zone = parts[1].lower().rstrip(".")
                return 200, [{k: v for k, v in r.items() if k != "created"} | {"fqdn": self.s.fqdn_of(r)}
                             for r in self.s.records.values() if r["DomainName"] == zone]
            if route == ("GET", "txt") and len(parts) == 2:
                return 200, self.s.txt_values(parts[1])
            if route == ("POST", "certificates"):
                return 200, self._seed_cert(body)
            if route == ("POST", "resources"):
                return 200, self._add_resource(body)
            if route == ("GET", "resources") and len(parts) == 2:
                self.s.advance_jobs()
                r = self.s.resources.get(int(parts[1]))
                return (404, {"error": "no such resource"}) if r is None else (200, self._resource_view(r))
            if route == ("GET", "orders") and len(parts) == 2:
                o = self.s.orders.get(int(parts[1]))
                return (404, {"error": "no such order"}) if o is None else (200, self._order_view(o))
            if route == ("POST", "orders") and len(parts) == 3:
                o = self.s.orders.get(int(parts[1]))
                if o is None:
                    return 404, {"error": "no such order"}
                if parts[2] == "reject":
                    o["status"], o["message"] = "verify_fail", body.get("message", "rejected by the CA")
                elif parts[2] == "validate":
                    o["status"], o["validated_at"] = "process", now()
                else:
                    return 404, {"error": f"unknown order operation {parts[2]}"}
                return 200, self._order_view(o)
            if route == ("GET", "jobs") and len(parts) == 2:
                self.s.advance_jobs()
                j = self.s.jobs.get(int(parts[1]))
                if j is None:
                    return 404, {"error": "no such job"}
                return 200, {"id": j["id"], "status": j["status"], "message": j["message"], "rollback": j["rollback"],
                             "cert_ids": j["cert_ids"], "resource_ids": j["resource_ids"],
                             "previous": {str(k): v for k, v in j["previous"].items()}}
            if route == ("POST", "faults"):
                fault = {"action": body.get("action", "*"), "status": int(body.get("status", 400)),
                         "code": body.get("code", "Throttling.User"), "message": body.get("message", "injected fault"),
                         "times": int(body.get("times", 1)), "retry_after_ms": int(body.get("retry_after_ms", 100))}
                self.s.faults.append(fault)
                return 200, fault
            if route == ("POST", "deploy-failures"):
                self.s.deploy_failures.append({k: body.get(k) for k in ("job_id", "resource_id", "message")})
                return 200, {}
            if route == ("GET", "calls"):
                return 200, list(self.s.calls)
        return 404, {"error": f"no admin route {method} {path}"}

    def _package(self, b: dict) -> dict:
        code = b["product_code"]
        self.s.packages[code] = {"product_code": code, "total": int(b.get("total", 20)), "used": int(b.get("used", 0)),
                                 "issued": int(b.get("issued", 0)), "brand": b.get("brand", "DigiCert"),
                                 "level": b.get("level", "DV"), "cert_type": b.get("cert_type", "DV"),
                                 "max_domains": int(b.get("max_domains", 1)),
                                 "product_name": b.get("product_name", code)}
        return self.s.packages[code]

    def _seed_cert(self, b: dict) -> dict:
        names = [n.lower() for n in b["names"]]
        t = now()
        nb = parse_time(b.get("not_before"), t - DAY)
        na = parse_time(b.get("not_after"), nb + 365 * DAY)
        source = b.get("source", "buy")
        key = _new_key(b.get("algorithm", "EC"))
        if source == "upload" and b.get("self_issued"):
            leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                    .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(nb).not_valid_after(na)
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
                    .sign(key, hashes.SHA256()))
            chain: list[x509.Certificate] = []
        else:
            leaf, chain = self.s.ca.issue(names, key.public_key(), nb, na), [self.s.ca.inter]
        held = key_pem(key) if b.get("with_key", True) else None
        order_id = None
        if source == "buy":
            code = b.get("product_code", "emulator-dv-1")
            order_id = self.s.next_id()
            self.s.orders[order_id] = {
                "id": order_id, "product_code": code, "names": names, "csr": None, "public_key": key.public_key(),
                "key": held, "validate_type": "DNS", "status": "certificate", "token": "", "validated_at": nb,
                "cert_id": None, "renew_of": None, "message": "", "applicant": {}, "created": nb,
                "instance_id": f"cas-ivauto-{order_id}"}
            if code not in self.s.packages:
                self._package({"product_code": code, "total": 0})
        pkg = self.s.packages.get(b.get("product_code", "emulator-dv-1"), {})
        entry = self.s.add_cert(leaf, chain, held, name=b.get("name") or f"seed-{names[0]}", source=source,
                                order_id=order_id, product_code=pkg.get("product_code", "") if source == "buy" else "",
                                root_brand=b.get("brand") or pkg.get("brand", ""), cert_type=b.get("cert_type", "DV"))
        if order_id:
            self.s.orders[order_id]["cert_id"] = entry["id"]
        resource_ids = [self._add_resource(dict(r, cert_id=entry["id"]))["id"] for r in b.get("resources", [])]
        return {"cert_id": entry["id"], "order_id": order_id, "resource_ids": resource_ids,
                "fingerprint_sha256": leaf.fingerprint(hashes.SHA256()).hex(), "cert_pem": pem(leaf),
                "key_pem": held}

    def _add_resource(self, b: dict) -> dict:
        rid = self.s.next_id()
        t = now()
        self.s.resources[rid] = {
            "id": rid, "cloud_product": b.get("cloud_product", "SLB"), "domain": b["domain"].lower(),
            "instance_id": b.get("instance_id", f"lb-{uuid.uuid4().hex[:12]}"),
            "listener_id": b.get("listener_id", f"lsn-{uuid.uuid4().hex[:12]}"),
            "listener_port": int(b.get("listener_port", 443)), "region_id": b.get("region_id", "cn-hangzhou"),
            "cert_id": int(b["cert_id"]) if b.get("cert_id") is not None else None, "created": t, "modified": t}
        return self._resource_view(self.s.resources[rid])

    @staticmethod
    def _resource_view(r: dict) -> dict:
        return {k: v for k, v in r.items() if k not in ("created", "modified")}

    def _order_view(self, o: dict) -> dict:
        rr, zone = self.api.record_domain(o["names"][0])
        return {"id": o["id"], "status": o["status"], "names": o["names"], "product_code": o["product_code"],
                "validate_type": o["validate_type"], "record_domain": rr, "zone": zone, "record_value": o["token"],
                "cert_id": o["cert_id"], "renew_of": o["renew_of"], "message": o["message"]}


# ============================================================================ HTTP front


def _mask(params: dict[str, str]) -> dict[str, str]:
    return {k: ("***" if k in MASKED_PARAMS and v else v) for k, v in params.items()}


def _mask_body(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: ("***" if k in MASKED_PARAMS and v else _mask_body(v)) for k, v in body.items()}
    if isinstance(body, list):
        return [_mask_body(v) for v in body]
    return body


class Handler(BaseHTTPRequestHandler):
    server_version = "AlibabaEmulator/1"
    protocol_version = "HTTP/1.1"
    api: Api
    admin: Admin
    state: State

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        sys.stdout.write("%s %s\n" % (self.log_date_time_string(), format % args))  # noqa: UP031

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # Never the query string: it carries parameters (an uploaded private key among them).
        path = urlsplit(self.path).path
        self.log_message('"%s %s" %s %s', self.command, path, code, self.headers.get("x-acs-action") or "")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith("/_emulator/"):
            try:
                status, payload = self.admin.handle(method, url.path, json.loads(body) if body else {})
            except (KeyError, ValueError, TypeError) as exc:
                status, payload = 400, {"error": f"{type(exc).__name__}: {exc}"}
            self._send(status, payload)
            return
        request_id = str(uuid.uuid4()).upper()
        action = self.headers.get("x-acs-action") or ""
        version = self.headers.get("x-acs-version") or ""
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if body and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        extra: dict[str, str] = {}
        try:
            if url.path != "/":
                raise ApiError(404, "InvalidApi.NotFound", f"no API at {url.path}")
            if not action or not version:
                raise bad("MissingParameter", "x-acs-action and x-acs-version headers are required")
            verify_signature(method, url.path, url.query, self.headers, body, self.api.keys)
            self._check_freshness()
            self._fault(action)
            payload = self.api.dispatch(version, action, params)
            status = 200
        except ApiError as exc:
            status, payload, extra = exc.status, {"Code": exc.code, "Message": exc.message}, exc.headers
        except Exception as exc:  # noqa: BLE001 - an emulator bug answers 500, as the service would
            status, payload = 500, {"Code": "InternalError", "Message": f"emulator error: {type(exc).__name__}: {exc}"}
        payload["RequestId"] = request_id
        with self.state.lock:
            self.state.calls.append({"at": ms(now()), "action": action, "version": version, "params": _mask(params),
                                     "status": status, "response": _mask_body(payload)})
        self._send(status, payload, extra)

    def _check_freshness(self) -> None:
        date = self.headers.get("x-acs-date") or ""
        try:
            sent = dt.datetime.strptime(date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        except ValueError:
            raise bad("InvalidTimeStamp.Format", f"x-acs-date {date!r} is not yyyy-MM-ddTHH:mm:ssZ") from None
        if abs((now() - sent).total_seconds()) > 900:
            raise bad("InvalidTimeStamp.Expired", f"x-acs-date {date} is more than 15 minutes away")
        nonce = self.headers.get("x-acs-signature-nonce") or ""
        with self.state.lock:
            if nonce in self.state.nonces:
                raise bad("SignatureNonceUsed", f"Specified signature nonce was used already: {nonce}")
            self.state.nonces.add(nonce)

    def _fault(self, action: str) -> None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault["times"] > 0 and fault["action"] in ("*", action):
                    fault["times"] -= 1
                    headers = {}
                    if fault["code"].startswith("Throttling"):
                        left = fault["retry_after_ms"]
                        headers = {"x-acs-retry-after": str(left),
                                   "x-ratelimit-user-api": f"Limit:100,Remain:0,TimeLeft:{left},Reset:{ms(now()) + left}"}
                    raise ApiError(fault["status"], fault["code"], fault["message"], headers)


# ============================================================================ DNS responder


class DnsResponder:
    """Answers queries for the AliDNS zones from `State` (UDP and TCP)."""

    def __init__(self, state: State, port: int) -> None:
        self.s, self.port = state, port

    def answer(self, wire: bytes) -> bytes | None:
        import dns.flags
        import dns.message
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        import dns.rdtypes.ANY.TXT
        import dns.rrset

        try:
            q = dns.message.from_wire(wire)
        except Exception:  # noqa: BLE001 - garbage: no answer
            return None
        r = dns.message.make_response(q)
        if not q.question:
            r.set_rcode(dns.rcode.FORMERR)
            return r.to_wire()
        question = q.question[0]
        name = question.name.to_text().rstrip(".").lower()
        with self.s.lock:
            zone = self.s.zone_of(name)
            if zone is None:
                r.set_rcode(dns.rcode.REFUSED)
                return r.to_wire()
            r.flags |= dns.flags.AA
            rtype = question.rdtype
            records = [x for x in self.s.records.values() if self.s.fqdn_of(x).lower() == name]
            if rtype == dns.rdatatype.TXT:
                values = [x["Value"] for x in records if x["Type"] == "TXT"]
                if values:
                    rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, dns.rdatatype.TXT)
                    rrset.ttl = 60
                    for v in values:
                        raw = v.encode()
                        rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT,
                                                          [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]))
                    r.answer.append(rrset)
            elif rtype == dns.rdatatype.A:
                values = [x["Value"] for x in records if x["Type"] == "A"] or ["127.0.0.1"]
                r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", *values))
            elif rtype == dns.rdatatype.SOA and name == zone:
                r.answer.append(dns.rrset.from_text(question.name, 60, "IN", "SOA",
                                                    f"ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60"))
        return r.to_wire()

    def start(self) -> None:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", self.port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("127.0.0.1", self.port))
        tcp.listen(16)

        def serve_udp() -> None:
            while True:
                data, addr = udp.recvfrom(65535)
                out = self.answer(data)
                if out:
                    udp.sendto(out, addr)

        def serve_tcp_conn(conn: socket.socket) -> None:
            with conn:
                conn.settimeout(5)
                try:
                    while True:
                        head = conn.recv(2)
                        if len(head) < 2:
                            return
                        size = int.from_bytes(head, "big")
                        data = b""
                        while len(data) < size:
                            chunk = conn.recv(size - len(data))
                            if not chunk:
                                return
                            data += chunk
                        out = self.answer(data)
                        if out:
                            conn.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    return

        def serve_tcp() -> None:
            while True:
                conn, _ = tcp.accept()
                threading.Thread(target=serve_tcp_conn, args=(conn,), daemon=True).start()

        threading.Thread(target=serve_udp, daemon=True).start()
        threading.Thread(target=serve_tcp, daemon=True).start()


# ============================================================================ TLS listener


class TlsFront:
    """One TLS listener for every cloud resource: SNI → the resource's current certificate."""

    def __init__(self, state: State, port: int, workdir: Path) -> None:
        self.s, self.port, self.dir = state, port, workdir
        key = ec.generate_private_key(ec.SECP256R1())
        t = now()
        cert = state.ca.issue(["unknown.emulator.invalid"], key.public_key(), t - DAY, t + 365 * DAY)
        self.default = self._context(cert, [state.ca.inter], key_pem(key), "default")

    def _context(self, cert, chain, key_text: str, tag: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        fd, path = tempfile.mkstemp(prefix=f"tls-{tag}-", suffix=".pem", dir=self.dir)
        with os.fdopen(fd, "w") as fh:
            fh.write(key_text + pem(cert) + "".join(pem(c) for c in chain))
        try:
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        ctx.sni_callback = self._sni
        return ctx

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        if not server_name:
            return None
        with self.s.lock:
            self.s.advance_jobs()
            res = [r for r in self.s.resources.values() if covers(r["domain"], server_name) and r["cert_id"]]
            exact = [r for r in res if r["domain"] == server_name.lower()]
            pick = (exact or res or [None])[-1]
            if pick is None:
                return None
            entry = self.s.certs.get(pick["cert_id"])
            if entry is None or not entry["key"]:
                return None
            ctx = self.s.tls_contexts.get(entry["id"])
            if ctx is None:
                ctx = self._context(entry["cert"], entry["chain"], entry["key"], str(entry["id"]))
                self.s.tls_contexts[entry["id"]] = ctx
            return ctx

    def _sni(self, sslobj, server_name, _ctx) -> None:
        ctx = self.context_for(server_name)
        if ctx is not None:
            sslobj.context = ctx

    def start(self) -> None:
        front = self

        class Conn(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    with front.default.wrap_socket(self.request, server_side=True) as tls:
                        try:
                            tls.recv(4096)
                        except OSError:
                            pass
                        tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                except (OSError, ssl.SSLError):
                    return

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        server = Server(("127.0.0.1", self.port), Conn)
        threading.Thread(target=server.serve_forever, daemon=True).start()


# ============================================================================ main


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dns-port", type=int, required=True)
    ap.add_argument("--tls-port", type=int, required=True)
    ap.add_argument("--access-key-id", required=True)
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args(argv)
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        raise SystemExit(f"set {SECRET_ENV} to the AccessKey secret the emulator accepts")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = State(CA(), workdir)
    api = Api(state, {args.access_key_id: secret})
    Handler.api, Handler.admin, Handler.state = api, Admin(state, api), state
    DnsResponder(state, args.dns_port).start()
    TlsFront(state, args.tls_port, workdir).start()
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    httpd.daemon_threads = True
    print(f"alibaba emulator: api 127.0.0.1:{args.port} dns {args.dns_port} tls {args.tls_port} "
          f"access key id {args.access_key_id}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
