"""Names, certificate types and specifications (UP-1, UP-2).

Pure: no I/O. A *name* is what goes into a certificate's subjectAltName: a DNS name (possibly a
wildcard) or an IP address. Names are compared in their normal form: lower-case, IDNA A-labels
(IDNA 2008 with UTS-46 mapping, via the pure `idna` package), no trailing dot.

Type rules (UP-1):
- single: one FQDN (at least two labels) or one public IPv4 address; IPv6 is not offered.
- wildcard: one ``*.base`` name whose ``*`` is the whole leftmost label and covers exactly one
  label, optionally together with its base name: ``{*.example.com, example.com}`` is the usual
  pair CAs issue and is a *wildcard* certificate, not a multi-domain one.
- multi: 2 to `Policy.max_names_multi` (5) single names (FQDNs or public IPv4), no wildcard.

The ``www.`` pair (a policy, decided for issue 17): a name together with its own ``www.`` name
(``{example.com, www.example.com}``) is a *single-domain* certificate, not a multi-domain one.
Every brand of UP-2 (Alibaba Cloud, DigiCert, GlobalSign) sells its single-domain certificates
with the ``www.`` name included at no extra cost, and so does certpilot's own issuer; counting
the pair as multi-domain would make such a certificate unrenewable (EL-1b) and bill it as a
multi-domain quota (PAY-1). Only the exact pair qualifies: one more name, or ``www.`` in front of
a different name, is multi-domain as before.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import idna

from certpilot.core.errors import BadInputError, Reason, Refusal, RefusedError
from certpilot.core.limits import MAX_RAW_NAME
from certpilot.core.models import CertType, Level, Policy, Spec
from certpilot.core.text import has_unsafe_chars, visible

BRANDS: tuple[str, ...] = ("Alibaba Cloud", "DigiCert", "GlobalSign")
"""UP-2: the brands the service sells (validation levels are `Level`: DV, OV, EV)."""

OWN_BRAND = "certpilot"
"""The brand of certificates certpilot's own issuers sign (the embedded private CA, an ACME CA):
the default brand of a `Certificate`, of `certpilot import` and `certpilot buy`. Offered next to
`BRANDS` wherever UP-2 is checked."""

def _brand_key(value: str) -> str:
    # "alibaba-cloud", "AlibabaCloud", " alibaba  cloud " all name Alibaba Cloud.
    return re.sub(r"[\s_-]+", "", value).casefold()


def known_brand(value: str, brands: Iterable[str] = (*BRANDS, OWN_BRAND)) -> str | None:
    """The canonical name (UP-2) of the brand `value` names, or None when it names none.

    Case, spaces, hyphens and underscores do not matter: ``digicert``, ``DIGICERT``,
    ``alibaba-cloud`` map to ``DigiCert`` and ``Alibaba Cloud``.
    """
    key = _brand_key(value or "")
    return next((b for b in brands if _brand_key(b) == key), None) if key else None


def canonical_brand(value: str, brands: Iterable[str] = (*BRANDS, OWN_BRAND)) -> str:
    """UP-2: the canonical name of a brand given in any case (``digicert`` → ``DigiCert``).

    Raises:
        RefusedError: (UNKNOWN_BRAND, rule UP-2) the value names no brand offered; the message
            lists the brands offered.
    """
    offered = tuple(brands)
    found = known_brand(value, offered)
    if found is None:
        raise RefusedError(Refusal(Reason.UNKNOWN_BRAND, f"brand '{value}' is not offered; use one of: "
                                   f"{', '.join(offered)} (any case)", "UP-2"))
    return found


def canonical_level(value: str | Level) -> Level:
    """UP-2: the validation level a value names in any case (``dv`` → ``Level.DV``).

    Raises:
        ValueError: the value is not DV, OV or EV (the message lists them).
    """
    return _member(Level, value, str.upper, "validation level", " (any case)")


def canonical_type(value: str | CertType) -> CertType:
    """The certificate type a value names in any case (``Single`` → ``CertType.SINGLE``).

    Raises:
        ValueError: the value is not single, wildcard or multi (the message lists them).
    """
    return _member(CertType, value, str.lower, "certificate type", "")


def _member(enum, value, fold, what: str, hint: str):
    """The member of `enum` that `value` names once `fold`ed (a member passes through)."""
    if isinstance(value, enum):
        return value
    try:
        return enum(fold((value or "").strip()))
    except ValueError:
        raise ValueError(f"{value!r} is not a {what}; use one of: {', '.join(m.value for m in enum)}{hint}") from None


MAX_LABEL = 63
MAX_NAME = 253
_LDH = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _label_problem(label: str) -> str | None:
    """Why one A-label is not a valid LDH label, or None."""
    if not label:
        return "has an empty label"
    if len(label) > MAX_LABEL:
        return f"has a label longer than {MAX_LABEL} characters"
    if not _LDH.match(label):
        return f"has label '{label}', which is not letters, digits and inner hyphens (LDH)"
    return None


def normalize_name(name: str) -> str:
    """Return a name in normal form: lower-case, IDNA A-labels, no trailing dot.

    IP addresses come back in their canonical text form (their publicness is judged by
    `check_names`, not here). A leading ``*`` label is kept as is; its placement is judged by
    `check_names` (WILDCARD_DEPTH), but ``*`` inside a label (``*x.example.com``) is invalid here.

    Args:
        name: a DNS name, wildcard name or IP address, as a user or a certificate gave it.

    Raises:
        BadInputError: (reason INVALID_NAME) naming the value when it is not a valid name.
    """
    raw = name
    value = name.strip().rstrip(".") if isinstance(name, str) else ""
    # Messages show the name with control characters escaped: it came from outside (issue 15).
    shown = visible(raw if isinstance(raw, str) else repr(raw), limit=MAX_NAME + 7)
    if len(value) > MAX_RAW_NAME:
        raise BadInputError(f"'{shown}' is not a valid name: it is {len(value)} characters long, "
                            f"more than {MAX_NAME}", Reason.INVALID_NAME)
    if has_unsafe_chars(value):
        raise BadInputError(f"'{shown}' is not a valid name: it holds control or invisible characters",
                            Reason.INVALID_NAME)
    if not value:
        raise BadInputError(f"'{shown}' is not a name: it is empty", Reason.INVALID_NAME)
    ip = _ip(value)
    if ip is not None:
        return str(ip)
    try:
        # Map the whole name first so ideographic full stops ("。") split labels like "." does.
        value = idna.uts46_remap(value, std3_rules=False, transitional=False).rstrip(".")
    except idna.IDNAError as exc:
        raise BadInputError(f"'{shown}' is not a valid name: {exc}", Reason.INVALID_NAME) from None
    labels = value.split(".")
    out: list[str] = []
    for label in labels:
        if label == "*":
            out.append(label)
            continue
        if "*" in label:
            raise BadInputError(
                f"'{shown}' is not a valid name: a wildcard must be a whole leftmost label ('*.example.com'), "
                f"not part of label '{label}'",
                Reason.INVALID_NAME,
            )
        try:
            # UTS-46 maps case and compatibility forms; IDNA 2008 then gives the A-label.
            alabel = idna.encode(label, uts46=True).decode("ascii") if label else ""
        except idna.IDNAError as exc:
            raise BadInputError(f"'{shown}' is not a valid name: label '{label}' fails IDNA ({exc})",
                                Reason.INVALID_NAME) from None
        problem = _label_problem(alabel.lower())
        if problem:
            raise BadInputError(f"'{shown}' is not a valid name: it {problem}", Reason.INVALID_NAME)
        out.append(alabel.lower())
    result = ".".join(out)
    if len(result) > MAX_NAME:
        raise BadInputError(f"'{shown}' is not a valid name: it is {len(result)} characters long, "
                            f"more than {MAX_NAME}", Reason.INVALID_NAME)
    if len(out) < 2:
        raise BadInputError(f"'{shown}' is not a fully qualified name: it needs at least two labels "
                            "(e.g. 'example.com')", Reason.INVALID_NAME)
    if out[-1].isdigit():
        raise BadInputError(f"'{shown}' is not a valid name: its top-level label '{out[-1]}' is all digits "
                            "(and it is not an IPv4 address)", Reason.INVALID_NAME)
    return result


def _canon(name: str) -> str:
    """Lenient normal form for comparisons that must not raise (case, trailing dot)."""
    return name.strip().rstrip(".").lower()


def is_wildcard(name: str) -> bool:
    """True when the name's leftmost label is ``*`` (``*.example.com``)."""
    return _canon(name).startswith("*.")


def wildcard_base(name: str) -> str:
    """The base name a wildcard sits on: ``*.example.com`` → ``example.com``; other names unchanged."""
    c = _canon(name)
    return c[2:] if c.startswith("*.") else c


def covers(pattern: str, name: str) -> bool:
    """True when a certificate name `pattern` covers the host `name` (UP-1, RFC 6125 6.4.3).

    A plain name covers only itself; ``*.example.com`` covers exactly one extra label on the left
    (``a.example.com``), not ``b.a.example.com`` and not ``example.com``. IP addresses are matched
    exactly and never by a wildcard.
    """
    p, n = _canon(pattern), _canon(name)
    if p == n:
        return True
    if not is_wildcard(p) or _ip(n) is not None:
        return False
    head, _, rest = n.partition(".")
    return bool(head) and head != "*" and rest == p[2:]


def is_www_pair(names: Iterable[str]) -> bool:
    """True when the names are exactly a name and its own ``www.`` name (``example.com``,
    ``www.example.com``, any order): a single-domain certificate (see the module docstring)."""
    ns = sorted(set(_canon(n) for n in names), key=len)
    return (len(ns) == 2 and not any(is_wildcard(n) for n in ns) and _ip(ns[0]) is None
            and ns[1] == f"www.{ns[0]}")


def infer_type(names: Iterable[str]) -> CertType:
    """The certificate type a list of names asks for (UP-1).

    One non-wildcard name, or a name with its own ``www.`` name → SINGLE; one wildcard, alone or
    with its own base name → WILDCARD; anything else → MULTI (which `check_names` then checks,
    e.g. refusing wildcards in it).

    Raises:
        BadInputError: (reason NO_NAMES) when no name is given.
    """
    ns = list(dict.fromkeys(_canon(n) for n in names))
    if not ns:
        raise BadInputError("a certificate needs at least one name; give a domain name or public IPv4 address",
                            Reason.NO_NAMES)
    wild = [n for n in ns if is_wildcard(n)]
    if len(ns) == 1:
        return CertType.WILDCARD if wild else CertType.SINGLE
    if is_www_pair(ns):
        return CertType.SINGLE
    if len(wild) == 1 and len(ns) == 2 and wildcard_base(wild[0]) in ns:
        return CertType.WILDCARD
    return CertType.MULTI


def _refuse(reason: Reason, message: str) -> Refusal:
    return Refusal(reason, message, "UP-1")


def _single_name_problem(name: str) -> Refusal | None:
    """Checks shared by every non-wildcard name: IPv4 only, and public."""
    ip = _ip(name)
    if ip is None:
        return None
    if ip.version == 6:
        return _refuse(Reason.INVALID_NAME, f"'{name}' is an IPv6 address; certificates here hold domain names "
                                            "or public IPv4 addresses only: use a DNS name for that host")
    if not ip.is_global:
        return _refuse(Reason.PRIVATE_IP, f"'{name}' is a private, loopback or reserved IPv4 address; a publicly "
                                          "trusted certificate can only name a public IPv4 address: use a "
                                          "public address or a DNS name, or issue from the private CA")
    return None


def check_names(names: Iterable[str], cert_type: CertType, policy: Policy) -> Refusal | None:
    """UP-1: do these names fit a certificate of `cert_type`? The refusal names the offending value.

    Names are normalized first (duplicates after normalization count once). Checks, in order:
    at least one name; each name valid; wildcards only as the whole leftmost label, once;
    then the type's shape (see the module docstring), with at most `policy.max_names_multi`
    names in a multi-domain certificate.

    Args:
        names: the certificate's names (SANs).
        cert_type: the type the names must fit.
        policy: supplies `max_names_multi`.

    Returns:
        None when the names fit, else a `Refusal` with rule "UP-1".
    """
    raw = list(names)
    if not raw:
        return _refuse(Reason.NO_NAMES, "no names were given; a certificate needs at least one domain name or "
                                        "public IPv4 address")
    ns: list[str] = []
    for n in raw:
        try:
            v = normalize_name(n)
        except BadInputError as exc:
            return _refuse(exc.reason or Reason.INVALID_NAME, exc.message)
        if v not in ns:
            ns.append(v)
    for n in ns:
        labels = n.split(".")
        if "*" in labels and (labels.index("*") != 0 or labels.count("*") > 1):
            return _refuse(Reason.WILDCARD_DEPTH, f"'{n}' puts a wildcard below the leftmost label or uses more "
                                                  "than one; a wildcard covers exactly one label: use "
                                                  f"'*.{'.'.join(x for x in labels if x != '*')}' or list the "
                                                  "names one by one")
        if labels[0] == "*" and len(labels) < 3:
            return _refuse(Reason.WILDCARD_DEPTH, f"'{n}' is a wildcard over a top-level domain; a wildcard must "
                                                  "sit on a registered domain such as '*.example.com'")
    wild = [n for n in ns if is_wildcard(n)]
    plain = [n for n in ns if not is_wildcard(n)]
    for n in plain:
        problem = _single_name_problem(n)
        if problem is not None:
            return problem
    listed = ", ".join(ns)
    if cert_type is CertType.SINGLE:
        if wild:
            return _refuse(Reason.TYPE_MISMATCH, f"'{wild[0]}' is a wildcard; a single-domain certificate holds one "
                                                 "domain name or public IPv4 address: choose the wildcard type")
        if len(ns) != 1 and not is_www_pair(ns):
            return _refuse(Reason.TYPE_MISMATCH, f"a single-domain certificate holds one name (and its own 'www.' "
                                                 f"name), not these {len(ns)} ({listed}): choose the multi-domain type")
        return None
    if cert_type is CertType.WILDCARD:
        if len(wild) != 1:
            what = "no wildcard" if not wild else f"{len(wild)} wildcards"
            return _refuse(Reason.TYPE_MISMATCH, f"a wildcard certificate holds exactly one wildcard name, these "
                                                 f"names ({listed}) have {what}: use one '*.domain' name, with "
                                                 "its base name if needed")
        base = wildcard_base(wild[0])
        others = [n for n in plain if n != base]
        if others:
            return _refuse(Reason.TYPE_MISMATCH, f"'{others[0]}' is not covered by the wildcard certificate for "
                                                 f"'{wild[0]}' (only '{base}' may be added): buy a separate "
                                                 "certificate for it")
        if _ip(base) is not None:
            return _refuse(Reason.INVALID_NAME, f"'{wild[0]}' puts a wildcard on an IP address")
        return None
    # MULTI
    if wild:
        return _refuse(Reason.WILDCARD_IN_MULTI, f"'{wild[0]}' is a wildcard; multi-domain certificates hold no "
                                                 "wildcards: buy a wildcard certificate for it")
    if len(ns) > policy.max_names_multi:
        return _refuse(Reason.TOO_MANY_NAMES, f"{len(ns)} names ({listed}) exceed the {policy.max_names_multi} a "
                                              "multi-domain certificate can hold; split them over several "
                                              "certificates")
    if len(ns) < 2:
        return _refuse(Reason.TYPE_MISMATCH, f"a multi-domain certificate holds 2 to {policy.max_names_multi} "
                                             f"names, not only '{ns[0]}': choose the single-domain type")
    return None


def check_spec(spec: Spec, brands: Iterable[str] = BRANDS) -> Refusal | None:
    """UP-2: is `spec` a specification the service offers (brand among `brands`)?

    The validation level and type are enums (DV/OV/EV; single/wildcard/multi), so only the brand
    can be outside the offer.

    Returns:
        None when offered, else a `Refusal` (UNKNOWN_BRAND, rule "UP-2") listing the brands.
    """
    offered = tuple(brands)
    if spec.brand in offered:
        return None
    return Refusal(Reason.UNKNOWN_BRAND, f"brand '{spec.brand}' is not offered; choose one of "
                                         f"{', '.join(offered)}", "UP-2")
