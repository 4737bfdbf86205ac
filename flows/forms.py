"""The human steps as typed Prefect input forms (answered in the UI or through the API)."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field


class PaymentApproval(RunInput):
    """The shortfall of an order: approve the charge, or decline it (nothing is debited)."""

    approve: bool = Field(description="Approve charging the shortfall.")
    approver: str = Field(default="ui", description="Who approves (recorded in the audit log).")


class ManualDnsDone(RunInput):
    """DV-3: confirm the TXT record(s) shown above were added at your DNS host."""

    added: bool = Field(description="I added the record(s).")


class ManualFilePlaced(RunInput):
    """DV-3: confirm the validation file(s) shown above are on the web server."""

    placed: bool = Field(description="I placed the file(s).")


class CaContact(RunInput):
    """DV-5/DV-6: the person the CA calls or emails to verify an OV/EV application."""

    name: str = Field(min_length=1)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    phone: str = Field(min_length=5)
