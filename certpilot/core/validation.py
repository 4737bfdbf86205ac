"""Domain validation rules: what file validation cannot prove (DV-4), the contact OV/EV need
(DV-5, DV-6) and what CAA allows (DV-7).

Pure functions of data: no DNS queries here. The adapters in `certpilot.adapters.dns` gather
the records (TXT visibility, CAA RRsets) and these functions decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import Contact, Level, ValidationMethod


def _is_wildcard(name: str) -> bool:
    return name.startswith("*.")


def check_validation_method(names: Sequence[str], method: ValidationMethod) -> Refusal | None:
    """DV-4: refuse file validation when any name is a wildcard.

    Args:
        names: the certificate's names (``*.example.com`` for a wildcard).
        method: the validation method asked for.

    Returns:
        None when `method` can prove every name, else a `WILDCARD_FILE_VALIDATION` refusal
        naming the wildcard(s) and what to use instead.
    """
    if method not in (ValidationMethod.HTTP_FILE, ValidationMethod.HTTP_MANUAL):
        return None
    wildcards = [n for n in names if _is_wildcard(n)]
    if not wildcards:
        return None
    return Refusal(
        Reason.WILDCARD_FILE_VALIDATION,
        f"{', '.join(wildcards)} cannot be validated by file: CAs accept only DNS validation for "
        "wildcard names; use automatic DNS validation (configure a DNS provider for the zone) "
        "or a manual DNS TXT record.",
        rule="DV-4",
    )


def choose_method(names: Sequence[str], *, original: ValidationMethod | None = None,
                  chosen: ValidationMethod | None = None, dns_writable: bool = False, delegated: bool = False,
                  http_responder: bool = False) -> ValidationMethod:
    """DV-1..DV-4: the validation method of a certificate's application.

    In order: the operator's explicit choice (`certpilot policy ID --validation`, checked by
    `check_validation_method` when it is set); DV-1, the original certificate's method while the
    system can still use it (automatic DNS needs a writable zone, delegation a delegation, file
    validation a webroot responder and no wildcard, DV-4); a delegation of ``_acme-challenge``
    (validation-free authorization); DV-2, automatic DNS when a configured provider holds every
    zone; DV-3, otherwise a manual DNS TXT record (recommended over placing a file by hand).

    Args:
        names: the certificate's names.
        original: the renewed certificate's method, if any.
        chosen: the operator's choice, if any.
        dns_writable: a configured DNS provider holds the zone of every name (DV-2).
        delegated: every name's ``_acme-challenge`` is delegated to a zone the system writes.
        http_responder: a webroot responder serves ``/.well-known/acme-challenge/`` (HTTP-01).

    Returns:
        The method to apply with.
    """
    if chosen is not None:
        return chosen
    usable = {
        ValidationMethod.DNS_AUTO: dns_writable,
        ValidationMethod.DELEGATED: delegated,
        ValidationMethod.HTTP_FILE: http_responder and not any(_is_wildcard(n) for n in names),
        ValidationMethod.HTTP_MANUAL: not any(_is_wildcard(n) for n in names),
        ValidationMethod.DNS_MANUAL: True,
    }
    if original is not None and usable.get(original, False):
        return original
    if delegated:
        return ValidationMethod.DELEGATED
    if dns_writable:
        return ValidationMethod.DNS_AUTO
    return ValidationMethod.DNS_MANUAL


CONTACT_FIELDS = ("name", "email", "phone")
"""What the CA verifies an OV/EV application with (DV-6)."""


def missing_contact(level: Level, contact: Contact | None) -> tuple[str, ...]:
    """DV-5/DV-6: the contact fields an application still lacks for the CA's verification.

    Args:
        level: the certificate's validation level; DV needs no contact.
        contact: the certificate's owner as recorded, if any.

    Returns:
        The missing fields among name, email and phone, in that order; empty for DV or a
        complete contact.
    """
    if Level(level) is Level.DV:
        return ()
    return tuple(f for f in CONTACT_FIELDS if not (contact is not None and getattr(contact, f)))


def contact_refusal(level: Level, contact: Contact | None) -> Refusal | None:
    """DV-6: OV and EV need a contact with name, email and phone before they are submitted.

    Returns:
        None when nothing is missing (always for DV), else a CONTACT_REQUIRED refusal naming the
        missing fields and what to set.
    """
    missing = missing_contact(level, contact)
    if not missing:
        return None
    return Refusal(Reason.CONTACT_REQUIRED,
                   f"{Level(level).value} certificates need a contact the CA can verify with; missing "
                   f"{', '.join(missing)}: set the certificate owner's name, email and phone, then submit again.",
                   "DV-6")


# --------------------------------------------------------------------------- CAA (RFC 8659)


@dataclass(frozen=True)
class CaaRecord:
    """One CAA record: ``flags tag "value"``."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        """The issuer-critical flag (bit 0, value 128)."""
        return bool(self.flags & 128)


def _issuer_domain(value: str) -> str:
    """The issuer-domain-name of an ``issue``/``issuewild`` value (before any ``;`` parameters)."""
    return value.split(";", 1)[0].strip().rstrip(".").lower()


def check_caa(name: str, owner: str | None, records: Sequence[CaaRecord],
              ca_identifiers: Sequence[str]) -> Refusal | None:
    """DV-7: does the relevant CAA RRset allow a CA to issue for `name`? (RFC 8659 section 4)

    Args:
        name: the certificate name (``*.example.com`` for a wildcard).
        owner: the domain where the relevant CAA RRset was found (climbing from the name),
            None when no CAA exists up to the top-level domain.
        records: that RRset (empty when `owner` is None).
        ca_identifiers: the issuer domain names the CA recognises as its own
            (e.g. ``letsencrypt.org``).

    Returns:
        None when the CA may issue, else a `CAA_FORBIDS` refusal that names the record's
        domain, what it allows, and the record to add.
    """
    if owner is None or not records:
        return None
    mine = {c.rstrip(".").lower() for c in ca_identifiers}
    primary = ca_identifiers[0] if ca_identifiers else "your CA"
    where = owner.rstrip(".")
    known = {"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"}
    unknown_critical = [r for r in records if r.critical and r.tag.lower() not in known]
    if unknown_critical:
        tags = ", ".join(sorted({r.tag for r in unknown_critical}))
        return Refusal(
            Reason.CAA_FORBIDS,
            f"CAA at {where} carries a critical property unknown to the CA ({tags}), which forbids "
            f"issuance for {name}; remove the critical flag or the record.",
            rule="DV-7",
        )
    wildcard = _is_wildcard(name)
    issuewild = [r for r in records if r.tag.lower() == "issuewild"]
    issue = [r for r in records if r.tag.lower() == "issue"]
    if wildcard and issuewild:
        relevant, tag = issuewild, "issuewild"
    else:
        relevant, tag = issue, "issue"
    if not relevant:
        return None  # no issue/issuewild property: any CA may issue (iodef alone restricts nothing)
    allowed = [d for d in (_issuer_domain(r.value) for r in relevant) if d]
    if mine & set(allowed):
        return None
    allows = f"only {', '.join(sorted(set(allowed)))}" if allowed else "no CA at all"
    return Refusal(
        Reason.CAA_FORBIDS,
        f'CAA at {where} allows {allows} to issue ({tag}) for {name}; add `0 {tag} "{primary}"` '
        f"at {where} or remove the CAA records that exclude {primary}.",
        rule="DV-7",
    )


def caa_lookup_names(name: str) -> list[str]:
    """The domains whose CAA RRset is looked up for `name`, from the name up to its TLD.

    A wildcard's own label is dropped (``*.a.example.com`` starts at ``a.example.com``).
    """
    labels = name.rstrip(".").lower().split(".")
    if labels and labels[0] == "*":
        labels = labels[1:]
    return [".".join(labels[i:]) for i in range(len(labels))]
