"""Thin flows over the foundation's use cases, so what the CLI does can be run from the UI.

Each returns its use case's result as it is (the cancellation with its restored ledger entries
and balances, the imported certificate with its warnings, the order with its certificates).
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.secrets import PemParameter, TextParameter
from tasks import pipeline as t


@flow(name="cancel", log_prints=True)
def cancel(certificate_id: TextParameter):
    """Cancel a not-activated certificate of a plan (PL-7)."""
    return t.cancel_certificate(certificate_id)


@flow(name="policy", log_prints=True)
def policy(certificate_id: TextParameter, auto_renew: bool | None = None, years: int | None = None,
           start_days: int | None = None, default_start: bool = False, validation: TextParameter | None = None):
    """Show or set a certificate's renewal policy, as `certpilot policy` does: automatic renewal on/off,
    when it starts (`start_days`: default 30 days left, no managed-service fee, PL-1/PAY-2; more pays
    it), plan length, validation method (auto | dns-auto | dns-manual | http-file | http-manual |
    delegated, DV-1..DV-4). Empty fields change nothing."""
    return t.renewal_policy(certificate_id, auto_renew, years, start_days, default_start, validation)


@flow(name="import", log_prints=True)
def import_certificate(cert_pem: PemParameter, chain_pem: PemParameter | None = None,
                       key_secret_block: TextParameter | None = None, origin: TextParameter = "uploaded",
                       level: TextParameter = "DV", brand: TextParameter = "certpilot",
                       owner: TextParameter | None = None):
    """Import a certificate (UP-3). Put the private key in a Prefect Secret block and name it in
    `key_secret_block`: flow parameters are stored in plain text, so a key never is one (the
    parameters' schema refuses one, so the server creates no such run). The Secret block is
    deleted once the key is sealed in the vault."""
    return t.import_pem(cert_pem, chain_pem, key_secret_block, origin, level, brand, owner)


@flow(name="purchase", log_prints=True)
def purchase(names: list[TextParameter], brand: TextParameter = "certpilot", level: TextParameter = "DV",
             years: int = 1, owner: TextParameter | None = None, approve_payment: bool = False):
    """Buy a new certificate: the order, paid (or awaiting payment). Its first certificate is
    then a pending application, which the scanner hands to a `renewal` run (csr → validation →
    ca-review → deploy → verify); run `renewal` with its id to start at once."""
    return t.place_purchase(names, brand, level, years, owner, approve_payment)
