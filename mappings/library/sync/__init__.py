"""Two-way sync declarations (``sync:`` files, read by ``pipelines/sync/config.py``).

They live apart from the mapping files one level up, which every loader of the library reads as mappings.
"""
