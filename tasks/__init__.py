"""Prefect tasks: thin, retriable wrappers over `certpilot.operations`, passing IDs only.

Every task retries only what is worth retrying (`TransientError`, via `retry_condition_fn`),
with exponential backoff and jitter; tasks that touch keys never persist results or cache
(`persist_result=False, cache_policy=NO_CACHE`), and none takes or returns key material.
"""
