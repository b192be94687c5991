"""``eventlake-sources``: create a source and print its write key, revoke one, or list them.

With ``EVENTLAKE_REDIS_URL`` the sources are the nodes' shared ones (:class:`warehouse.sources.SharedSources`):
a source added here works on every node at its first request; a revoked one (wherever it was
configured) is refused by every worker of every node within ``EVENTLAKE_SOURCES_REFRESH_MS``.
Without it, the sources file of this machine."""

from __future__ import annotations

import argparse
import sys

import redis
from pydantic import ValidationError

from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from warehouse.settings import Settings, SourceConfig, read_settings
from warehouse.sources import (
    SharedSources,
    SourceRegistry,
    SourcesError,
    add_source,
    hash_key,
    new_write_key,
    read_sources_file,
    remove_source,
)


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """CLI: ``eventlake-sources add NAME [--rate-limit 5000/second]``, ``eventlake-sources revoke NAME``
    or ``eventlake-sources list``.

    Exit status 0: done; 1: the name exists anywhere (add) or is unknown (revoke), a rate limit is
    not one, a source configured in ``EVENTLAKE_SOURCES`` cannot be revoked without Redis, or the
    sources cannot be read (Redis unreachable, a bad entry): one line on stderr says which.
    """
    parser = argparse.ArgumentParser(prog="eventlake-sources", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add", help="create a source and print its write key (shown once)")
    add.add_argument("name")
    add.add_argument("--rate-limit", default=None, help="e.g. 5000/second (default: EVENTLAKE_RATE_LIMIT)")
    revoke = commands.add_parser("revoke", help="revoke a source's write key (every node refuses it)")
    revoke.add_argument("name")
    commands.add_parser("list", help="list source names and their rate limits")
    args = parser.parse_args(argv)
    settings = read_settings("eventlake-sources")
    shared = SharedSources(settings.redis_url) if settings.redis_url else None
    try:
        return _run(args, settings, shared)
    except (SourcesError, redis.RedisError) as error:
        sys.stderr.write(f"eventlake-sources: {error}\n")
        return 1


def _run(args: argparse.Namespace, settings: Settings, shared: SharedSources | None) -> int:
    if args.command == "add":
        configured = read_sources_file(settings.sources_path) + list(settings.sources)
        if shared is not None:
            configured += shared.read()[1]
        if any(source.name == args.name for source in configured):
            sys.stderr.write(f"eventlake-sources: source {args.name!r} exists already\n")
            return 1
        try:
            if shared is None:
                key = add_source(settings.sources_path, args.name, args.rate_limit)
            else:
                key = new_write_key()
                shared.add(SourceConfig(name=args.name, write_key_sha256=hash_key(key), rate_limit=args.rate_limit))
        except ValidationError as error:  # the name or the rate limit
            problem = error.errors(include_input=False)[0]
            sys.stderr.write(f"eventlake-sources: {problem['loc'][-1]}: {problem['msg']}\n")
            return 1
        sys.stdout.write(key + "\n")
        return 0
    registry = SourceRegistry(list(settings.sources), settings.sources_path, shared)
    registry.check()
    if args.command == "list":
        for name in sorted(registry.names()):
            source = registry.named(name)
            sys.stdout.write(f"{name}\t{(source.rate_limit if source else None) or settings.rate_limit}\n")
        return 0
    source = registry.named(args.name)
    if source is None:
        sys.stderr.write(f"eventlake-sources: no source {args.name!r} (or it is revoked already)\n")
        return 1
    if shared is not None:
        shared.revoke(source)
        remove_source(settings.sources_path, args.name)
    elif not remove_source(settings.sources_path, args.name):
        sys.stderr.write(
            f"eventlake-sources: {args.name!r} comes from EVENTLAKE_SOURCES: remove it there and restart the API "
            "(or share the sources through Redis, EVENTLAKE_REDIS_URL, where any source can be revoked)\n"
        )
        return 1
    where = "every node" if shared is not None else "this machine's API"
    sys.stdout.write(f"revoked {args.name!r}: {where} refuses its key within {settings.sources_refresh_ms} ms\n")
    return 0
