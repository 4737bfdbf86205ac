"""Serving certpilot's deployments from one process (`certpilot up`) and its first scan."""

from __future__ import annotations

import os
import threading
import time


def _say(message: str) -> None:
    print(f"certpilot up: {message}", flush=True)


def serve_all(first_scan: bool = True) -> None:
    """Serve every deployment from this process (blocking); optionally start a first scan."""
    from prefect import serve

    from flows.admin import cancel, import_certificate, purchase
    from flows.apply import apply
    from flows.deploy import deploy
    from flows.emergency import emergency
    from flows.renew import renew
    from flows.scan import scan

    deployments = [
        scan.to_deployment(name="scan", cron="0 * * * *", description="Hourly inventory scan (PL-4, NT-1, CA-2)."),
        renew.to_deployment(name="renew", description="Stage 1: order and payment."),
        apply.to_deployment(name="apply", description="Stage 2: key, CSR, validation, CA review."),
        deploy.to_deployment(name="deploy", description="Stage 3: deploy and verify."),
        emergency.to_deployment(name="emergency", description="EM-1..3: restore a site with an expired certificate."),
        cancel.to_deployment(name="cancel", description="PL-7: cancel a not-activated certificate."),
        import_certificate.to_deployment(name="import", description="UP-3: import a certificate."),
        purchase.to_deployment(name="purchase", description="Buy a new certificate."),
    ]
    if first_scan:
        threading.Thread(target=_first_scan, name="first-scan", daemon=True).start()
    serve(*deployments, limit=8)


def _first_scan() -> None:
    from prefect.deployments import run_deployment

    for _ in range(120):
        try:
            run = run_deployment("scan/scan", timeout=0, idempotency_key=f"first-scan-{os.getpid()}")
            _say(f"first scan started: flow run {run.name} ({run.id})")
            return
        except Exception:  # noqa: BLE001 - deployments not registered yet
            time.sleep(0.5)
