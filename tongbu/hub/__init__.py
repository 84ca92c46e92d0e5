"""The core hub: CRM tables, their JSON schemas, the bulk-upsert store and the authored API."""
