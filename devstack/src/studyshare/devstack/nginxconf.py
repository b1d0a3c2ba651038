"""The gateway's nginx configuration, generated from the route table (`routing.route_table`).

One `location` pair (`= /prefix` and `/prefix/`) per route prefix, proxied to the owning
service's keep-alive `upstream`; the gateway's own paths (`/healthz`, `/readyz`, `/metrics`,
`/openapi.json`, `/docs`) go to its small Python app. Bodies stream both ways (no request or
response buffering). nginx's own answers (upstream down or slow, service not in this stack,
no route, refused request) are RFC 9457 problem+json. Everything nginx writes (pid, temp
files) stays under `run_dir`; its error log is its stderr.
"""

from __future__ import annotations

import json
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from studyshare.contracts.routes import BODY_LIMITS, DEFAULT_BODY_MAX_BYTES
from studyshare.devstack.routing import Route, origin

#: the gateway's own paths, answered by its Python app
OWN_PATHS = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
#: the largest request body any route takes; the services refuse more per route (413)
MAX_BODY_BYTES = max(DEFAULT_BODY_MAX_BYTES, *(b.max_bytes for b in BODY_LIMITS))
#: nginx's own refusals, answered as problem+json: (status, title)
REFUSALS = ((400, "Bad Request"), (413, "Payload too large"), (414, "URI Too Long"))
#: `|upstream|status|seconds to the response head|`, sent to the Python app for `/metrics`
METRICS_FORMAT = "|$gw_upstream|$status|$upstream_header_time|"
#: the X-Correlation-ID a client sent when it is safe (plumbing.logging.SAFE_CORRELATION_ID);
#: otherwise the gateway makes one up: nginx's random `$request_id` written as a UUID
#: nginx's `$request_id` (32 hex digits) in the five groups of a UUID
REQUEST_ID_PARTS = "~^" + "".join(f"([0-9a-f]{{{n}}})" for n in (8, 4, 4, 4, 12)) + "$"
SAFE_CORRELATION_ID = "^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


@dataclass(frozen=True)
class NginxOptions:
    listen: str
    """`host:port` of the gateway"""
    ops: str
    """`host:port` of the gateway's Python app"""
    metrics_port: int
    """UDP port on 127.0.0.1 where the app reads one line per proxied request"""
    run_dir: Path
    connect_timeout_s: float = 2.0
    read_timeout_s: float = 300.0
    keepalive: int = 200
    workers: int = 1


def quoted(text: str) -> str:
    """An nginx string literal (nginx expands `$` even there, so none may occur)."""
    if "$" in text:
        raise ValueError(f"no $ in an nginx literal: {text!r}")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def duration(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def problem(status: int, title: str, detail: str, **extra: str) -> str:
    body = {"type": "about:blank", "status": status, "title": title, "detail": detail} | extra
    return json.dumps(body, separators=(",", ":"))


def _answer(name: str, status: int, body: str, upstream: str = "") -> str:
    counted = f"        set $gw_upstream {quoted(upstream)};\n" if upstream else ""
    return f"    location {name} {{\n{counted}        return {status} {quoted(body)};\n    }}\n"


def _refusals() -> str:
    return "".join(f"        error_page {code} @gw_{code};\n" for code, _ in REFUSALS)


def _proxied(host: str, upstream: str, failed: str, counted: str = "") -> str:
    """The body of a location proxying to `upstream` (Host `host`)."""
    name = f"        set $gw_upstream {quoted(counted)};\n" if counted else ""
    return (
        name + f"        proxy_pass http://{upstream};\n"
        f"        proxy_set_header Host {quoted(host)};\n"
        "        proxy_set_header Connection '';\n"
        "        proxy_set_header Proxy-Connection '';\n"
        "        proxy_set_header Proxy-Authorization '';\n"
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "        proxy_set_header X-Forwarded-Proto $scheme;\n"
        "        proxy_set_header X-Forwarded-Host $http_host;\n"
        "        proxy_set_header X-Correlation-ID $gw_cid;\n"
        f"        error_page 502 @gw_502_{failed};\n"
        f"        error_page 504 @gw_504_{failed};\n" + _refusals()
    )


def _locations(prefix: str, body: str) -> str:
    if prefix == "/":
        return f"    location / {{\n{body}    }}\n"
    return f"    location = {prefix} {{\n{body}    }}\n    location {prefix}/ {{\n{body}    }}\n"


def _user() -> str:
    """As root, the workers run as root too (nginx's default `nobody` could not use our
    run directory); otherwise nginx cannot change user and the directive is left out."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name};\n"


def render(routes: list[Route], options: NginxOptions) -> str:
    """The whole nginx.conf."""
    run = options.run_dir
    access_log = f"syslog:server=127.0.0.1:{options.metrics_port},nohostname,tag=gateway"
    origins = sorted({origin(r.url) for r in routes if r.url} | {options.ops})
    upstream_of = {o: f"gw_upstream_{i}" for i, o in enumerate(origins)}
    labels = sorted({r.name for r in routes if r.url} | {"gateway"})
    label_id = {name: f"u{i}" for i, name in enumerate(labels)}

    upstreams = "".join(
        f"    upstream {upstream_of[o]} {{\n"
        f"        server {o} max_fails=0;\n"
        f"        keepalive {options.keepalive};\n"
        "        keepalive_timeout 30s;\n"
        "        keepalive_requests 100000;\n"
        "    }\n"
        for o in origins
    )
    locations = ""
    for path in OWN_PATHS:
        body = _proxied(options.ops, upstream_of[options.ops], label_id["gateway"])
        locations += f"    location = {path} {{\n{body}    }}\n"
    for r in sorted(routes, key=lambda r: r.prefix):
        if r.url is None:
            detail = f"The {r.name} service is not running in this stack"
            body = problem(503, "Service Unavailable", detail, service=r.name)
            locations += _locations(r.prefix, f"        return 503 {quoted(body)};\n")
        else:
            o = origin(r.url)
            locations += _locations(r.prefix, _proxied(o, upstream_of[o], label_id[r.name], r.name))
    if not any(r.prefix == "/" for r in routes):
        body = problem(404, "Not Found", "No service answers this path")
        locations += f"    location / {{\n        return 404 {quoted(body)};\n    }}\n"
    for name in labels:
        service = "gateway's own app" if name == "gateway" else f"{name} service"
        down = problem(502, "Bad Gateway", f"The {service} is unreachable", service=name)
        late = f"The {service} did not answer in time"
        slow = problem(504, "Upstream timeout", late, service=name)
        counted = "" if name == "gateway" else name
        locations += _answer(f"@gw_502_{label_id[name]}", 502, down, counted)
        locations += _answer(f"@gw_504_{label_id[name]}", 504, slow, counted)
    for code, title in REFUSALS:
        locations += _answer(f"@gw_{code}", code, problem(code, title, title))

    return f"""\
# generated by studyshare.devstack.nginxconf from studyshare.contracts.routes: do not edit
daemon off;
master_process on;
worker_processes {options.workers};
pid {run}/nginx.pid;
error_log stderr warn;
{_user()}events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    access_log off;
    log_format gw_metrics '{METRICS_FORMAT}';
    server_tokens off;
    keepalive_timeout 75s;
    keepalive_requests 100000;
    client_max_body_size {MAX_BODY_BYTES};
    large_client_header_buffers 4 32k;
    underscores_in_headers on;
    merge_slashes off;
    proxy_http_version 1.1;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_buffer_size 64k;
    proxy_buffers 8 64k;
    proxy_connect_timeout {duration(options.connect_timeout_s)};
    proxy_read_timeout {duration(options.read_timeout_s)};
    proxy_send_timeout {duration(options.read_timeout_s)};
    proxy_redirect off;
    proxy_pass_header Server;
    proxy_pass_header Date;
    proxy_hide_header X-Correlation-ID;
    map $request_id $gw_request_uuid {{
        "{REQUEST_ID_PARTS}" "$1-$2-$3-$4-$5";
        default $request_id;
    }}
    map $http_x_correlation_id $gw_cid {{
        "~{SAFE_CORRELATION_ID}" $http_x_correlation_id;
        default $gw_request_uuid;
    }}
{upstreams}    server {{
        listen {options.listen};
        default_type application/problem+json;
        set $gw_upstream '';
        add_header X-Correlation-ID $gw_cid always;
        access_log {access_log} gw_metrics if=$gw_upstream;
{_refusals()}{_indent(locations)}    }}
}}
"""


def _indent(text: str) -> str:
    return "".join("    " + line if line.strip() else line for line in text.splitlines(True))
