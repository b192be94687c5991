"""``eventlake-replay``: send sample files to the ingest API as a real client would.

Each file's lines become native payloads (:mod:`warehouse.contract.native`) POSTed in batches over
HTTP, the file's ``app`` being its name up to the first dot (:func:`app_name`). The formats and the
columns read are described once, in :data:`FORMATS` (what ``--help`` prints); the access log's is
https://httpd.apache.org/docs/2.4/logs.html#combined.

Payload uuids of ``.log`` and ``.csv`` files are ``uuid5(REPLAY_NAMESPACE, f"{file name}:{line number}")``:
replaying a file is idempotent while genuinely repeated lines stay distinct events.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import logging
import re
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tenacity import RetryError, retry, retry_if_exception, stop_after_attempt, wait_exponential
from tqdm import tqdm

from pipelines.cli.closed_pipe import quiet_on_closed_pipe
from warehouse.settings import read_settings
from warehouse.sources import ensure_local_source

log = logging.getLogger(__name__)

#: Sent as the User-Agent header: the replayed events come from a server-side sender, and
#: generic HTTP-library agents (python-httpx/…) are rightly flagged as bots by crawlerdetect.
USER_AGENT = "eventlake-replay/0.1"
REPLAY_NAMESPACE = uuid.UUID("0c6b1f7e-2a55-5d2e-9f0e-6a1d2b3c4d5e")

# host ident authuser [date] "request" status bytes "referrer" "user-agent"
_COMBINED = re.compile(
    r'^(?P<ip>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\S+)'
    r'(?: "(?P<referrer>[^"]*)" "(?P<agent>[^"]*)")?'
)
_REQUIRED_CSV_COLUMNS = {"user_id", "event", "timestamp"}
_OPTIONAL_CSV_COLUMNS = {"session_id"}
#: File name endings replay reads: access log, event CSV (plain or gzip), native payloads.
SUFFIXES = (".log", ".csv", ".csv.gz", ".ndjson", ".jsonl")

#: What ``eventlake-replay --help`` says of the files it reads (kept next to the readers below).
FORMATS = """\
app: every event of a file gets the file's name up to its first dot as its app
(samples/onlineshop_2019.csv -> onlineshop_2019, shop.v2.csv.gz -> shop); an NDJSON
payload that has its own "app" keeps it.

formats, by the end of the file name:
  .log             Apache/NCSA access log in combined format, one request per line:
      host ident user [17/May/2015:10:05:03 +0000] "GET /path HTTP/1.1" status bytes "referrer" "agent"
                   (or common format: without referrer and agent). One page_view per line,
                   with method, status and bytes as properties; the page is --log-base-url +
                   the request path (an absolute URL as it is); the user is a pseudonymous id
                   derived from host (never the address itself), which is sent as ip too;
                   referrer and agent are kept. Lines in another format are skipped with a
                   warning.
  .csv, .csv.gz    comma-separated text (gzip-compressed for .csv.gz) with a header line.
                   Columns read: user_id, event, timestamp (required), session_id (optional);
                   any other column becomes a property of the event, as text. One event per
                   row, named by event; timestamp is ISO 8601 (2019-11-01 17:59:13.273932,
                   2024-03-13T10:21:14+02:00), read as UTC when it has no offset.
  .ndjson, .jsonl  one native payload (a JSON object: uuid, timestamp, events, ...) per line,
                   sent as it is; blank lines are skipped.

Replaying a file again is idempotent: a .log or .csv line's payload uuid is derived from the
file name and line number (an NDJSON payload keeps its own): bronze receives the events again,
silver keeps each once (the Data quality dashboard counts the repeats as duplicate).
"""


def app_name(path: Path) -> str:
    """The ``app`` a sample file is replayed as: its name up to the first dot (``shop.v2.csv`` → ``shop``)."""
    return path.name.split(".", 1)[0]


def _payload_uuid(path: Path, line_number: int) -> str:
    return str(uuid.uuid5(REPLAY_NAMESPACE, f"{path.name}:{line_number}"))


def pseudonymous_user(ip: str) -> str:
    """A stable pseudonymous user id for a client address (SHA-256 based, not reversible by eye)."""
    return "visitor-" + hashlib.sha256(f"eventlake-replay:{ip}".encode()).hexdigest()[:16]


def access_log_payloads(path: Path, base_url: str) -> Iterator[dict[str, Any]]:
    """Native payloads for each line of a combined-format access log.

    Lines that do not match the format are logged and skipped.
    """
    app = app_name(path)
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            match = _COMBINED.match(line)
            if match is None:
                log.warning("%s:%d is not in combined log format, skipped", path.name, number)
                continue
            parts = match["request"].split(" ")
            method, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", match["request"])
            payload: dict[str, Any] = {
                "uuid": _payload_uuid(path, number),
                "timestamp": datetime.strptime(match["time"], "%d/%b/%Y:%H:%M:%S %z").isoformat(),
                "app": app,
                "page": base_url.rstrip("/") + target if target.startswith("/") else target,
                "user": pseudonymous_user(match["ip"]),
                "ip": match["ip"],
                "events": {
                    "page_view": {
                        "method": method,
                        "status": int(match["status"]),
                        "bytes": int(match["bytes"]) if match["bytes"].isdigit() else 0,
                    }
                },
            }
            if match["referrer"] and match["referrer"] != "-":
                payload["referrer"] = match["referrer"]
            if match["agent"]:
                payload["userAgent"] = match["agent"]
            yield payload


def _as_rfc3339(naive_or_aware: str) -> str:
    parsed = datetime.fromisoformat(naive_or_aware)
    return parsed.isoformat() if parsed.tzinfo else parsed.isoformat() + "Z"


def csv_payloads(path: Path) -> Iterator[dict[str, Any]]:
    """Native payloads for each row of an event CSV (``user_id,event,timestamp[,session_id,…]``).

    Raises:
        ValueError: when a required column is missing.
    """
    app = app_name(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as text:
        reader = csv.DictReader(text)
        missing = _REQUIRED_CSV_COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path.name}: missing CSV columns {sorted(missing)}")
        for number, row in enumerate(reader, start=2):  # line 1 is the header
            extra = {k: v for k, v in row.items() if k not in _REQUIRED_CSV_COLUMNS | _OPTIONAL_CSV_COLUMNS}
            payload: dict[str, Any] = {
                "uuid": _payload_uuid(path, number),
                "timestamp": _as_rfc3339(row["timestamp"]),
                "app": app,
                "user": row["user_id"],
                "events": {row["event"]: extra},
            }
            if row.get("session_id"):
                payload["session"] = row["session_id"]
            yield payload


def ndjson_payloads(path: Path) -> Iterator[dict[str, Any]]:
    """Native payloads, one JSON object per line; blank lines are skipped.

    Raises:
        ValueError: a line that is not a JSON object (with its line number).
    """
    app = app_name(path)
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                payload = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(payload, dict):
                raise ValueError(f"{path.name}:{number}: expected a JSON object (a native payload)")
            payload.setdefault("app", app)
            yield payload


def payloads_for(path: Path, base_url: str) -> Iterator[dict[str, Any]]:
    """Pick the mapping by file type: ``.log`` → access log, ``.csv``/``.csv.gz`` → event CSV,
    ``.ndjson``/``.jsonl`` → native payloads.

    Raises:
        ValueError: for any other file type.
    """
    if path.name.endswith(".log"):
        return access_log_payloads(path, base_url)
    if path.name.endswith((".csv", ".csv.gz")):
        return csv_payloads(path)
    if path.name.endswith((".ndjson", ".jsonl")):
        return ndjson_payloads(path)
    raise ValueError(f"{path.name}: unsupported sample file (expected a name ending in {', '.join(SUFFIXES)})")


@dataclass
class ReplayResult:
    """Totals of one replay: events accepted, payloads rejected, highest bronze version acked."""

    accepted: int = 0
    rejected: int = 0
    bronze_version: int | None = None


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code in (429, 503)


@retry(retry=retry_if_exception(_retryable), stop=stop_after_attempt(6), wait=wait_exponential(0.2, max=5))
def _post(client: httpx.Client, url: str, batch: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(url, json=batch)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def _batches(items: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def replay(
    paths: list[Path],
    api_url: str,
    write_key: str,
    batch_size: int = 200,
    concurrency: int = 4,
    base_url: str = "http://semicomplete.com",
    progress: bool = True,
) -> ReplayResult:
    """POST every payload of ``paths`` to ``{api_url}/v1/events`` as the source of ``write_key``.

    Safe to repeat. Retries transport errors, 429 and 503 (a replay is idempotent by
    construction). 200 payloads per POST stay well under the API's 500 KB request limit.

    Raises:
        httpx.HTTPStatusError: on any other non-2xx answer (e.g. 401: unknown write key).
        tenacity.RetryError: transport errors, 429 or 503 still after 6 attempts.
        ValueError: a file of another type than :data:`SUFFIXES`, or whose content is not in its
            format (:func:`csv_payloads`, :func:`ndjson_payloads`); the files before it were sent.
        OSError: a file cannot be read.
    """
    result = ReplayResult()
    url = api_url.rstrip("/") + "/v1/events"
    headers = {"User-Agent": USER_AGENT, "X-Write-Key": write_key}
    with httpx.Client(timeout=60, headers=headers) as client, ThreadPoolExecutor(concurrency) as pool:
        for path in paths:
            with tqdm(desc=path.name, unit="payload", disable=not progress, file=sys.stderr) as bar:
                batches = _batches(payloads_for(path, base_url), batch_size)
                for sent, body in pool.map(lambda b: (b, _post(client, url, b)), batches):
                    result.accepted += body["accepted"]
                    result.rejected += len(body["rejected"])
                    version = body.get("bronze_version")
                    if version is not None:
                        result.bronze_version = max(version, result.bronze_version or -1)
                    bar.update(len(sent))
    return result


@quiet_on_closed_pipe
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints ``accepted=N rejected=N bronze_version=V`` on success.

    Exit status 0: every file sent; 1: the ingest API did not answer or refused a batch (e.g. 401: an
    unknown write key), or a file's content is not in its format (a CSV without a required column, a
    line of NDJSON that is no JSON object; the files before it were sent); 2: a path is not a file of
    one of :data:`SUFFIXES`' types, or a setting is invalid.
    """
    parser = argparse.ArgumentParser(
        prog="eventlake-replay",
        description="Send sample files to the ingest API (POST /v1/events) as a real client would.",
        epilog=FORMATS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", type=Path, help=f"sample files ({', '.join(SUFFIXES)}; formats below)")
    parser.add_argument(
        "--api-url",
        default=None,
        help="ingest API base URL (default: http://127.0.0.1:8000, the port from EVENTLAKE_INGEST_PORT)",
    )
    parser.add_argument(
        "--write-key",
        default=None,
        help="the source's write key (default: the local source's key under EVENTLAKE_DATA_DIR)",
    )
    parser.add_argument("--batch-size", type=int, default=200, help="payloads per POST (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight (default: %(default)s)")
    parser.add_argument(
        "--log-base-url",
        default="http://semicomplete.com",
        help="site prefix for access-log request paths (default: %(default)s, the bundled log's site)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = read_settings("eventlake-replay")
    api_url = args.api_url or f"http://{settings.ingest_host}:{settings.ingest_port}"
    for path in args.paths:
        if not path.name.endswith(SUFFIXES):
            parser.error(f"{path}: unsupported sample file (expected a name ending in {', '.join(SUFFIXES)})")
        if not path.is_file():
            parser.error(f"{path}: no such file")
    write_key = args.write_key or ensure_local_source(settings)
    try:
        result = replay(
            args.paths,
            api_url,
            write_key,
            args.batch_size,
            args.concurrency,
            args.log_base_url,
            progress=not args.no_progress,
        )
    except RetryError as error:
        sys.stderr.write(
            f"eventlake-replay: the ingest API at {api_url} did not answer: {error.last_attempt.exception()}\n"
        )
        return 1
    except httpx.HTTPStatusError as error:
        sys.stderr.write(
            f"eventlake-replay: the ingest API at {api_url} answered {error.response.status_code}: "
            f"{error.response.text[:500]}\n"
        )
        return 1
    except (ValueError, OSError) as error:  # a file's content is not in its format, or unreadable
        sys.stderr.write(f"eventlake-replay: {error}\n")
        return 1
    tqdm.write(f"accepted={result.accepted} rejected={result.rejected} bronze_version={result.bronze_version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
