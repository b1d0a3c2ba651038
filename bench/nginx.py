"""nginx (Debian's package) as the static-file baseline: the same bytes StudyShare serves,
as plain files, with a configuration of its own on a free loopback port. Started as a child
process in the foreground (`daemon off`) and stopped by its PID."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from studyshare.devstack.nginx import binary
from studyshare.plumbing import infra
from studyshare.plumbing.testing import stop_processes

CONFIG = """\
worker_processes 1;
daemon off;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path {run}/body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /bench-nginx/ {{
            alias {root}/;
            default_type application/dicom;
        }}
    }}
}}
"""


@contextmanager
def static_files(root: Path, run_dir: Path) -> Iterator[str]:
    """nginx serving `root` (a directory inside `run_dir`) under `/bench-nginx/`; yields its
    base URL."""
    run = run_dir / "nginx"
    run.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o755)  # started by root, nginx's worker is `nobody`; mkdtemp made it 0700
    port = infra.free_port()
    conf = run / "nginx.conf"
    conf.write_text(CONFIG.format(run=run, port=port, root=root.resolve()))
    log = (run / "stderr.log").open("wb")
    process = subprocess.Popen([binary(), "-c", str(conf), "-p", str(run)], stderr=log)
    try:
        infra.wait_for_port(port, 15.0, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_processes([process], 10)
        log.close()
