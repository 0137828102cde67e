"""template.yaml as SAM deploys it: the AWS::Serverless transform, run offline, for checkov.

    python -m devtools.sam_expand template.yaml build/template.expanded.json

Runs in checkov's venv (``make security``), which pins ``aws-sam-translator``: the transform is the
library ``sam deploy`` uses, without the SAM CLI and without a network (the AWS-managed policies SAM
attaches are resolved from the library's bundled list; nothing else is looked up). What SAM generates
from a resource (its role ``<Function>Role``, its URL ``<Function>Url``, ...) gets no comment in the
source; a finding there is skipped with its reason in the source resource's ``Metadata``, under
``checkov_generated: {<generated logical id>: [{id, comment}, ...]}``, copied here onto the generated
resource. A skip naming a resource the transform did not make is an error (a stale skip).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

GENERATED_SKIPS = "checkov_generated"
# Stand-ins for the pseudo parameters SAM resolves while transforming; nothing depends on them.
PSEUDO_PARAMETERS = {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    name = suffix if suffix == "Condition" else f"Fn::{suffix}"
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


def load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    return data


def _managed_policies() -> dict[str, str]:
    from samtranslator.internal.managed_policies import get_bundled_managed_policy_map  # type: ignore[import-not-found]

    bundled: dict[str, str] = get_bundled_managed_policy_map("aws")
    return bundled


class _OfflinePolicies:
    """The policy loader SAM asks for AWS-managed policy ARNs by name: the bundled list only."""

    def load(self) -> dict[str, str]:
        return _managed_policies()


def _as_packaged(template: dict[str, Any]) -> None:
    """Local code paths as ``sam package`` leaves them: S3 locations (placeholders; never read)."""
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri", "DefinitionUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                suffix = "" if key == "DefinitionUri" else ".zip"  # a definition is uploaded as it is
                props[key] = f"s3://packaged-code/{props[key].strip('/')}{suffix}"


def expand(template: dict[str, Any]) -> dict[str, Any]:
    _as_packaged(template)
    os.environ.setdefault("AWS_DEFAULT_REGION", PSEUDO_PARAMETERS["AWS::Region"])  # read, never called
    from samtranslator.translator.transform import transform  # type: ignore[import-not-found]

    out: dict[str, Any] = transform(template, PSEUDO_PARAMETERS, _OfflinePolicies(), passthrough_metadata=True)
    return out


def copy_generated_skips(source: dict[str, Any], expanded: dict[str, Any]) -> list[str]:
    """Copy each source resource's skips for what SAM generates from it; the stale ones' names."""
    resources = expanded["Resources"]
    stale = []
    for name, resource in source["Resources"].items():
        for generated, skips in resource.get("Metadata", {}).get(GENERATED_SKIPS, {}).items():
            if generated not in resources:
                stale.append(f"{name}: {generated}")
                continue
            meta = resources[generated].setdefault("Metadata", {})
            meta.setdefault("checkov", {}).setdefault("skip", []).extend(skips)
    for resource in resources.values():
        resource.get("Metadata", {}).pop(GENERATED_SKIPS, None)
    return stale


def main(argv: list[str]) -> int:
    source_path, out_path = Path(argv[0]), Path(argv[1])
    source = load(source_path)
    expanded = expand(load(source_path))
    stale = copy_generated_skips(source, expanded)
    if stale:
        print(f"checkov skips for resources SAM does not generate: {', '.join(stale)}", file=sys.stderr)
        return 1
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(expanded, indent=1, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
