"""Revoke a certificate (`certpilot revoke ID --reason R [--replace]`, or the UI's `revoke`
deployment); name a certificate's issuer from the UI (the `issuer` deployment).

With `replace`, the certificate is first renewed, deployed and verified where it served (the
`renewal` flow, as a subflow), and revoked only once its successor is served: a site never
loses its working certificate to a revocation. Without it, the certificate is revoked at once.
"""

from __future__ import annotations

from prefect import flow

from certpilot.core.errors import PermanentError
from certpilot.core.issuers import IssuerInForce, RevokeOutcome
from certpilot.core.models import Status
from certpilot.core.secrets import TextParameter
from tasks import issuers as t


@flow(name="revoke", log_prints=True)
def revoke(certificate_id: TextParameter, reason: TextParameter = "unspecified",
           replace: bool = False) -> RevokeOutcome:
    """Revoke `certificate_id` at the CA that issued it, for `reason` (RFC 5280 name, e.g.
    keyCompromise, superseded); with `replace`, renew and deploy its successor first.

    Raises:
        PermanentError: `replace` and the successor is not issued and served yet (nothing revoked;
            the renewal's own outcome says what it waits for).
        RefusedError: the renewal was refused (EL rules) or the certificate cannot be revoked.
    """
    t.check_reason(reason)
    replaced_by = None
    if replace:
        from flows.renewal import renewal

        run = renewal(certificate_id)
        if run.state is not Status.ISSUED or run.verify is None or not run.verify.ok:
            raise PermanentError(f"the replacement of {certificate_id} is not served yet ({run.message}); nothing "
                                 "was revoked: finish its renewal, then revoke again")
        replaced_by = run.worked_on
    return t.revoke(certificate_id, reason, replaced_by)


@flow(name="issuer", log_prints=True)
def issuer(certificate_id: TextParameter, issuer: TextParameter | None = None,
           fallbacks: list[TextParameter] | None = None) -> IssuerInForce:
    """Name the issuer a certificate (and its renewals) is applied to, and/or its ordered
    fallbacks (`certpilot policy ID --issuer NAME --fallback NAME` from the UI); with neither,
    show the one in force. An empty `fallbacks` list removes them.

    Raises:
        RefusedError: UNKNOWN_ISSUER: a name the certpilot-config block does not configure.
    """
    return t.set_issuer(certificate_id, issuer, fallbacks)
