"""``tongbu serve``: the real-time path for every connector that pushes events (WeCom now; shops, ERPs later).

An external system POSTs an event → the :class:`EventSource` of that connector verifies and decodes it
(a bad signature is answered 403 and nothing is stored) → the event is written to a durable **inbox**
table and the sender is answered at once (WeCom retries after 5 s) → a worker pool applies it to the
CRM hub through the connector's mapping, quarantine and the hash-guarded upsert.

Guarantees, and how:

* **durable before ack**: the inbox insert commits before ``success`` is returned; pending rows are
  re-dispatched when the server restarts;
* **at most once per event**: the inbox has a unique key per source and *dedup key* (for WeCom the
  hash of the decrypted message), so a replay or a retry is acknowledged but applied only once; a
  timestamp window (checked by the source) turns away replays older than the dedup retention;
* **in order per record, bursts coalesced**: events are grouped by *record key* (e.g. one WeCom
  contact); one record is never applied by two workers at once, and events arriving for it within the
  coalescing window, or while it is being applied, are applied together with one fetch;
* **fast**: inbox inserts and hub writes go through one database thread that commits whatever has
  queued up in a single transaction (group commit), so the SQLite writer lock is never contended;
* **visible**: every applied event is reported to Dagster (runless asset materialisations /
  observations, batched off the hot path) and to ``GET /_tongbu/events/metrics``.

Connectors provide an event source in ``connectors/<name>/events.py`` (found by the registry); ``tongbu serve`` builds one per connection
of the project file whose connector has one, at ``/hooks/<connection>``.

The package, one module a concern: :mod:`tongbu.serve.config` (sources and options),
:mod:`tongbu.serve.app` (the ASGI app and the foreground server), :mod:`tongbu.serve.processor` (coalescing,
workers, retries, metrics), :mod:`tongbu.serve.database` (the group-commit database thread),
:mod:`tongbu.serve.observers` (Dagster reporting), :mod:`tongbu.serve.bodies` (bounded JSON bodies),
:mod:`tongbu.serve.cli` (the command's options; light, so mounting it imports no web stack). The inbox
table and its queries are core: :mod:`tongbu.inbox`. This ``__init__`` imports nothing, so that
``tongbu --help`` stays fast; import from the submodules.
"""
