"""The storage layer shared by the ingest API and the pipelines.

It owns the event contract (``contract``), table names and schemas (``tables``),
where tables live and how they are opened (``lake``), the gold SQL files (``sql/``)
and the one typed settings object (``settings``). It imports neither ``ingest_api``
nor ``pipelines``.
"""
