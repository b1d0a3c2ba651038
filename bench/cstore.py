"""C-STORE receive: our receiver vs. pynetdicom's storescp app (the DICOM library we build
on) and dcmtk's, all fed by dcmtk's storescu.

`INSTANCES` images (512 x 512, 8 bit: ~256 KiB each) of one study in one association. Ours
(`python -m studyshare.study_store scp`, blobs in a directory, own SecantusDB) checks and
stores each object, notes it in the received journal before its success goes out, and indexes
the objects with their study events every `scp_flush_instances`; its figure runs until the
last object is indexed. The storescp apps only write each file to a directory (they listen on
every interface, having no bind option; they run for seconds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pymongo import MongoClient

from bench.harness import Figure, LocalInfra
from studyshare.devstack.dicomgen import DemoStudy, write_images
from studyshare.plumbing import infra
from studyshare.plumbing.testing import Infra, ServiceProcesses, stop_processes

INSTANCES = int(os.environ.get("BENCH_CSTORE_INSTANCES", "300"))
SIZE = 512
CALLING, CALLED = "MODALITY1", "STUDYSHARE"
#: dcmtk keeps Nagle's algorithm on unless told: 40 ms (a delayed ACK) per object otherwise
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def _study_files(directory: Path, count: int) -> tuple[str, list[Path]]:
    """`count` images of a new study as files; (its study uid, the files)."""
    key = uuid.uuid4().hex[:12]
    study = DemoStudy(key, key, "Bench^Cstore", "19700101", "F", "CT", "CT", "20260101", key)
    return study.study_uid, write_images(study, directory, count, size=SIZE)


def _storescu(port: int, files: list[Path]) -> float:
    """Seconds storescu takes to send `files` in one association (each acknowledged)."""
    started = time.perf_counter()
    sent = subprocess.run(
        [
            infra.dcmtk("storescu"),
            "-aet",
            CALLING,
            "-aec",
            CALLED,
            "127.0.0.1",
            str(port),
            *map(str, files),
        ],
        capture_output=True,
        timeout=600,
        check=False,
        env=DCMTK_ENV,
    )
    if sent.returncode != 0:
        raise RuntimeError(f"storescu failed: {sent.stderr.decode()[-500:]}")
    return time.perf_counter() - started


def _storescp_rate(workdir: Path, files: list[Path], command: list[str], name: str) -> float:
    """Instances/s a storescp (`command`, given its AE title, directory and port) takes in."""
    port = infra.free_port()
    proc = infra.storescp(port, workdir / name, CALLED, command, DCMTK_ENV)
    try:
        return len(files) / _storescu(port, files)
    finally:
        stop_processes([proc], 10)


def _wait_indexed(env: LocalInfra, database: str, study_uid: str, count: int) -> None:
    """Until the study's `count` instances are indexed (2 minutes at most)."""
    with MongoClient(env.mongo_url) as client:
        studies = client[database].dicom_studies
        deadline = time.monotonic() + 120
        while (studies.find_one({"_id": study_uid}) or {}).get("instance_count", 0) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} instances not indexed within 2 minutes")
            time.sleep(0.05)


def _our_rate(env: LocalInfra, workdir: Path, files: list[Path], study_uid: str) -> tuple:
    """(instances/s until all are indexed, instances/s acknowledged)."""
    port, database = infra.free_port(), f"bench_cstore_{uuid.uuid4().hex[:8]}"
    processes = ServiceProcesses(
        Infra(env.kafka_bootstrap, env.mongo_url, None, None, workdir), workdir
    )
    environment = processes.env(
        database,
        "study-store-scp",
        blob_dir=str(workdir / "blobs"),
        scp_port=str(port),
        scp_ae_title=CALLED,
        scp_calling_ae_departments=json.dumps({CALLING: "dep_bench"}),
    )
    try:
        infra.wait_for_port(
            port, 60, processes.module("studyshare.study_store", "scp", environment)
        )
        started = time.perf_counter()
        acknowledged = _storescu(port, files)
        _wait_indexed(env, database, study_uid, len(files))
        return len(files) / (time.perf_counter() - started), len(files) / acknowledged
    finally:
        processes.stop_all(10)
        with MongoClient(env.mongo_url) as client:
            client.drop_database(database)


def measure(env: LocalInfra) -> Figure:
    with tempfile.TemporaryDirectory(prefix="bench-cstore-") as name:
        workdir = Path(name)
        study_uid, files = _study_files(workdir / "files", INSTANCES)
        library = [sys.executable, "-m", "pynetdicom", "storescp", "--max-pdu", "0"]
        baseline = _storescp_rate(workdir, files, library, "pynetdicom")
        native = _storescp_rate(workdir, files, [infra.dcmtk("storescp")], "dcmtk")
        ours, acknowledged = _our_rate(env, workdir, files, study_uid)
    return Figure(
        "C-STORE receive, until indexed",
        ours,
        baseline,
        "instances/s",
        ">= 0.5 x pynetdicom's storescp",
        ours >= 0.5 * baseline,
        f"{INSTANCES} images of ~{SIZE * SIZE // 1024} KiB in one association from dcmtk's "
        f"storescu; ours acknowledged {acknowledged:,.0f}/s; the baseline is the DICOM library "
        f"we build on, writing files only; dcmtk's storescp (C++) takes {native:,.0f}/s",
    )
