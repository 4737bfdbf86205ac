"""Prefect flows: orchestration only. Every decision is in `certpilot.core`, every act in
`certpilot.operations` through the tasks; each flow is re-entrant over the database state."""
