"""Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here."""

from dagster_project.assets import build_definitions
from tongbu.vault import install_redaction

# Mask every secret the vault hands out in all log output of the code server and run workers.
install_redaction()

defs = build_definitions()
