"""nginx (Debian's package, `scripts/install-nginx.sh`) as a child process, stopped by PID."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from pathlib import Path

from studyshare.devstack.processes import die_with_parent

SBIN = Path("/usr/sbin/nginx")  # not on a normal user's PATH


def binary(configured: str | None = None) -> str:
    """`configured`, else nginx from PATH, else /usr/sbin/nginx."""
    found = configured or shutil.which("nginx") or (str(SBIN) if SBIN.exists() else None)
    if found is None:
        raise SystemExit("nginx is missing: run scripts/install-nginx.sh (or make run / make test)")
    return found


def argv(nginx: str, conf: Path, run_dir: Path, *extra: str) -> list[str]:
    """The command line: prefix, configuration and error log all ours, never a system path."""
    return [nginx, "-p", f"{run_dir}/", "-c", str(conf), "-e", "stderr", *extra]


def check(nginx: str, conf: Path, run_dir: Path) -> None:
    """`nginx -t`: raises with nginx's own words when the configuration is wrong."""
    done = subprocess.run(  # noqa: S603 - our own argv
        argv(nginx, conf, run_dir, "-t", "-q"), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"nginx refuses {conf}:\n{done.stderr}")


def start(nginx: str, conf: Path, run_dir: Path) -> subprocess.Popen:
    """nginx in the foreground; it gets SIGTERM if we die (call from the main thread)."""
    return subprocess.Popen(  # noqa: S603 - our own argv
        argv(nginx, conf, run_dir),
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


def stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (nginx's fast shutdown) to this PID, SIGKILL after `timeout`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
