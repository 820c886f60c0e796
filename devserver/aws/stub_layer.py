"""The stub's Lambda layer in the account: published from `livelambda stub build`, once per content.
The zip's sha256 goes into the layer version's description, so `up` finds a version it can reuse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devserver.layer import LayerBuild, build_layer

LAYER_NAME = "livelambda-stub"
RUNTIMES = ["python3.10", "python3.11", "python3.12", "python3.13"]


def description(sha256: str) -> str:
    return f"livelambda stub sha256:{sha256}"


def build(state_dir: Path) -> LayerBuild:
    return build_layer(state_dir / "stub-layer.zip")


def ensure_stub_layer(lambda_client: Any, layer: LayerBuild) -> tuple[str, bool]:
    """The ARN of a layer version holding exactly this build; published now if none does (True)."""
    wanted = description(layer.sha256)
    for page in lambda_client.get_paginator("list_layer_versions").paginate(LayerName=LAYER_NAME):
        for version in page.get("LayerVersions", ()):
            if version.get("Description") == wanted:
                return str(version["LayerVersionArn"]), False
    made = lambda_client.publish_layer_version(
        LayerName=LAYER_NAME,
        Description=wanted,
        Content={"ZipFile": layer.path.read_bytes()},
        CompatibleRuntimes=RUNTIMES,
        LicenseInfo="livelambda's stub and websockets (BSD-3-Clause)",
    )
    return str(made["LayerVersionArn"]), True


def delete_stub_layers(lambda_client: Any) -> int:
    """Every version of the stub layer (`aws down --purge`)."""
    count = 0
    for page in lambda_client.get_paginator("list_layer_versions").paginate(LayerName=LAYER_NAME):
        for version in page.get("LayerVersions", ()):
            lambda_client.delete_layer_version(LayerName=LAYER_NAME, VersionNumber=version["Version"])
            count += 1
    return count
