"""Dagster pipelines: bronze ``raw_events`` → silver ``events`` (+ quarantine) → gold marts."""
