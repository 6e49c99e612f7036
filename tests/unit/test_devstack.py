"""The local stack's own pieces that need no server: certificates, credentials, processes."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kube_transcode_devstack.credentials import Credentials
from kube_transcode_devstack.layout import Layout
from kube_transcode_devstack.pki import Pki
from kube_transcode_devstack.processes import Managed

pytestmark = pytest.mark.unit


def test_client_certificates_carry_user_and_groups_and_chain_to_the_ca(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.ensure()
    admin = x509.load_pem_x509_certificate(pki.cert("admin").read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "system:masters"
    )
    assert admin.issuer == ca.subject
    admin.verify_directly_issued_by(ca)
    # The serving certificate must be valid for the loopback address clients dial.
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.cert("apiserver")), str(pki.key("apiserver")))
    san = x509.load_pem_x509_certificate(pki.cert("apiserver").read_bytes()).extensions
    assert "127.0.0.1" in str(san)


def test_certificates_are_kept_across_runs(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    pki.ensure()
    first = pki.cert("admin").read_bytes()
    Pki(tmp_path).ensure()
    assert pki.cert("admin").read_bytes() == first
    assert oct(pki.key("admin").stat().st_mode)[-3:] == "600"


def test_credentials_are_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    first = Credentials.load_or_create(path)
    again = Credentials.load_or_create(path)
    assert first == again
    assert len(first.s3_secret_key) >= 30
    assert oct(path.stat().st_mode)[-3:] == "600"


def test_stop_terminates_the_whole_process_group(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    proc = Managed("sleeper", layout)
    # A parent that spawns a child: stop() must end both.
    script = "import subprocess,time; subprocess.Popen(['sleep','300']); time.sleep(300)"
    pid = proc.start([sys.executable, "-c", script])
    assert proc.start([sys.executable, "-c", script]) == pid, "a second start reuses the process"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _children(pid):
        time.sleep(0.05)
    child = _children(pid)[0]
    assert proc.stop(grace_seconds=5) is True
    assert not proc.running()
    assert not Path(f"/proc/{child}").exists() or _state(child) == "Z"
    assert proc.stop() is False, "stopping a stopped process is harmless"


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    proc = Managed("stubborn", Layout(tmp_path))
    script = (
        "import signal,time,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(300)"
    )
    proc.start([sys.executable, "-c", script])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "ready" not in proc.log_file.read_text():
        time.sleep(0.05)
    start = time.monotonic()
    proc.stop(grace_seconds=1)
    assert not proc.running()
    assert time.monotonic() - start < 5


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"
