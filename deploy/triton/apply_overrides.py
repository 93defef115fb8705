"""Build the model repository Triton serves from the image's repository plus a per-pool overlay.

Runs as the init container of every Triton pod the Helm chart renders (same image as Triton, so /models is the
same in both containers). For each model named in the overlay (the chart's ``<triton>-overrides`` ConfigMap,
``overrides.json``) it creates ``<target>/<model>/``, links (or copies) everything of ``<source>/<model>/`` except
``config.pbtxt``, and writes ``config.pbtxt`` with these fields replaced:

    instance_group      one group: {kind, count}  (KIND_GPU / KIND_CPU)
    max_batch_size      only for models that batch (max_batch_size > 0 in the source)
    dynamic_batching    max_queue_delay_microseconds (only for models that batch)

Every other field, the tensor contract above all, stays as the model's author wrote it. The config is parsed and
written with Triton's own ModelConfig proto, so a malformed overlay or config fails here, in the init container,
with a message, rather than at Triton start. Exit status 0 on success, 2 on any error.

With ``--keep-versions`` (a persistent target that a federation publishes new versions into), the numbered version
folders of ``<target>/<model>/`` that are real directories and are not in ``<source>/<model>/`` survive the rebuild;
everything else is rebuilt as without it.

    python apply_overrides.py --source /models --target /work/models --overrides overrides.json [--mode link|copy]
        [--keep-versions]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

KINDS = {
    "KIND_GPU": model_config_pb2.ModelInstanceGroup.KIND_GPU,
    "KIND_CPU": model_config_pb2.ModelInstanceGroup.KIND_CPU,
}
ALLOWED = {"instance_group", "max_batch_size", "dynamic_batching"}


class OverlayError(Exception):
    pass


def load_config(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(), config)
    except (OSError, text_format.ParseError) as exc:
        raise OverlayError(f"{path}: {exc}") from None
    return config


def apply(config: model_config_pb2.ModelConfig, overlay: dict[str, Any], model: str) -> model_config_pb2.ModelConfig:
    """A copy of ``config`` with the overlay's fields replaced."""
    unknown = set(overlay) - ALLOWED
    if unknown:
        raise OverlayError(f"{model}: unknown overlay fields {sorted(unknown)}; allowed: {sorted(ALLOWED)}")
    out = model_config_pb2.ModelConfig()
    out.CopyFrom(config)
    group = overlay.get("instance_group")
    if group is not None:
        kind = group.get("kind", "KIND_GPU")
        count = int(group.get("count", 1))
        if kind not in KINDS:
            raise OverlayError(f"{model}: instance_group.kind {kind!r} is not one of {sorted(KINDS)}")
        if count < 1:
            raise OverlayError(f"{model}: instance_group.count must be >= 1 (got {count})")
        del out.instance_group[:]
        out.instance_group.add(kind=KINDS[kind], count=count)
    batches = config.max_batch_size > 0
    if "max_batch_size" in overlay:
        size = int(overlay["max_batch_size"])
        if size < 1:
            raise OverlayError(f"{model}: max_batch_size must be >= 1 (got {size})")
        if batches:
            out.max_batch_size = size
        # a model without batching keeps max_batch_size 0: turning it on would change its tensor shapes
    delay = (overlay.get("dynamic_batching") or {}).get("max_queue_delay_microseconds")
    if delay is not None and batches:
        if int(delay) < 0:
            raise OverlayError(f"{model}: max_queue_delay_microseconds must be >= 0 (got {delay})")
        out.dynamic_batching.max_queue_delay_microseconds = int(delay)
    return out


def published_versions(src: Path, dest: Path) -> set[str]:
    """Version folders of ``dest`` written by someone other than this script: numbered, real directories (not links
    into an image) and absent from ``src``."""
    if dest.is_symlink() or not dest.is_dir():
        return set()
    return {
        entry.name
        for entry in dest.iterdir()
        if entry.name.isdigit() and entry.is_dir() and not entry.is_symlink() and not (src / entry.name).exists()
    }


def clear(dest: Path, keep: set[str]) -> None:
    """Empty ``dest`` (a folder, a link or a file) except its entries named in ``keep``."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    elif dest.exists():
        for entry in dest.iterdir():
            if entry.name in keep:
                continue
            if entry.is_symlink() or not entry.is_dir():
                entry.unlink()
            else:
                shutil.rmtree(entry)


def build(
    source: Path,
    target: Path,
    overlays: dict[str, dict[str, Any]],
    mode: str = "link",
    keep_versions: bool = False,
) -> list[str]:
    """Write ``target/<model>`` for every model in ``overlays``; returns the model names. With ``keep_versions``,
    the published version folders (``published_versions``) of each model stay as they are."""
    if mode not in ("link", "copy"):
        raise OverlayError(f"mode must be link or copy (got {mode!r})")
    missing = sorted(name for name in overlays if not (source / name / "config.pbtxt").is_file())
    if missing:
        have = sorted(p.parent.name for p in source.glob("*/config.pbtxt"))
        raise OverlayError(f"models {missing} are not in {source} (it holds {have})")
    target.mkdir(parents=True, exist_ok=True)
    for name, overlay in sorted(overlays.items()):
        src, dest = source / name, target / name
        config = load_config(src / "config.pbtxt")
        if config.name and config.name != name:
            raise OverlayError(f"{src}/config.pbtxt names model {config.name!r}, folder is {name!r}")
        patched = apply(config, overlay, name)
        clear(dest, published_versions(src, dest) if keep_versions else set())
        dest.mkdir(parents=True, exist_ok=True)
        for entry in sorted(src.iterdir()):
            if entry.name == "config.pbtxt":
                continue
            if mode == "link":
                os.symlink(entry.resolve(), dest / entry.name)
            elif entry.is_dir():
                shutil.copytree(entry, dest / entry.name, symlinks=False)
            else:
                shutil.copy2(entry, dest / entry.name)
        header = f"# written by apply_overrides.py from {src}/config.pbtxt with overlay {json.dumps(overlay)}\n"
        (dest / "config.pbtxt").write_text(header + text_format.MessageToString(patched))
        load_config(dest / "config.pbtxt")  # what Triton will read parses
    return sorted(overlays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="the image's model repository")
    parser.add_argument("--target", type=Path, required=True, help="the repository Triton will serve")
    parser.add_argument("--overrides", type=Path, required=True, help="overrides.json: model -> overlay")
    parser.add_argument("--mode", choices=["link", "copy"], default="link")
    parser.add_argument(
        "--keep-versions",
        action="store_true",
        help="keep numbered version folders of the target that are not in the source (published by a federation)",
    )
    args = parser.parse_args(argv)
    try:
        overlays = json.loads(args.overrides.read_text())
        if not isinstance(overlays, dict) or not overlays:
            raise OverlayError(f"{args.overrides}: expected a non-empty JSON object of model -> overlay")
        built = build(args.source, args.target, overlays, args.mode, args.keep_versions)
    except (OSError, ValueError, OverlayError) as exc:
        print(f"apply_overrides: {exc}", file=sys.stderr)
        return 2
    for name in built:
        print(f"apply_overrides: {name}: {json.dumps(overlays[name], sort_keys=True)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
