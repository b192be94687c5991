"""The Dagster code location (``workspace.yaml`` loads ``pipelines.definitions``): the process's
settings are read here, once, and passed to everything."""

from pipelines.defs import build_definitions
from warehouse.settings import Settings

defs = build_definitions(Settings())
