"""crds/ is the one source: the chart's and manifests/ copies and the rendered manifests
must match what hack/render-manifests.sh makes of it; the values schema stays strict."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_transcode_devstack.layout import tools_bin
from tests.harness import ROOT

pytestmark = pytest.mark.unit

CHART = ROOT / "charts" / "kube-transcode"


def test_generated_crds_and_manifests_match_their_sources() -> None:
    proc = subprocess.run(
        [str(ROOT / "hack" / "render-manifests.sh"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        env={"HELM": str(tools_bin() / "helm"), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chart_crds_are_byte_copies() -> None:
    for source in (ROOT / "crds").glob("*.yaml"):
        assert (CHART / "crds" / source.name).read_bytes() == source.read_bytes()


def _objects(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if schema.get("type") == "object" and "properties" in schema:
        found.append((path or "<root>", schema))
        for key, child in schema["properties"].items():
            found += _objects(child, f"{path}.{key}")
    return found


def test_values_schema_refuses_unknown_keys_everywhere() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    loose = [
        path for path, node in _objects(schema) if node.get("additionalProperties") is not False
    ]
    assert loose == []


def test_every_value_is_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], props: dict[str, Any], path: str) -> None:
        for key, value in node.items():
            assert key in props, f"{path}{key} is not in values.schema.json"
            child = props[key]
            if isinstance(value, dict) and "properties" in child:
                walk(value, child["properties"], f"{path}{key}.")

    walk(values, schema["properties"], "")
