"""The API server as a test reaches it: kubectl bound to a namespace, and the CRDs installed."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kube_transcode_devstack.layout import tools_bin
from tests.harness import ROOT

CRDS = ROOT / "crds"


@dataclass
class Kubectl:
    kubeconfig: Path
    namespace: str
    bin_dir: Path

    def argv(self, *args: str) -> list[str]:
        kubectl = str(self.bin_dir / "kubectl")
        return [kubectl, "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args]

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl with its exit status and stderr apart (calling a Kubectl merges them)."""
        return subprocess.run(
            self.argv(*args), input=input, capture_output=True, text=True, timeout=120, check=False
        )

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> str:
        proc = self.run(*args, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout if check else proc.stdout + proc.stderr


def install_crd(kubeconfig: Path, file: str = "transcodejobs.yaml") -> None:
    """A CRD of crds/ applied server-side, once the API server serves it (Established)."""
    k = Kubectl(kubeconfig, "default", tools_bin())
    k("apply", "--server-side", "--force-conflicts", "-f", str(CRDS / file))
    name = f"{file.removesuffix('.yaml')}.kubetranscode.io"
    k("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
