"""Run state: cursors, pipeline leases, run history and the quarantine (tables and their store)."""
