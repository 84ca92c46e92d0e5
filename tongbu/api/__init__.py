"""The REST API of the embedded CRM on ``tongbu serve`` (``/api/...``): records, tokens, OpenAPI."""
