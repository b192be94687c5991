"""Superset dashboards as code: the bundle, its provisioning and the Superset process helpers."""
