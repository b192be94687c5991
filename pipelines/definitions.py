"""The Dagster code location (``workspace.yaml`` loads ``pipelines.definitions``): the process's
settings are read here, once, and passed to everything."""

from pipelines.defs import build_definitions
from warehouse.settings import get_settings

defs = build_definitions(get_settings())
