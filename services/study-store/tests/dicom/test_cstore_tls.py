"""The C-STORE receiver's TLS option (issue 17, point 2; deploy/README.md "TLS"): with a
certificate, a key and a CA it speaks DICOM over TLS and admits only senders with a client
certificate of that CA; it stores into GridFS like any receiver pod on Kubernetes."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

from studyshare.plumbing.infra import free_port, wait_for_port

from .conftest import write_study

pytestmark = pytest.mark.infra


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def certificates(directory: Path) -> dict[str, Path]:
    """A CA, the receiver's certificate for 127.0.0.1 and a sender's, all signed by the CA."""
    d = directory
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(extension + "\n" if extension else "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"),
                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.crt"))  # fmt: skip
    return {p.name: p for p in d.iterdir()}


def send(port: int, path: Path, context: ssl.SSLContext | None) -> int | None:
    """C-STORE one file as MODALITY1; its status, or None when no association was made."""
    ae = AE(ae_title="MODALITY1")
    ae.add_requested_context(CTImageStorage)
    ae.acse_timeout = ae.network_timeout = 10
    tls = (context, "127.0.0.1") if context else None
    assoc = ae.associate("127.0.0.1", port, ae_title="STUDYSHARE", tls_args=tls)
    if not assoc.is_established:
        return None
    try:
        return int(assoc.send_c_store(dcmread(path)).Status)
    finally:
        assoc.release()


async def test_the_receiver_over_tls_takes_only_senders_with_a_certificate_of_its_ca(
    real_infra, mongo_db, tmp_path
):
    certs = certificates(Path(tmp_path))
    port = free_port()
    env = {
        **os.environ,
        "STUDYSHARE_ENVIRONMENT": "test",
        "STUDYSHARE_MONGO_URL": real_infra.mongo_url,
        "STUDYSHARE_KAFKA_BOOTSTRAP": real_infra.kafka_bootstrap,
        "STUDYSHARE_DATABASE": mongo_db.name,
        "STUDYSHARE_BLOB_BACKEND": "gridfs",
        "STUDYSHARE_BLOB_DIR": str(tmp_path / "unused-blobs"),
        "STUDYSHARE_SCP_PORT": str(port),
        "STUDYSHARE_SCP_CALLING_AE_DEPARTMENTS": '{"MODALITY1": "dep_ct"}',
        "STUDYSHARE_SCP_TLS_CERT_FILE": str(certs["server.crt"]),
        "STUDYSHARE_SCP_TLS_KEY_FILE": str(certs["server.key"]),
        "STUDYSHARE_SCP_TLS_CA_FILE": str(certs["ca.crt"]),
    }
    log = open(tmp_path / "scp.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "studyshare.study_store", "scp"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, 120, proc)
        _, files = write_study(tmp_path / "study", series=1, per_series=2)

        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca.crt"])
        client.load_cert_chain(certs["client.crt"], certs["client.key"])
        assert await asyncio.to_thread(send, port, files[0], client) == 0x0000

        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=certs["ca.crt"])
        assert await asyncio.to_thread(send, port, files[1], anonymous) is None, "no certificate"
        assert await asyncio.to_thread(send, port, files[1], None) is None, "no TLS"

        sop = str(dcmread(files[0]).SOPInstanceUID)
        for _ in range(100):
            if await mongo_db["dicom_instances"].find_one({"_id": sop}):
                break
            await asyncio.sleep(0.1)
        doc = await mongo_db["dicom_instances"].find_one({"_id": sop})
        assert doc is not None, (tmp_path / "scp.log").read_text()[-2000:]
        assert await mongo_db["blobs.files"].count_documents({"filename": doc["path"]}) == 1
        assert await mongo_db["dicom_instances"].count_documents({}) == 1
        assert not (tmp_path / "unused-blobs").exists()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
