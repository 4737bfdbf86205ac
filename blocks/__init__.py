"""Prefect Blocks: certpilot's configuration and secrets, each with a factory for its adapter.

A block is fields plus a factory, nothing else (the prefect-aws `AwsCredentials` pattern):
secrets are `SecretStr` (encrypted in Prefect's database, masked in the UI and API), and the
factory builds the adapter with everything passed in, so adapters never load blocks or
settings themselves. `register_all()` registers the types; `certpilot setup` (and `certpilot up`) saves them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from prefect.blocks.core import Block
from prefect_aws import AwsCredentials
from prefect_email import EmailServerCredentials
from pydantic import Field, SecretStr


class KeyVaultBlock(Block):
    """Where the key vault's master key comes from: a secret here, or an AWS KMS key."""

    _block_type_name = "certpilot key vault"
    _block_type_slug = "certpilot-key-vault"
    _description = "Master key of certpilot's encrypted key vault (AES-GCM envelope)."

    master_key: SecretStr | None = Field(
        default=None, description="Deprecated, leave empty: a master key kept here is readable by anyone holding "
        "the API auth string. Empty: CERTPILOT_MASTER_KEY or the 0600 key file on each host (or kms_key_id).")
    kms_key_id: str | None = Field(default=None, description="AWS KMS key id/ARN: wrap data keys with KMS instead.")
    previous_kms_key_ids: list[str] = Field(
        default_factory=list, description="KMS keys that sealed keys before kms_key_id: they still open them until "
        "`certpilot vault rewrap` has moved every key to kms_key_id.")
    aws_credentials: AwsCredentials | None = Field(default=None, description="Credentials for KMS.")

    def vault(self):
        """Build the `KeyVault` this block describes.

        With a KMS key, the previous KMS keys and any local master key on this host (the env
        value, the key file, a rotation's key files) still open the keys they sealed: moving
        to KMS, or to another KMS key, is configure-then-`certpilot vault rewrap`, never a
        moment when a key cannot be opened.
        """
        from certpilot.crypto import vault as v

        if self.kms_key_id:
            from certpilot.crypto.kms import KmsMasterKey

            client = (self.aws_credentials or AwsCredentials()).get_client("kms")
            previous = [KmsMasterKey(client, k) for k in self.previous_kms_key_ids if k != self.kms_key_id]
            return v.KeyVault(KmsMasterKey(client, self.kms_key_id), *previous, *v.local_keys_present())
        if self.master_key is not None:
            # Kept only so that keys sealed under a block-held master key (certpilot before issue 9's
            # `setup`) still open; `certpilot setup` never writes one and refuses it in a config file.
            logging.getLogger("certpilot.vault").warning(
                "the certpilot-key-vault block holds the master key: anyone with the Prefect API auth string "
                "can read it; move it to CERTPILOT_MASTER_KEY or $CERTPILOT_HOME/master.key (0600) on each host, "
                "or use kms_key_id, then clear the block's master_key")
            return v.KeyVault(v.LocalMasterKey.from_base64(self.master_key.get_secret_value()))
        return v.default_vault()


class AcmeAccountBlock(Block):
    """An ACME CA account (RFC 8555): directory, contact, External Account Binding."""

    _block_type_name = "certpilot ACME account"
    _block_type_slug = "certpilot-acme-account"
    _description = "ACME issuer: Let's Encrypt, ZeroSSL, Google Trust Services, step-ca, Pebble…"

    directory_url: str = Field(description="The CA's ACME directory URL.")
    contact_email: str | None = Field(default=None, description="Account contact (mailto:).")
    eab_kid: str | None = Field(default=None, description="External Account Binding key id, if the CA needs one.")
    eab_hmac_key: SecretStr | None = Field(default=None, description="EAB HMAC key (base64url).")
    ca_bundle: str | None = Field(default=None, description="CA bundle path to trust the ACME server (test CAs).")
    caa_identifiers: list[str] = Field(default_factory=list,
                                       description="The CA's CAA issuer domain names (e.g. letsencrypt.org).")
    publicly_trusted: bool = Field(default=True, description="Whether its certificates are publicly trusted (VA-5).")
    paid: bool = Field(default=False, description="A paid CA service: renewals consume certificate quota and "
                       "managed credits and may wait on a payment form. Off for a free CA (Let's Encrypt).")
    profile: str | None = Field(default=None, description="Certificate profile to ask for (ACME profiles), "
                                "e.g. 'shortlived'.")
    preferred_chain: str | None = Field(default=None, description="Common name of the root to prefer among the "
                                        "CA's alternative chains (default: the CA's default chain).")
    allow_insecure: bool = Field(default=False, description="Accept a plain-http directory URL: for test CAs only.")

    def issuer(self, accounts, vault, *, dns_providers=(), http01=None,
               authoritative: Callable[[str], list] | None = None, clock: Callable[[], datetime] | None = None):
        """Build the ACME `Issuer` (account key sealed in `vault`).

        Args:
            accounts: the `AcmeAccountStore` keeping the account (built by the runtime).
            authoritative: `fqdn -> [(host, port)]`, the servers DV-7's visibility check and
                manual DNS (DV-3) ask; default: the zone's NS hosts on port 53.
        """
        import dns.resolver

        from certpilot.adapters.dns.checks import (
            authoritative_servers,
            caa_refusal,
            find_zone,
            wait_until_visible,
        )
        from certpilot.adapters.dns.manual import ManualDns
        from certpilot.adapters.issuers.acme import AcmeIssuer, ExternalAccount

        resolver = dns.resolver.Resolver()
        if authoritative is None:
            def authoritative(fqdn: str) -> list:
                return authoritative_servers(find_zone(fqdn, resolver), resolver)
        eab = None
        if self.eab_kid and self.eab_hmac_key is not None:
            eab = ExternalAccount(kid=self.eab_kid, hmac_key=self.eab_hmac_key.get_secret_value())
        caa = (lambda names: caa_refusal(names, self.caa_identifiers, resolver)) if self.caa_identifiers else None
        return AcmeIssuer(self.directory_url, accounts=accounts, vault=vault, ca_bundle=self.ca_bundle or True,
                          contact_email=self.contact_email, eab=eab, dns_providers=dns_providers, http01=http01,
                          manual_dns=ManualDns(authoritative), caa_check=caa,
                          wait_visible=lambda fqdn, value: wait_until_visible(fqdn, value, authoritative(fqdn), 120),
                          publicly_trusted=self.publicly_trusted, paid=self.paid, profile=self.profile,
                          preferred_chain=self.preferred_chain, allow_insecure=self.allow_insecure)


class PrivateCaBlock(Block):
    """The embedded private CA: certpilot's default issuer (EL-4's reissue path)."""

    _block_type_name = "certpilot private CA"
    _block_type_slug = "certpilot-private-ca"
    _description = "Embedded private CA; root and intermediate created on first use, keys in the vault."

    ca_name: str = Field(default="default", description="Which private CA of the store.")
    validity_days: int = Field(default=90, description="Lifetime of a certificate issued outside a plan "
                                                        "(a plan's certificates get exactly their planned window).")
    max_validity_days: int | None = Field(default=None, description="The longest lifetime it signs (empty: any); "
                                                                     "the plan covers the rest of its term (VA-5).")
    allowed_suffixes: list[str] = Field(default_factory=list, description="Names it may sign; they also become "
                                        "the intermediate's name constraints. Empty: it signs nothing (unless demo).")
    paid: bool = Field(default=True, description="Bill the official certificates it signs as a paid CA service "
                       "(quota, managed credits, payment form: the seed's model, what the demo shows); "
                       "its own private-CA certificates are never billed.")
    demo: bool = Field(default=False, description="The embedded demo CA of `certpilot up`: signs any name when "
                       "allowed_suffixes is empty. Never for production.")

    def issuer(self, store, vault, *, clock: Callable[[], datetime]):
        """Build the `PrivateCa` issuer.

        Args:
            store: the `PrivateCaStore` keeping the CA's state (built by the runtime).
        """
        from certpilot.adapters.issuers.private_ca import PrivateCa, PrivateCaPolicy
        from certpilot.crypto.safefile import offline_key_sink
        from certpilot.settings import get_settings

        policy = PrivateCaPolicy(validity_days=self.validity_days, max_validity_days=self.max_validity_days,
                                 allowed_suffixes=tuple(self.allowed_suffixes), demo=self.demo)
        return PrivateCa(store, vault, policy=policy, clock=clock, ca_name=self.ca_name, paid=self.paid,
                         offline_sink=offline_key_sink(get_settings().home / "private-ca-offline"))


class AwsPrivateCaBlock(Block):
    """An AWS Private CA certificate authority (`acm-pca`) as an issuer."""

    _block_type_name = "certpilot AWS Private CA"
    _block_type_slug = "certpilot-aws-private-ca"
    _description = "AWS Private CA issuer: certificates signed by a managed private CA (no domain validation)."

    ca_arn: str = Field(description="The certificate authority's ARN.")
    aws_credentials: AwsCredentials = Field(default_factory=AwsCredentials)
    validity_days: int = Field(default=90, description="Lifetime of issued certificates.")
    signing_algorithm: str = Field(default="SHA256WITHRSA", description="SHA256WITHRSA, SHA256WITHECDSA, ...")
    template_arn: str | None = Field(default=None, description="Certificate template ARN (default end-entity).")
    allowed_suffixes: list[str] = Field(default_factory=list, description="Names it may sign (empty: any).")
    paid: bool = Field(default=False, description="Bill its certificates as a paid CA service (quota, credits).")

    def issuer(self):
        """Build the `AwsPrivateCa` issuer (boto3 client from the credentials: region, endpoint)."""
        from certpilot.adapters.issuers.aws_pca import AwsPrivateCa

        return AwsPrivateCa(self.aws_credentials.get_client("acm-pca"), self.ca_arn, validity_days=self.validity_days,
                            signing_algorithm=self.signing_algorithm, template_arn=self.template_arn,
                            allowed_suffixes=self.allowed_suffixes, paid=self.paid)


class AlibabaCloudBlock(Block):
    """An Alibaba Cloud account: SSL Certificates Service (CAS), AliDNS, deployment jobs."""

    _block_type_name = "certpilot Alibaba Cloud"
    _block_type_slug = "certpilot-alibaba-cloud"
    _description = ("Alibaba Cloud account: CAS as an issuer (packages, quota), AliDNS for DNS validation, "
                    "CAS deployment jobs to SLB/ALB/CDN/WAF, `certpilot sync alibaba`.")

    access_key_id: str = Field(description="The RAM user's AccessKey id.")
    access_key_secret: SecretStr = Field(description="The AccessKey secret (masked; never logged or shown).")
    region: str = Field(default="cn-hangzhou", description="Region id (AliDNS endpoint, deployment resources).")
    cas_endpoint: str | None = Field(default=None, description="CAS endpoint override (default cas.aliyuncs.com).")
    dns_endpoint: str | None = Field(default=None, description="AliDNS endpoint override "
                                     "(default alidns.<region>.aliyuncs.com).")
    protocol: Literal["https", "http"] = Field(default="https", description="https; http only for a local emulator.")
    product_code: str = Field(default="digicert-free-1-free",
                              description="The CAS package certificates are applied for from (its quota is PAY-1's).")
    product_spec: str = Field(default="DigiCert/DV/single",
                              description="The specification the package sells: brand/level/type (UP-1, UP-2).")
    dns_zones: list[str] = Field(default_factory=list, description="AliDNS zones certpilot may write (empty: every "
                                 "zone of the account, listed by DescribeDomains).")
    paid: bool = Field(default=True, description="Renewals consume package quota and managed credits (the seed's model).")
    review_retry_seconds: float = Field(default=60.0, description="How long to wait between two looks at a CA review.")

    def connection(self):
        """The `AlibabaConnection` of this account (the secret read when a client is built)."""
        from certpilot.adapters.alibaba.client import AlibabaConnection

        return AlibabaConnection(self.access_key_id, secret=self.access_key_secret.get_secret_value,
                                 region=self.region, cas_endpoint=self.cas_endpoint, dns_endpoint=self.dns_endpoint,
                                 protocol=self.protocol)

    def dns_provider(self):
        """Build the `AliDnsProvider` (DV-2 through AliDNS, for CAS and ACME issuers alike)."""
        from certpilot.adapters.dns.alidns import AliDnsProvider

        return AliDnsProvider(self.connection().alidns(), zones=self.dns_zones)

    def issuer(self, dns_providers=()):
        """Build the CAS `Issuer` of the configured package."""
        from certpilot.adapters.issuers.alibaba_cas import AlibabaCasIssuer, CasProduct

        return AlibabaCasIssuer(self.connection().cas(), CasProduct(self.product_code, self.product_spec),
                                dns_providers=dns_providers, paid=self.paid,
                                review_retry=self.review_retry_seconds, account=self.access_key_id)


class Rfc2136Block(Block):
    """A DNS primary accepting TSIG-signed dynamic updates (BIND, Knot, PowerDNS)."""

    _block_type_name = "certpilot RFC 2136 DNS"
    _block_type_slug = "certpilot-rfc2136"
    _description = "Automatic DNS-01 validation through RFC 2136 updates signed with TSIG."

    server: str = Field(description="Primary server IP address.")
    port: int = Field(default=53)
    zones: list[str] = Field(description="Zones this key may update.")
    tsig_key_name: str
    tsig_secret: SecretStr
    tsig_algorithm: str = Field(default="hmac-sha256")

    def provider(self):
        """Build the `Rfc2136Provider`."""
        from certpilot.adapters.dns.rfc2136 import Rfc2136Provider

        return Rfc2136Provider(self.server, self.port, zones=self.zones, keyname=self.tsig_key_name,
                               secret=self.tsig_secret.get_secret_value(), algorithm=self.tsig_algorithm)


class Route53Block(Block):
    """An AWS Route 53 hosted zone (credentials from prefect-aws's AwsCredentials)."""

    _block_type_name = "certpilot Route53 DNS"
    _block_type_slug = "certpilot-route53"
    _description = "Automatic DNS-01 validation through Route 53 TXT records."

    aws_credentials: AwsCredentials = Field(default_factory=AwsCredentials)
    hosted_zone_id: str | None = None
    zone_name: str | None = None

    def provider(self):
        """Build the `Route53Provider`."""
        from certpilot.adapters.dns.route53 import Route53Provider

        return Route53Provider(self.aws_credentials.get_client("route53"), hosted_zone_id=self.hosted_zone_id,
                               zone_name=self.zone_name)


class NginxHostBlock(Block):
    """How to check and reload a web server that reads PEM files (nginx, Apache, HAProxy)."""

    _block_type_name = "certpilot nginx host"
    _block_type_slug = "certpilot-nginx-host"
    _description = "Check and reload commands (argv, no shell) of a PEM-file web server."

    check_argv: list[str] = Field(default_factory=lambda: ["nginx", "-t"])
    reload_argv: list[str] = Field(default_factory=lambda: ["nginx", "-s", "reload"])
    timeout_seconds: float = 30.0


class AwsDeployBlock(Block):
    """AWS deployment targets: ACM re-import and ALB/ELBv2 listeners."""

    _block_type_name = "certpilot AWS deploy"
    _block_type_slug = "certpilot-aws-deploy"
    _description = "Credentials (and endpoint) for ACM and ELBv2 deployment targets."

    aws_credentials: AwsCredentials = Field(default_factory=AwsCredentials)

    def client(self, service: str):
        """A boto3 client for `service` (acm, elbv2) from these credentials."""
        return self.aws_credentials.get_client(service)


class SmtpNotifierBlock(Block):
    """Email notices over SMTP (server credentials from prefect-email's block)."""

    _block_type_name = "certpilot email notices"
    _block_type_slug = "certpilot-email-notices"
    _description = "Expiry notices, failed deployments and human steps by email."

    server: EmailServerCredentials
    sender: str = "certpilot@localhost"
    recipients: list[str] = Field(default_factory=list, description="Always copied; owners are added.")
    allow_insecure: bool = Field(default=False, description="Send over plain SMTP (smtp_type INSECURE) or TLS "
                                 "without verification. Off: such a server is refused and nothing is sent.")

    def notifier(self, extra_recipients: list[str] | None = None):
        """Build the `EmailNotifier`: it connects through `EmailServerCredentials.get_server()`."""
        from certpilot.adapters.notify.email import EmailNotifier

        return EmailNotifier.from_credentials(
            self.server, sender=self.sender, allow_insecure=self.allow_insecure,
            recipients=list(dict.fromkeys([*self.recipients, *(extra_recipients or [])])))


class WebhookNotifierBlock(Block):
    """Notices as JSON POSTed to a URL, HMAC-signed when a secret is set (`webhook-notices/NAME`)."""

    _block_type_name = "certpilot webhook notices"
    _block_type_slug = "certpilot-webhook-notices"
    _description = "Expiry notices, failed deployments and human steps as signed JSON POSTs."

    url: str = Field(description="The receiver (https://...).")
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key: header X-Certpilot-Signature.")
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="Extra headers (e.g. Authorization).")

    def notifier(self):
        """Build the `WebhookNotifier`."""
        from certpilot.adapters.notify.webhook import WebhookNotifier

        return WebhookNotifier(self.url, secret=self.secret,
                               headers={k: v.get_secret_value() for k, v in self.headers.items()})


class CertpilotConfigBlock(Block):
    """Which blocks certpilot uses: the issuers, DNS providers, notifications and probes."""

    _block_type_name = "certpilot configuration"
    _block_type_slug = "certpilot-config"
    _description = "Names of the blocks the certpilot flows use, and the probe trust bundle."

    default_issuer: str = Field(default="private-ca/default",
                                description="Block '<kind>/<name>': private-ca/NAME, acme/NAME, aws-pca/NAME or "
                                            "alibaba-cas/NAME.")
    issuers: list[str] = Field(default_factory=list,
                               description="More issuers certificates may name (`certpilot policy ID --issuer NAME`) "
                                           "or fall back to: private-ca/NAME, acme/NAME, aws-pca/NAME, alibaba-cas/NAME.")
    emergency_issuer: str | None = Field(default=None, description="ACME block for EM-1 (acme/NAME).")
    dns_providers: list[str] = Field(default_factory=list, description="rfc2136/NAME, route53/NAME or alidns/NAME blocks "
                                         "(alidns names a certpilot-alibaba-cloud block).")
    notification_blocks: list[str] = Field(
        default_factory=list, description="Prefect notification blocks (slug/name), email-notices/NAME and "
        "webhook-notices/NAME.")
    probe_ca_bundle: str | None = Field(default=None, description="Trust bundle for verification probes.")
    nameservers: list[str] = Field(default_factory=list,
                                   description="Authoritative servers to check DV-7 visibility (host:port).")
    http01_webroot: str | None = Field(
        default=None, description="HTTP-01 file validation (DV-3): the directory the web server serves at / on "
                                  "the worker's host; certpilot writes /.well-known/acme-challenge/ files there.")
    dns_delegation: bool = Field(
        default=False, description="Follow _acme-challenge CNAMEs into zones the DNS providers write "
                                   "(validation-free authorization, PL-5).")


ALL_BLOCKS: tuple[type[Block], ...] = (
    KeyVaultBlock, AcmeAccountBlock, PrivateCaBlock, AwsPrivateCaBlock, AlibabaCloudBlock, Rfc2136Block, Route53Block,
    NginxHostBlock, AwsDeployBlock, SmtpNotifierBlock, WebhookNotifierBlock, CertpilotConfigBlock,
)


def register_all() -> None:
    """Register every certpilot block type (and the prefect-aws/email ones it uses)."""
    for block in (AwsCredentials, EmailServerCredentials, *ALL_BLOCKS):
        block.register_type_and_schema()
