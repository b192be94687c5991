"""The event contract: what every wire format becomes in bronze, and the native format itself.

Every accepted event becomes one bronze ``raw_events`` row (:func:`bronze_row`) whatever
protocol carried it; the protocol is recorded in ``source_format`` and the write key's source
in ``source``. The package holds the rules all formats share (:mod:`.rows`: event ids, the bronze row, per-event
size; :mod:`.time`: timestamps and clock-skew correction), the native format (:mod:`.native`), the
Segment-compatible one (:mod:`.segment`) and how silver reads either back (:mod:`.formats`).

Structural problems (not an object, no ``uuid``, missing or unparseable timestamp,
``events``/``app`` of the wrong type, an event over the size limit) raise
:class:`StructuralError`; the ingest API rejects that one payload. Content rules (timestamp
range, name patterns, …) are the pipeline's job (``expectations/``) and send rows to quarantine.
"""
