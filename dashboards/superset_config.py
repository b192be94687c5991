"""Superset configuration for eventlake (read by Superset through SUPERSET_CONFIG_PATH).

Secrets come from the environment; for a local run `scripts/stack.py` generates them once under
the data folder (never committed). Metadata lives in SQLite under the data folder unless
EVENTLAKE_SUPERSET_DATABASE_URI points elsewhere (e.g. a Postgres URI).
"""

import os
from pathlib import Path

_DATA_DIR = Path(os.environ.get("EVENTLAKE_DATA_DIR", "data")).resolve()
_HOME = _DATA_DIR / "superset"

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]  # >= 32 bytes; changing it breaks stored connections
SQLALCHEMY_DATABASE_URI = os.environ.get(
    "EVENTLAKE_SUPERSET_DATABASE_URI", f"sqlite:///{_HOME / 'superset.db'}?check_same_thread=false"
)
DATA_DIR = str(_HOME)

# The Public role is Gamma-like and provisioning grants it read access to the serving database;
# Superset 6.1 still sends anonymous dashboard views to /login/, so viewers (and the browser test)
# log in. Set EVENTLAKE_SUPERSET_PUBLIC=0 to drop the Public role's permissions entirely.
if os.environ.get("EVENTLAKE_SUPERSET_PUBLIC", "1") == "1":
    AUTH_ROLE_PUBLIC = "Public"
    PUBLIC_ROLE_LIKE = "Gamma"

# Results cache off by default: the serving snapshot is the cache. EVENTLAKE_SUPERSET_CACHE=simple
# turns on an in-process results cache (see docs/benchmarks.md for what it changes).
_CACHE_TYPE = {"simple": "SimpleCache"}.get(os.environ.get("EVENTLAKE_SUPERSET_CACHE", ""), "NullCache")
DATA_CACHE_CONFIG = {"CACHE_TYPE": _CACHE_TYPE, "CACHE_DEFAULT_TIMEOUT": 300}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}

# No outbound calls from this machine's Superset.
MAPBOX_API_KEY = ""
FEATURE_FLAGS = {"DASHBOARD_RBAC": False}
TALISMAN_ENABLED = False
WTF_CSRF_ENABLED = True
