"""Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from __future__ import annotations

from dagster_project.assets import build_definitions

defs = build_definitions()
