"""Setting up a Prefect API for certpilot: block types, the embedded defaults, the concurrency
limits of the CA and DNS APIs. Used by `certpilot up` (and `certpilot setup`)."""

from __future__ import annotations


def configure_blocks() -> None:
    """Register certpilot's block types and save the embedded defaults when absent."""
    import blocks as b

    b.register_all()
    for block_cls, name, factory in (
        (b.PrivateCaBlock, "default", lambda: b.PrivateCaBlock()),
        (b.CertpilotConfigBlock, "default", lambda: b.CertpilotConfigBlock(default_issuer="private-ca/default")),
    ):
        try:
            block_cls.load(name)
        except ValueError:
            factory().save(name)


def ensure_concurrency_limits() -> None:
    """Create the global concurrency limits of the CA and DNS APIs when absent."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from tasks.pipeline import API_LIMITS

    async def go():
        async with get_client() as client:
            for name, limit in API_LIMITS.items():
                try:
                    await client.read_global_concurrency_limit_by_name(name)
                except Exception:  # noqa: BLE001 - absent: create it
                    await client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))

    asyncio.run(go())
