"""Issuers on the command line: `certpilot issuers`, `certpilot revoke ID --reason R [--replace]`,
`certpilot renewal-info ID`, and the issuer part of `certpilot policy ID --issuer NAME`.

Registered by `certpilot.cli` (`register(module)`), whose output helpers, error shape and exit
codes these commands share. Like the rest of the CLI this module calls `certpilot.operations`
only. Issuers come from the configuration the workers use (`runtime.for_cli`: the Prefect blocks
when a Prefect API holds the certpilot-config block, else the local defaults).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

from cyclopts import Parameter

JsonFlag = Annotated[bool, Parameter(name="--json", negative="", help="Machine output (JSON).")]

_cli: ModuleType | None = None
"""`certpilot.cli` (or `__main__`), set by `register`: its helpers are read at call time."""


def register(cli: ModuleType) -> None:
    """Add `issuers`, `revoke` and `renewal-info` to `cli.app`."""
    global _cli
    _cli = cli
    cli.app.command(issuers, name="issuers")
    cli.app.command(revoke, name="revoke")
    cli.app.command(renewal_info, name="renewal-info")


def policy_issuer(cert_id: str, issuer: str | None, fallback: list[str] | None) -> dict[str, Any]:
    """Set a certificate's issuer and/or fallbacks for `certpilot policy`; its JSON fields.

    `--fallback none` removes the fallbacks.

    Raises:
        RefusedError: UNKNOWN_ISSUER (nothing written). NotFoundError: no such certificate.
    """
    from certpilot.operations import issuers as ops

    fallbacks = None if fallback is None else [f for f in fallback if f.lower() != "none"]
    s = ops.set_issuer(_cli._ctx.services(keys=True), cert_id, issuer=issuer, fallbacks=fallbacks)
    return _settings_dict(s)


def _settings_dict(s) -> dict[str, Any]:
    return {"issuer": s.issuer, "fallbacks": list(s.fallbacks), "issuer_source": s.source.value, "paid": s.paid}


def policy_issuer_line(data: dict[str, Any]) -> str:
    """The issuer part of the line `certpilot policy` prints ("" when it did not touch the issuer)."""
    if "issuer" not in data:
        return ""
    backs = f", then {', '.join(data['fallbacks'])}" if data["fallbacks"] else ""
    bills = "billed (quota, credits)" if data["paid"] else "free (no quota)"
    return f"; issuer {data['issuer']} ({data['issuer_source']}){backs}, {bills}"


def issuers(cert_id: Annotated[str | None, Parameter(help="Show the issuer in force for this certificate.")] = None,
            /, *, as_json: JsonFlag = False) -> int:
    """List the configured issuers (reference, CA, billed or free, what it offers), or show the
    issuer a certificate is applied to and its fallbacks."""
    from certpilot.operations import issuers as ops

    svc = _cli._ctx.services(keys=True)
    if cert_id is not None:
        data = {"certificate_id": cert_id, **_settings_dict(ops.issuer_settings(svc, cert_id))}
        _cli._emit(data, lambda con: con.print(f"{cert_id}{policy_issuer_line(data)}"), as_json)
        return _cli.EXIT_OK
    found = ops.configured_issuers(svc)
    data = [{"ref": i.ref, "name": i.name, "paid": i.paid, "default": i.default, "revokes": i.revokes,
             "renewal_info": i.renewal_info} for i in found]

    def render(con):
        for i in found:
            flags = [f for f, on in (("default", i.default), ("billed", i.paid), ("free", not i.paid),
                                     ("revokes", i.revokes), ("ARI", i.renewal_info)) if on]
            con.print(f"{i.ref}: {_cli._e(i.name)} [{', '.join(flags)}]")
        con.print("name one for a certificate with `certpilot policy ID --issuer REF [--fallback REF]`")

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK


def revoke(cert_id: str, /, *,
           reason: Annotated[str, Parameter(help="RFC 5280 reason: unspecified, keyCompromise, superseded, "
                                                 "cessationOfOperation, affiliationChanged, privilegeWithdrawn, ...")],
           replace: Annotated[bool, Parameter(negative="", help="Renew, deploy and verify its successor first, then "
                                                                "revoke (a run of the `revoke` deployment).")] = False,
           crl_out: Annotated[Path | None, Parameter(help="Write the private CA's fresh CRL (PEM) here.")] = None,
           as_json: JsonFlag = False) -> int:
    """Revoke a certificate at the CA that issued it (ACME, the private CA and its CRL, AWS Private CA).

    Without --replace the certificate is revoked now: endpoints still serving it break for clients
    that check revocation. With --replace a `revoke` run renews and deploys it first.
    """
    from certpilot.operations import issuers as ops

    ops.check_reason(reason)
    if replace:
        _cli._known_certificate(cert_id)
        return _cli._trigger("revoke/revoke", {"certificate_id": cert_id, "reason": reason, "replace": True}, as_json)
    r = ops.revoke(_cli._ctx.services(keys=True), cert_id, reason=reason, actor="cli")
    if crl_out is not None and r.crl_pem:
        crl_out.write_text(r.crl_pem)
    data = {"certificate_id": r.certificate_id, "issuer": r.issuer, "reason": r.reason, "serial": r.serial,
            "already_revoked": r.already, "served_at": list(r.served_at),
            "crl": str(crl_out) if crl_out is not None and r.crl_pem else None}

    def render(con):
        if r.already:
            con.print(f"{cert_id} was already revoked; nothing changed")
            return
        con.print(f"{cert_id} revoked at {r.issuer} (serial {r.serial}, reason {r.reason})")
        if r.served_at:
            con.print(f"still deployed to {', '.join(r.served_at)}: renew it (`certpilot renew {cert_id}`) and "
                      "deploy the successor there")
        if data["crl"]:
            con.print(f"CRL written to {data['crl']}")

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK


def renewal_info(cert_id: str, /, *, as_json: JsonFlag = False) -> int:
    """Ask the certificate's CA for its renewal window (ARI, RFC 9773) and show the due point."""
    from certpilot.operations import issuers as ops
    from certpilot.operations.common import iso

    r = ops.renewal_info(_cli._ctx.services(keys=True), cert_id)
    data = {"certificate_id": cert_id, "due_at": iso(r.due_at) if r.due_at else None, "urgent": r.urgent,
            "window": {"start": iso(r.window.start), "end": iso(r.window.end),
                       "explanation_url": r.window.explanation_url} if r.window else None,
            "ask_again_at": iso(r.ask_again_at) if r.ask_again_at else None}

    def render(con):
        if r.window is None:
            con.print(f"{cert_id}: its CA serves no renewal information; due {data['due_at'] or 'when issued'} "
                      "(30 days or a third of its lifetime left)")
            return
        con.print(f"{cert_id}: the CA suggests renewing between {data['window']['start']} and "
                  f"{data['window']['end']}; due {data['due_at']}" + (" (URGENT: the window is past)" if r.urgent else ""))

    _cli._emit(data, render, as_json)
    return _cli.EXIT_OK
