"""The bi-directional sync engine: field-level three-way merge of the hub and its linked systems.

``policy`` declares who owns which field; ``merge`` decides, entity by entity, what comes in and what
goes out. See docs/architecture.md ("Two-way sync").
"""
