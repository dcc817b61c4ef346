"""Prefect orchestration of the DVC pipeline: flows only schedule and run DVC stages; no ML logic lives here."""
