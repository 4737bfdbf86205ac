"""Domain validation rules: which method proves a name (DV-1..DV-4) and what CAA allows (DV-7).

Pure functions of data: no DNS queries here. The adapters in `certpilot.adapters.dns` gather
the records (TXT visibility, CAA RRsets) and these functions decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from certpilot.core.errors import Reason, Refusal
from certpilot.core.models import ValidationMethod

AUTOMATIC_METHODS = frozenset({ValidationMethod.DNS_AUTO, ValidationMethod.DELEGATED})
"""Methods with no human step."""


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
    if method is not ValidationMethod.HTTP_FILE:
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


def method_usable(method: ValidationMethod, names: Sequence[str], *, dns_writable: bool,
                  delegated: bool) -> bool:
    """True when `method` can be used now for `names` given what the system can write."""
    if method is ValidationMethod.DNS_AUTO:
        return dns_writable
    if method is ValidationMethod.DELEGATED:
        return delegated
    if method is ValidationMethod.HTTP_FILE:
        return check_validation_method(names, method) is None
    return True  # DNS_MANUAL: a human can always add a TXT record


def choose_method(original_method: ValidationMethod | None, names: Sequence[str], dns_writable: bool,
                  delegated: bool) -> ValidationMethod:
    """Pick the validation method of a renewal (DV-1, DV-2, DV-3, DV-4).

    Order of precedence, written down once:
      1. A delegation (``_acme-challenge`` CNAME'd to a zone the system writes) or a writable zone
         makes validation automatic (DV-2): a human step is never kept when the system can do
         it, so an original manual method is upgraded (DELEGATED first, then DNS_AUTO — unless
         the original already is one of the two and is still usable).
      2. Otherwise the original certificate's method, when it is still usable (DV-1): a manual
         TXT record, or a file for names without wildcards (DV-4).
      3. Otherwise a manual DNS TXT record, the recommended manual method (DV-3).

    Args:
        original_method: the original certificate's method, None for a first issuance.
        names: the certificate's names.
        dns_writable: a configured DNS provider holds the zone of every name.
        delegated: every name's ``_acme-challenge`` is delegated to a zone the system writes.

    Returns:
        The method to use; never HTTP_FILE for a wildcard.
    """
    def usable(m: ValidationMethod) -> bool:
        return method_usable(m, names, dns_writable=dns_writable, delegated=delegated)

    if original_method in AUTOMATIC_METHODS and usable(original_method):
        return original_method
    if delegated:
        return ValidationMethod.DELEGATED
    if dns_writable:
        return ValidationMethod.DNS_AUTO
    if original_method is not None and usable(original_method):
        return original_method
    return ValidationMethod.DNS_MANUAL


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
