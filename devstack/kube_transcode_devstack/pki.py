"""Certificates and keys for the local control plane: one CA, serving and client certificates.

Users are client certificates signed by the CA (CN = user, O = groups), as kube-apiserver expects.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.folder / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.folder / "sa.pub"

    def cert(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    def ensure(self) -> None:
        """Create whatever is missing; existing material is kept so restarts stay valid."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-transcode-local-ca")])
            cert = (
                _builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        key_cert_sign=True,
                        crl_sign=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .sign(key, hashes.SHA256())
            )
            _write_key(self.ca_key, key)
            self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if not self.sa_key.exists():
            sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_key(self.sa_key, sa)
            self.sa_pub.write_bytes(
                sa.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        self._issue(
            "apiserver",
            "kube-apiserver",
            [],
            server=True,
            dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ips=["127.0.0.1", "10.96.0.1"],
        )
        self._issue("admin", "kube-transcode-admin", ["system:masters"])
        self._issue("controller-manager", "system:kube-controller-manager", [])
        self._issue("scheduler", "system:kube-scheduler", [])
        self._issue("node-agent", "system:node-agent", ["system:masters"])
        self._issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", [])
        self._issue("front-proxy-client", "front-proxy-client", [])

    def ensure_kubelet_serving(self, node: str) -> None:
        """The serving certificate of ``node``'s kubelet API (the node agent's container logs):
        ``kubelet-<node>.crt``, for 127.0.0.1 and the node's name, as a kubelet's would be."""
        self._issue(
            f"kubelet-{node}",
            f"system:node:{node}",
            ["system:nodes"],
            server=True,
            dns=[node],
            ips=["127.0.0.1"],
        )

    def _issue(
        self,
        name: str,
        common_name: str,
        groups: list[str],
        *,
        server: bool = False,
        dns: list[str] | None = None,
        ips: list[str] | None = None,
    ) -> None:
        if self.cert(name).exists():
            return
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise TypeError("unexpected CA key type")
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
            + [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(subject, ca_cert.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns or []]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(self.key(name), key)
        self.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
