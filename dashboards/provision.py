"""Push the dashboards-as-code bundle (``dashboards/bundle/``) into a running Superset.

Runs in Superset's own venv. Idempotent: every object carries a stable uuid and the assets
import overwrites by uuid, so re-provisioning never duplicates databases, datasets, charts or
dashboards. Steps:

1. log in with ``superset-client`` (its OAuth2 session carries the JWT and CSRF token), then
   also through the login form on that same session: with only a JWT, Superset 6.x's list
   endpoints filter as if the caller were anonymous and return ``count: 0`` for an admin
   (upstream apache/superset#39834), so the session needs a logged-in cookie too;
2. zip the bundle with the serving snapshot's absolute path filled into the database URI and
   POST it to ``/api/v1/assets/import/`` through that session. superset-client's own
   ``assets.import_file`` opens ``Path(file).name`` relative to the working directory instead
   of the given path (superset-client 1.0.0), so the upload is made with its session directly;
3. store on each chart a ``query_context`` built from its params, so ``/api/v1/chart/<id>/data/``
   answers (the bundle format leaves it to the UI to create one on first save);
4. let the Public role read the serving database (a read-only grant; Superset 6.1 still asks
   anonymous dashboard viewers to log in).

Usage: python dashboards/provision.py --url http://127.0.0.1:8088 --serving-path data/serving/serving.duckdb
(credentials from SUPERSET_ADMIN_USER / SUPERSET_ADMIN_PASSWORD).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml
from supersetapiclient.client import SupersetClient

log = logging.getLogger("provision")

BUNDLE = Path(__file__).resolve().parent / "bundle"
DATABASE_NAME = "eventlake_serving"


class ProvisioningError(RuntimeError):
    """Superset refused a provisioning call; the message holds its answer."""


def _check(response: Any) -> None:
    if not response.ok:
        raise ProvisioningError(
            f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:2000]}"
        )


def bundle_zip(serving_path: Path) -> bytes:
    """The bundle as an import zip, the database URI pointing at ``serving_path`` (read-only)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(BUNDLE.rglob("*.yaml")):
            text = path.read_text().replace("__SERVING_PATH__", str(serving_path.resolve()))
            archive.writestr(f"eventlake/{path.relative_to(BUNDLE)}", text)
    return buffer.getvalue()


def query_context(chart: dict[str, Any]) -> dict[str, Any]:
    """A chart-data query context equivalent to the chart's form data (no post-processing).

    Shape: Superset's ``QueryContext`` (superset/common/query_context.py): datasource, one query
    with columns (x axis + group by, or raw columns), metrics, filters, row limit and ordering (a
    raw table's ``order_by_cols``, a table's "sort by" metric, or the first metric descending).
    """
    params = json.loads(chart["params"])
    filters = [
        {"col": f["subject"], "op": f["operator"], "val": f["comparator"]}
        for f in params.get("adhoc_filters", [])
        if f["operator"] != "TEMPORAL_RANGE"
    ]
    metrics: list[Any]
    orderby: list[list[Any]] = []
    if params.get("query_mode") == "raw":
        columns, metrics = params["all_columns"], []
        orderby = [json.loads(column) for column in params.get("order_by_cols", [])]  # '["day", false]'
    else:
        columns = ([params["x_axis"]] if params.get("x_axis") else []) + params.get("groupby", [])
        # Most viz types list "metrics"; single-metric ones (funnel, big number) name one "metric".
        metrics = params.get("metrics") or ([params["metric"]] if params.get("metric") else [])
        if params.get("timeseries_limit_metric"):  # a table's "sort by"
            orderby = [[params["timeseries_limit_metric"], not params.get("order_desc", False)]]
        elif metrics and (params.get("order_desc") or params.get("sort_by_metric")):
            orderby = [[metrics[0], False]]
    query: dict[str, Any] = {
        "columns": columns,
        "metrics": metrics,
        "filters": filters,
        "extras": {"where": "", "having": ""},
        "row_limit": params.get("row_limit", 10000),
        "time_range": "No filter",
        "orderby": orderby,
    }
    return {
        "datasource": {"id": chart["datasource_id"], "type": "table"},
        "force": False,
        "queries": [query],
        "form_data": params,
        "result_format": "json",
        "result_type": "full",
    }


def login(url: str, username: str, password: str) -> SupersetClient:
    """A superset-client whose session is authenticated by JWT and by a login-form cookie.

    Raises:
        ProvisioningError: when the credentials are refused.
    """
    client = SupersetClient(host=url, username=username, password=password)
    session = client.session
    form = session.get(f"{url}/login/")
    _check(form)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form.text)
    response = session.post(
        f"{url}/login/",
        data={"username": username, "password": password, "csrf_token": token.group(1) if token else ""},
        allow_redirects=False,
    )
    me = session.get(f"{client.base_url}/me/")
    if response.status_code != 302 or me.json()["result"].get("is_anonymous"):
        raise ProvisioningError(f"login as {username!r} was refused")
    csrf = session.get(f"{client.base_url}/security/csrf_token/")
    _check(csrf)
    session.headers["X-CSRFToken"] = csrf.json()["result"]  # the token is bound to the new session
    return client


def provision(client: SupersetClient, serving_path: Path) -> dict[str, int]:
    """Import the bundle, attach query contexts, open the database to the Public role.

    Returns ``{chart uuid: chart id}`` for the bundle's charts.

    Raises:
        ProvisioningError: when Superset refuses a step.
    """
    base = client.base_url
    response = client.session.post(
        f"{base}/assets/import/",
        files={"bundle": ("eventlake.zip", bundle_zip(serving_path), "application/zip")},
        data={"passwords": "{}"},
    )
    _check(response)

    wanted = {yaml.safe_load(p.read_text())["uuid"] for p in (BUNDLE / "charts").glob("*.yaml")}
    listing = client.session.get(
        f"{base}/chart/",
        params={"q": "(columns:!(id,uuid,params,datasource_id),page_size:100)"},
    )
    _check(listing)
    charts = {c["uuid"]: c for c in listing.json()["result"] if c["uuid"] in wanted}
    missing = wanted - charts.keys()
    if missing:
        raise RuntimeError(f"charts missing after import: {sorted(missing)}")
    for chart in charts.values():
        update = client.session.put(
            f"{base}/chart/{chart['id']}",
            json={"query_context": json.dumps(query_context(chart)), "query_context_generation": True},
        )
        _check(update)
    _grant_public_read(client)
    return {uuid: chart["id"] for uuid, chart in charts.items()}


def _grant_public_read(client: SupersetClient) -> None:
    base = client.base_url
    roles = client.session.get(f"{base}/security/roles/", params={"q": "(page_size:100)"}).json()["result"]
    public = next(r["id"] for r in roles if r["name"] == "Public")
    pvms = client.session.get(f"{base}/security/permissions-resources/", params={"q": "(page_size:1000)"}).json()[
        "result"
    ]
    wanted = [
        p["id"]
        for p in pvms
        if p["permission"]["name"] == "database_access" and p["view_menu"]["name"].startswith(f"[{DATABASE_NAME}]")
    ]
    current = client.session.get(f"{base}/security/roles/{public}/permissions/").json()["result"]
    ids = sorted({p["id"] for p in current} | set(wanted))
    response = client.session.post(
        f"{base}/security/roles/{public}/permissions", json={"permission_view_menu_ids": ids}
    )
    _check(response)


def main() -> int:
    """CLI: provision the bundle into the Superset at ``--url``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8088")
    parser.add_argument("--serving-path", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    client = login(args.url, os.environ["SUPERSET_ADMIN_USER"], os.environ["SUPERSET_ADMIN_PASSWORD"])
    charts = provision(client, args.serving_path)
    log.info("provisioned %d charts and their dashboards", len(charts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
