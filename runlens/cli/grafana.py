"""``runlens grafana push|provision`` and ``runlens report``: the dashboards in Grafana, or in one
HTML page.

All render ``dashboards.panels``: push uploads
the generated Grafana JSON and alert rules through grafana-client, provision writes a tenant's
provisioning files, report runs the same SQL and draws it with plotly.

The Grafana token comes from the environment (``RUNLENS_GRAFANA_TOKEN``, else
``GRAFANA_TOKEN``) or a file (``--token-file``): a command line is readable by every user of the
machine (``ps``, ``/proc/PID/cmdline``), so ``--token`` is deprecated and warns. Sending it over
plain http to another host warns too. The token is never printed.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import urlparse

import typer

from runlens.cli.common import UserError, add_secret, err, out, parse_when, query_client, settings_of
from runlens.cli.reporting import reason, write_report

if TYPE_CHECKING:
    from grafana_client import GrafanaApi

_Fetched = TypeVar("_Fetched")

grafana_app = typer.Typer(help="Grafana: upload runlens' datasource, dashboards and alert rules.",
                          no_args_is_help=True)

WEBHOOK_ENV = "RUNLENS_GRAFANA_WEBHOOK_URL"
TOKEN_ENVS = ("RUNLENS_GRAFANA_TOKEN", "GRAFANA_TOKEN")


def _warn(text: str) -> None:
    err.print(f"runlens: warning: {text}", highlight=False, markup=False, soft_wrap=True)


def safe_url(url: str) -> str:
    """``url`` without its user:password part (for messages)."""
    parsed = urlparse(url)
    if parsed.username is None and parsed.password is None:
        return url
    host = parsed.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parsed.port}" if parsed.port else "")
    return parsed._replace(netloc=netloc).geturl()


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_warning(url: str) -> str | None:
    """The warning for sending credentials to ``url`` in the clear, or None."""
    parsed = urlparse(url)
    if parsed.scheme == "http" and not is_loopback(parsed.hostname):
        return (f"sending the Grafana token over plain http to {parsed.hostname}: anyone on the network path "
                "can read it (use https)")
    return None


def _from_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was typed on the command line (not taken from the environment).
    By name: typer ships its own copy of click's ParameterSource."""
    source = ctx.get_parameter_source(name)
    return getattr(source, "name", None) == "COMMANDLINE"


def resolve_token(ctx: typer.Context | None, given: str | None, token_file: Path | None) -> str:
    """The Grafana token: ``--token-file``, else ``--token`` (deprecated, warns) or the
    environment (``RUNLENS_GRAFANA_TOKEN``, then ``GRAFANA_TOKEN``). One-line error if none."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise UserError(f"--token-file: cannot read {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise UserError(f"--token-file: {token_file} is empty")
    elif given:
        token = given
        if ctx is not None and _from_command_line(ctx, "token"):
            _warn("--token is deprecated: the command line is visible to other users of this machine "
                  "(ps, /proc); set RUNLENS_GRAFANA_TOKEN or use --token-file")
    else:
        token = next((os.environ[name] for name in TOKEN_ENVS if os.environ.get(name)), "")
        if not token:
            raise UserError("no Grafana token: set RUNLENS_GRAFANA_TOKEN (or GRAFANA_TOKEN), or use --token-file")
    add_secret(token)               # scrubbed from any error line
    if ":" in token:
        add_secret(token.split(":", 1)[1])
    return token


# --------------------------------------------------------------------------- push


class GrafanaPush:
    """Create or update, by uid, everything runlens provisions. Safe to run again."""

    def __init__(self, api: GrafanaApi, out: Callable[[str], object] = print) -> None:
        self.api = api
        self.out = out

    # -- checks

    def check(self, url: str) -> tuple[str, str]:
        """Fail with one line if ``url`` is not a reachable Grafana or the token is not accepted."""
        from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

        try:
            health = self.api.client.GET("/health")
        except GrafanaException as exc:
            if exc.status_code == 0:
                raise UserError(f"cannot reach Grafana at {url}: {reason(exc)}") from None
            raise UserError(f"{url} does not answer like Grafana (GET /api/health: HTTP {exc.status_code})") from None
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot reach Grafana at {url}: {reason(exc)}") from None
        if not isinstance(health, dict) or "database" not in health:
            raise UserError(f"{url} does not answer like Grafana (no health report at /api/health)")
        try:
            org = self.api.organization.get_current_organization()
        except GrafanaUnauthorizedError:
            raise UserError(f"Grafana at {url} rejected the token (401 Unauthorized): check RUNLENS_GRAFANA_TOKEN"
                              ) from None
        except GrafanaClientError as exc:
            if exc.status_code == 403:
                raise UserError(f"the token is not allowed to read the organisation at {url} (403): "
                                  "use a service account token with the Admin role (of that organisation)") from None
            raise
        return str(health.get("version", "?")), org.get("name", "?")

    # -- resources

    def datasource(self, body: dict[str, Any]) -> str:
        uid = body["uid"]
        existing = self._get(lambda: self.api.datasource.get_datasource_by_uid(uid))
        if existing is None:
            self.api.datasource.create_datasource(body)
            return "created"
        self.api.datasource.update_datasource_by_uid(uid, {**body, "id": existing.get("id")})
        return "updated"

    def folder(self, uid: str, title: str) -> str:
        existing = self._get(lambda: self.api.folder.get_folder(uid))
        if existing is None:
            self.api.folder.create_folder(title, uid=uid)
            return "created"
        if existing.get("title") != title:
            self.api.folder.update_folder(uid, title=title, overwrite=True)
            return "updated"
        return "unchanged"

    def dashboard(self, model: dict[str, Any], folder_uid: str) -> str:
        existing = self._get(lambda: self.api.dashboard.get_dashboard(model["uid"]))
        self.api.dashboard.update_dashboard({"dashboard": {**model, "id": None}, "folderUid": folder_uid,
                                             "overwrite": True, "message": "runlens grafana push"})
        return "created" if existing is None else "updated"

    def alert_rule(self, rule: dict[str, Any]) -> str:
        provisioning = self.api.alertingprovisioning
        existing = self._get(lambda: provisioning.get_alertrule(rule["uid"]))
        if existing is None:
            provisioning.create_alertrule(rule)
            return "created"
        provisioning.update_alertrule(rule["uid"], rule)
        return "updated"

    def rule_group(self, folder_uid: str, group: str, interval_s: int, rules: list[dict[str, Any]]) -> None:
        self.api.alertingprovisioning.update_rule_group(
            folder_uid, group, {"title": group, "folderUid": folder_uid, "interval": interval_s, "rules": rules})

    def contact_point(self, point: dict[str, Any]) -> str:
        provisioning = self.api.alertingprovisioning
        existing = [p for p in provisioning.get_contactpoints() or [] if p.get("uid") == point["uid"]]
        if not existing:
            provisioning.create_contactpoint(point)
            return "created"
        provisioning.update_contactpoint(point["uid"], point)
        return "updated"

    def policy_route(self, route: dict[str, Any]) -> str:
        """Put runlens' route under the root policy (replacing an earlier one); the rest of the
        organisation's notification tree stays as it is."""
        provisioning = self.api.alertingprovisioning
        tree = provisioning.get_notification_policy_tree() or {}
        routes = tree.get("routes") or []
        kept = [r for r in routes if r.get("object_matchers") != route["object_matchers"]]
        tree["routes"] = [route, *kept]
        provisioning.set_notification_policy_tree(tree)
        return "updated" if len(kept) < len(routes) else "created"

    @staticmethod
    def _get(fetch: Callable[[], _Fetched]) -> _Fetched | None:
        from grafana_client.client import GrafanaClientError

        try:
            return fetch()
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise


def datasource_body(clickhouse_url: str | None, reader_user: str | None, reader_password: str | None,
                    database: str | None, tenant: str | None = None) -> dict[str, Any]:
    """The provisioned datasource (dashboards/provisioning/datasources/clickhouse.yaml, or for a
    tenant its own from ``sinks.tenancy``) as the HTTP API takes it, with the connection pointed
    wherever Grafana reaches ClickHouse."""
    import yaml

    from dashboards.grafana import DATASOURCES_FILE
    from sinks import tenancy

    if tenant:
        spec = dict(yaml.safe_load(tenancy.grafana_datasources([tenant]))["datasources"][0])
        password_env = tenancy.password_env(tenant)
    else:
        spec = dict(yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"][0])
        password_env = "RUNLENS_GRAFANA_READER_PASSWORD"
    json_data = dict(spec.get("jsonData") or {})
    if clickhouse_url:
        parsed = urlparse(clickhouse_url if "//" in clickhouse_url else f"http://{clickhouse_url}")
        if not parsed.hostname:
            raise UserError(f"--clickhouse-url: no host in {clickhouse_url!r}")
        json_data.update(host=parsed.hostname, port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                         protocol="http", secure=parsed.scheme == "https")
    if reader_user:
        json_data["username"] = reader_user
    if database:
        json_data["defaultDatabase"] = database
    password = reader_password if reader_password is not None else os.environ.get(password_env, "")
    return {"uid": spec["uid"], "name": spec["name"], "type": spec["type"], "access": spec.get("access", "proxy"),
            "isDefault": False, "jsonData": json_data, "secureJsonData": {"password": password}}


def push(api: GrafanaApi, url: str, *, clickhouse_url: str | None = None, reader_user: str | None = None,
         reader_password: str | None = None, database: str | None = None, webhook_url: str | None = None,
         tenant: str | None = None, out: Callable[[str], object] = print) -> dict[str, str]:
    """Upload everything; returns what happened to each resource (created / updated / ...).

    With ``tenant``: the tenant's datasource (its ClickHouse reader), its folder and its
    dashboards (``dashboards.grafana.TENANT_DASHBOARDS``, account fixed); no alert rules (they
    read every account). Point ``api`` at the tenant's own organisation."""
    from dashboards import grafana as G
    from dashboards import panels as P

    url = safe_url(url)
    pusher = GrafanaPush(api, out)
    version, org = pusher.check(url)
    out(f"Grafana {version} at {url}, organisation {org!r}")
    done: dict[str, str] = {}
    body = datasource_body(clickhouse_url, reader_user, reader_password, database, tenant)
    done[f"datasource {body['uid']}"] = pusher.datasource(body)
    if tenant:
        folder_uid, folder_title = G.tenant_folder(tenant)
        done[f"folder {folder_uid}"] = pusher.folder(folder_uid, folder_title)
        for model in G.tenant_dashboards(tenant):
            done[f"dashboard {model['uid']}"] = pusher.dashboard(model, folder_uid)
        done["alert rules"] = "skipped (they read every account: operators only)"
        for what, outcome in done.items():
            out(f"{what}: {outcome}")
        return done
    done[f"folder {P.FOLDER_UID}"] = pusher.folder(P.FOLDER_UID, P.FOLDER_TITLE)
    for d in P.DASHBOARDS:
        done[f"dashboard {d.uid}"] = pusher.dashboard(G.build_dashboard(d), P.FOLDER_UID)
    rules = G.alert_rules_api()
    for rule in rules:
        done[f"alert rule {rule['uid']}"] = pusher.alert_rule(rule)
    pusher.rule_group(P.FOLDER_UID, P.ALERT_GROUP, 60, rules)
    if webhook_url:
        point = G.contact_point()
        point["settings"] = {**point["settings"], "url": webhook_url}
        done[f"contact point {point['uid']}"] = pusher.contact_point(point)
        route = {**G.notification_policy(), "object_matchers": [["team", "=", "runlens"]]}
        done["notification route team=runlens"] = pusher.policy_route(route)
    else:
        done["contact point"] = "skipped (no --webhook-url)"
    for what, outcome in done.items():
        out(f"{what}: {outcome}")
    return done


def _api(url: str, token: str | None, timeout: float, org_id: int | None = None) -> GrafanaApi:
    from grafana_client import GrafanaApi

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise UserError(f"--url: {safe_url(url)!r} is not an http(s) URL (e.g. http://localhost:3000)")
    credential: Any = token
    if token and ":" in token and not token.startswith("glsa_"):
        credential = tuple(token.split(":", 1))   # user:password (basic auth)
    api = GrafanaApi.from_url(url, credential=credential, timeout=timeout)
    if org_id is not None:
        api.client.organization_id = org_id
        api.client.s.headers["X-Grafana-Org-Id"] = str(org_id)
    return api


@grafana_app.command("push")
def grafana_push(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(help="Grafana's URL, e.g. https://grafana.example.",
                                     envvar="RUNLENS_GRAFANA_URL")],
    token: Annotated[str | None, typer.Option(
        help="Deprecated (visible in the process list): set RUNLENS_GRAFANA_TOKEN (or GRAFANA_TOKEN) to a "
             "service account token (Admin role) or user:password.",
        envvar=list(TOKEN_ENVS), show_envvar=False)] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="Read the token from this file (first line) instead of the environment.")] = None,
    tenant: Annotated[str | None, typer.Option(
        help="Upload one account's dashboards on its own datasource (its ClickHouse reader) into its folder; "
             "no alert rules. Use with --org-id: the tenant's own organisation.")] = None,
    org_id: Annotated[int | None, typer.Option(
        min=1, help="Grafana organisation to upload into (default: the token's).")] = None,
    clickhouse_url: Annotated[str | None, typer.Option(
        help="Where Grafana reaches ClickHouse (http://host:8123). Default: as provisioned "
             "(http://clickhouse:8123, the compose service).")] = None,
    reader_user: Annotated[str | None, typer.Option(help="ClickHouse user for Grafana (read-only).")] = None,
    reader_password: Annotated[str | None, typer.Option(
        help="Its password (default: RUNLENS_GRAFANA_READER_PASSWORD).",
        envvar="RUNLENS_GRAFANA_READER_PASSWORD")] = None,
    database: Annotated[str | None, typer.Option(help="Database the dashboards read (default: runlens).")] = None,
    webhook_url: Annotated[str | None, typer.Option(
        help="Webhook for alert notifications; also creates the contact point and the team=runlens "
             "notification route (grouped by account and workflow).", envvar=WEBHOOK_ENV)] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each request.")] = 10.0,
) -> None:
    """Upload the datasource, folder, dashboards and alert rules to a Grafana (create or update by uid).

    The token comes from RUNLENS_GRAFANA_TOKEN (or GRAFANA_TOKEN) or --token-file."""
    from grafana_client.client import GrafanaException

    from sinks import tenancy

    if tenant is not None:
        try:
            tenancy.check_account(tenant)
        except ValueError as exc:
            raise UserError(f"--tenant: {exc}") from None
    if urlparse(url).password:
        _warn("--url carries a password, visible to other users of this machine (ps, /proc); "
              "set RUNLENS_GRAFANA_TOKEN instead")
    secret = resolve_token(ctx, token, token_file)
    if reader_password and _from_command_line(ctx, "reader_password"):
        _warn("--reader-password is visible to other users of this machine (ps, /proc); "
              "set RUNLENS_GRAFANA_READER_PASSWORD (or the tenant's RUNLENS_GRAFANA_<ACCOUNT>_PASSWORD)")
    warning = transport_warning(url)
    if warning:
        _warn(warning)
    api = _api(url, secret, timeout, org_id)
    try:
        push(api, url, clickhouse_url=clickhouse_url, reader_user=reader_user, reader_password=reader_password,
             database=database, webhook_url=webhook_url, tenant=tenant,
             out=lambda text: out.print(text, highlight=False))
    except GrafanaException as exc:
        raise UserError(f"Grafana refused the upload: {reason(exc)}") from None
    except OSError as exc:
        raise UserError(f"lost the connection to Grafana at {safe_url(url)}: {reason(exc)}") from None


@grafana_app.command("provision")
def grafana_provision(
    tenant: Annotated[str, typer.Option(help="The account whose Grafana files to write.")],
    org_id: Annotated[int, typer.Option(min=1, help="The tenant's Grafana organisation (create it first).")] = 1,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Directory to write into (default: grafana-ACCOUNT).")] = None,
    clickhouse_url: Annotated[str | None, typer.Option(
        help="Where Grafana reaches ClickHouse (http://host:8123; default: http://clickhouse:8123).")] = None,
    database: Annotated[str, typer.Option(help="Database the dashboards read.")] = "runlens",
    dashboards_path: Annotated[str | None, typer.Option(
        help="Where Grafana will find the dashboards directory (default: "
             "/var/lib/grafana/dashboards/runlens-tenants/ACCOUNT).")] = None,
) -> None:
    """Write one tenant's Grafana provisioning: its dashboards on its own datasource (logging in as
    the tenant's ClickHouse reader, held to its rows), the datasource and a dashboard provider
    for its folder, all in its own organisation. Mount DIR/provisioning/* into Grafana's
    provisioning directories and DIR/dashboards at --dashboards-path."""
    from dashboards import grafana as G

    host, port, secure = "clickhouse", 8123, False
    if clickhouse_url:
        parsed = urlparse(clickhouse_url if "//" in clickhouse_url else f"http://{clickhouse_url}")
        if not parsed.hostname or parsed.scheme not in ("http", "https"):
            raise UserError(f"--clickhouse-url: no http(s) host in {safe_url(clickhouse_url)!r}")
        host, secure = parsed.hostname, parsed.scheme == "https"
        port = parsed.port or (8443 if secure else 8123)
    try:
        files = G.tenant_files(tenant, org_id=org_id, dashboards_path=dashboards_path, database=database,
                               host=host, port=port, secure=secure)
    except ValueError as exc:
        raise UserError(f"--tenant: {exc}" if "account" in str(exc) else str(exc)) from None
    root = out_dir or Path(f"grafana-{tenant}")
    for relative, text in files.items():
        path = root / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
        out.print(f"wrote {path}", highlight=False)


# --------------------------------------------------------------------------- report


def report(
    ctx: typer.Context,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")] = Path("report.html"),
    since: Annotated[str, typer.Option(help="From: 24h, 7d (ago) or RFC 3339.")] = "24h",
    until: Annotated[str | None, typer.Option(help="Until: duration ago or RFC 3339 (default: now).")] = None,
    account: Annotated[str | None, typer.Option(help="Account(s), comma-separated (default: all).")] = None,
    workflow: Annotated[str | None, typer.Option(help="Workflow id(s), comma-separated.")] = None,
    version: Annotated[str | None, typer.Option(help="Workflow version(s), comma-separated.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Workflow type(s), comma-separated.")] = None,
    trigger: Annotated[str | None, typer.Option(help="Trigger(s), comma-separated.")] = None,
    site: Annotated[str | None, typer.Option(help="Site id(s), comma-separated.")] = None,
    card: Annotated[str | None, typer.Option(help="Card id(s), comma-separated.")] = None,
) -> None:
    """Render every dashboard panel into one self-contained HTML page (no Grafana needed)."""
    start = parse_when(since)
    end = parse_when(until) if until else datetime.now(UTC)
    if end <= start:
        raise UserError(f"--since {since} is not before --until {until or 'now'}")
    variables = {"account": account, "workflow": workflow, "version": version, "type": type_,
                 "trigger": trigger, "site": site, "card": card}
    client = query_client(settings_of(ctx))
    path = write_report(client, out_file, start, end, {k: v for k, v in variables.items() if v},
                        warn=lambda text: err.print(f"runlens: warning: {text}", highlight=False, markup=False,
                                                        soft_wrap=True))
    out.print(f"wrote {path.resolve()}", highlight=False)
