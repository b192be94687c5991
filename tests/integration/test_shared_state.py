"""What ingest nodes share through Redis (``EVENTLAKE_REDIS_URL``): a source's rate limit counted for
all nodes together, a source added on one machine working on every node at its first request, and a
revoked key refused by every worker of every node within ``EVENTLAKE_SOURCES_REFRESH_MS``. Without
Redis each worker process keeps its own, and ``/readyz`` says which."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import ApiServer, Env, RedisServer, free_port, start_api, start_redis
from warehouse.contract.rows import event_id_for
from warehouse.lake.tables import RAW_EVENTS
from warehouse.sources import hash_key

pytestmark = pytest.mark.integration

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"


def events(prefix: str, n: int) -> list[dict[str, object]]:
    return [{"uuid": f"{prefix}-{i}", "timestamp": 0, "user": "u", "userAgent": BROWSER} for i in range(n)]


def post_fresh(node: ApiServer, key: str, prefix: str, n: int = 1) -> int:
    """POST ``n`` events on a new connection (so each request may reach another worker); the status."""
    with httpx.Client(timeout=30) as http:
        return http.post(f"{node.url}/v1/events", headers={"X-Write-Key": key}, json=events(prefix, n)).status_code


def sources_cli(env: Env, redis_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    extra = {"EVENTLAKE_REDIS_URL": redis_url} if redis_url else {}
    return subprocess.run(
        [str(Path(sys.executable).parent / "eventlake-sources"), *args],
        env={**os.environ, "EVENTLAKE_DATA_DIR": str(env.data_dir), **extra},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_two_nodes_count_one_rate_limit_through_redis(env: Env, redis_server: RedisServer) -> None:
    redis.Redis.from_url(redis_server.url).flushdb()
    shared = {"EVENTLAKE_REDIS_URL": redis_server.url, "EVENTLAKE_RATE_LIMIT": "100/minute"}
    nodes = [start_api(env, shared, workers=2) for _ in range(2)]
    try:
        assert httpx.get(f"{nodes[0].url}/readyz", timeout=30).json()["shared_state"] == "redis"
        assert nodes[0].post("/v1/events", json=events("a", 60)).status_code == 202
        refused = nodes[1].post("/v1/events", json=events("b", 60))
        assert refused.status_code == 429  # 60 + 60 > 100 across both nodes
        assert refused.json()["error"] == "rate_limited" and int(refused.headers["Retry-After"]) >= 1
        assert nodes[1].post("/v1/events", json=events("c", 40)).status_code == 202  # exactly the 100
    finally:
        for node in nodes:
            node.proc.terminate()
            node.proc.wait(timeout=30)


def test_without_redis_each_worker_counts_alone_and_readyz_says_so(env: Env) -> None:
    nodes = [start_api(env, {"EVENTLAKE_RATE_LIMIT": "100/minute"}) for _ in range(2)]
    try:
        assert httpx.get(f"{nodes[0].url}/readyz", timeout=30).json() == {
            "status": "ready",
            "shared_state": "per_process",
        }
        assert nodes[0].post("/v1/events", json=events("a", 60)).status_code == 202
        assert nodes[1].post("/v1/events", json=events("b", 60)).status_code == 202  # the other process's count
    finally:
        for node in nodes:
            node.proc.terminate()
            node.proc.wait(timeout=30)


@pytest.mark.parametrize("shared", [True, False], ids=["redis", "file"])
def test_a_new_key_works_at_once_and_a_revoked_one_is_refused_everywhere_within_the_bound(
    env: Env, redis_server: RedisServer, shared: bool
) -> None:
    """Two nodes of two workers (with Redis; without it, one node: the sources file is this
    machine's). A key added by the CLI works on every worker at its first request; after the CLI
    revokes it, every worker refuses it within the refresh interval (0.5 s here)."""
    url = redis_server.url if shared else None
    if shared:
        redis.Redis.from_url(redis_server.url).flushdb()
    settings = {"EVENTLAKE_SOURCES_REFRESH_MS": "500", **({"EVENTLAKE_REDIS_URL": url} if url else {})}
    nodes = [start_api(env, settings, workers=2) for _ in range(2 if shared else 1)]
    try:
        added = sources_cli(env, url, "add", "web")
        assert added.returncode == 0, added.stderr
        key = added.stdout.strip()
        for node in nodes:
            assert all(post_fresh(node, key, f"w{node.url[-5:]}-{i}") == 202 for i in range(8))
        revoked = sources_cli(env, url, "revoke", "web")
        assert revoked.returncode == 0, revoked.stderr
        started = time.monotonic()
        refused_everywhere = None
        while time.monotonic() - started < 5:
            statuses = [post_fresh(node, key, f"r{time.monotonic()}") for node in nodes for _ in range(8)]
            if set(statuses) == {401}:
                refused_everywhere = time.monotonic() - started
                break
        assert refused_everywhere is not None and refused_everywhere <= 0.5 + 0.5  # the bound, and a request's time
        assert "web" not in sources_cli(env, url, "list").stdout
        again = sources_cli(env, url, "revoke", "web")
        assert again.returncode == 1 and "no source 'web'" in again.stderr
    finally:
        for node in nodes:
            node.proc.terminate()
            node.proc.wait(timeout=30)


def test_redis_down_is_a_503_that_stores_nothing_and_the_node_recovers_with_it(env: Env) -> None:
    server = start_redis()
    node = start_api(env, {"EVENTLAKE_REDIS_URL": server.url})
    try:
        assert node.post("/v1/events", json=events("before", 3)).status_code == 202
        server.stop()
        refused = node.post("/v1/events", json=events("down", 3))
        assert refused.status_code == 503 and refused.json()["error"] == "shared_state_unavailable"
        ready = httpx.get(f"{node.url}/readyz", timeout=30)
        assert ready.status_code == 503 and "Redis" in ready.json()["reason"]
        server = start_redis(server.port)
        assert node.post("/v1/events", json=events("after", 3)).status_code == 202
    finally:
        node.proc.terminate()
        node.proc.wait(timeout=30)
        server.stop()
    bronze = env.lake.open(RAW_EVENTS)
    assert bronze is not None
    stored = set(bronze.to_pyarrow_table(columns=["event_id"])["event_id"].to_pylist())
    assert stored == {event_id_for(f"{prefix}-{i}", "page_view") for prefix in ("before", "after") for i in range(3)}


def test_a_bad_or_duplicate_entry_in_redis_refuses_every_key_until_it_is_removed(env: Env) -> None:
    """Fails closed: with a source twice (Redis and the file) or an entry that is not a source, no
    key is accepted (503 ``sources_unavailable``, ``/readyz`` 503), a key revoked meanwhile is not
    accepted either, and the CLI says what is wrong in one line; removing the entry recovers."""
    server = start_redis()
    client = redis.Redis.from_url(server.url)
    node = start_api(env, {"EVENTLAKE_REDIS_URL": server.url, "EVENTLAKE_SOURCES_REFRESH_MS": "100"}, workers=2)
    try:
        mobile = sources_cli(env, server.url, "add", "mobile").stdout.strip()
        assert post_fresh(node, mobile, "m0") == 202
        assert sources_cli(env, server.url, "add", "local").returncode == 1  # in the file already
        for entry in ('{"name": "local", "write_key_sha256": "' + "a" * 64 + '"}', "not a source"):
            client.hset("eventlake:sources", "intruder", entry)
            client.incr("eventlake:sources:version")
            time.sleep(0.3)
            statuses = {post_fresh(node, key, "x") for key in (node.key, mobile) for _ in range(4)}
            assert statuses == {503}
            assert httpx.get(f"{node.url}/readyz", timeout=30).status_code == 503
            listed = sources_cli(env, server.url, "list")
            assert listed.returncode == 1 and listed.stderr.count("\n") == 1 and "Traceback" not in listed.stderr
            client.hdel("eventlake:sources", "intruder")
        client.hset("eventlake:sources", "intruder", "not a source")
        client.sadd("eventlake:sources:revoked", hash_key(mobile))  # revoked while the entry is bad
        client.incr("eventlake:sources:version")
        time.sleep(0.3)
        assert post_fresh(node, mobile, "m1") == 503
        client.hdel("eventlake:sources", "intruder")
        client.incr("eventlake:sources:version")
        time.sleep(0.3)
        assert {post_fresh(node, mobile, f"m{i}") for i in range(4)} == {401}  # the revocation holds
        assert {post_fresh(node, node.key, f"l{i}") for i in range(4)} == {202}
    finally:
        node.proc.terminate()
        node.proc.wait(timeout=30)
        server.stop()


def test_a_running_worker_keeps_refusing_a_revoked_key_after_redis_lost_its_data(env: Env) -> None:
    server = start_redis()
    node = start_api(env, {"EVENTLAKE_REDIS_URL": server.url, "EVENTLAKE_SOURCES_REFRESH_MS": "100"})
    try:
        key = sources_cli(env, server.url, "add", "web").stdout.strip()
        assert post_fresh(node, key, "w0") == 202
        assert sources_cli(env, server.url, "revoke", "web").returncode == 0
        time.sleep(0.3)
        assert post_fresh(node, key, "w1") == 401
        redis.Redis.from_url(server.url).flushdb()  # a restart without persistence
        time.sleep(0.3)
        assert post_fresh(node, key, "w2") == 401
        assert post_fresh(node, node.key, "l0") == 202
    finally:
        node.proc.terminate()
        node.proc.wait(timeout=30)
        server.stop()


def test_a_node_starts_while_redis_is_down_and_a_frozen_redis_stalls_no_other_request(env: Env) -> None:
    port = free_port()
    node = start_api(env, {"EVENTLAKE_REDIS_URL": f"redis://127.0.0.1:{port}/0"})  # nothing listens yet
    server = None
    try:
        refused = node.post("/v1/events", json=events("down", 2))
        assert refused.status_code == 503 and refused.json()["error"] in (
            "sources_unavailable",
            "shared_state_unavailable",
        )
        assert httpx.get(f"{node.url}/readyz", timeout=30).status_code == 503
        server = start_redis(port)
        assert node.post("/v1/events", json=events("up", 2)).status_code == 202
        os.kill(server.proc.pid, signal.SIGSTOP)  # frozen: its requests time out after 1 s
        slow = threading.Thread(target=lambda: node.post("/v1/events", json=events("frozen", 2)))
        slow.start()
        time.sleep(0.2)
        started = time.monotonic()
        assert httpx.get(f"{node.url}/healthz", timeout=30).status_code == 200
        assert time.monotonic() - started < 0.5  # liveness does not wait for Redis
        slow.join()
        os.kill(server.proc.pid, signal.SIGCONT)
    finally:
        node.proc.terminate()
        node.proc.wait(timeout=30)
        if server is not None:
            server.stop()
