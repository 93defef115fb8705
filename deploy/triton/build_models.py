"""Build the Triton image's model repository for some capabilities, and check the system packages their models use.

Runs once in deploy/triton/Dockerfile, with the image's virtualenv (tessera and the capabilities' ``<cap>-models``
extras installed):

    python build_models.py --target /models keyframes monitoring translation --train

It is ``tessera models train`` + ``tessera models build`` (what ``make models`` runs) limited to the named
capabilities: with ``--train``, each of them that trains a network of its own (``tessera.<capability>.training``:
monitoring's av_fusion) trains it first into the trained-weights folder (``--trained``, default as ``tessera models
build`` finds it), skipping what is up to date; then the models under ``services/tessera/<capability>/models/`` are
built (same sha256-checked weights, same config checks), so an image holds only what it was built for. Then it
checks what a model would otherwise only find missing when Triton loads it: the Apertium language pairs the ``mt``
model declares and the espeak-ng voices of the ``tts`` model, both from the system's packages. Exit status 0 on
success, 2 on any error.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import subprocess
import sys
from pathlib import Path

from tessera.runtime.model_repository import ModelRepositoryError, build, discover, parse_config, trained_dir
from tessera.runtime.service import trainers


class SystemPackageError(Exception):
    pass


def models_of(capabilities: list[str], services_root: Path | None = None) -> dict[str, list[str]]:
    """capability -> its model names, for each named capability (an unknown one, or one without models, fails)."""
    found: dict[str, list[str]] = {}
    for name, folder in discover(services_root).items():
        found.setdefault(folder.parent.parent.name, []).append(name)
    missing = sorted(set(capabilities) - set(found))
    if missing:
        raise ModelRepositoryError(f"no models for capabilities {missing}; capabilities with models: {sorted(found)}")
    return {cap: sorted(found[cap]) for cap in capabilities}


def train(capabilities: list[str], trained: Path) -> list[str]:
    """Train the networks of the named capabilities that have their own (``tessera.<capability>.training``, as
    ``tessera models train`` does; each skips what is up to date); returns the capabilities trained."""
    done = []
    for capability in trainers():
        if capability not in capabilities:
            continue
        module = importlib.import_module(f"tessera.{capability}.training")
        try:
            code = int(module.main(["--out", str(trained)]) or 0)
        except SystemExit as exc:  # a missing package or media file
            raise ModelRepositoryError(f"{capability} training: {exc}") from None
        if code:
            raise ModelRepositoryError(f"{capability} training failed with exit code {code}")
        done.append(capability)
    return done


def _parameter(folder: Path, key: str) -> list[str]:
    config = parse_config(folder / "config.pbtxt")
    value = config.parameters[key].string_value if key in config.parameters else ""
    return [item.strip() for item in value.split(",") if item.strip()]


def check_system_packages(built: dict[str, Path]) -> list[str]:
    """What the built models need from apt (Apertium pairs for mt, espeak-ng voices for tts); returns what was
    checked, raises SystemPackageError naming what is missing."""
    checked = []
    if "mt" in built:
        from tessera.translation.apertium import mode_name

        pairs = [tuple(pair.split("-", 1)) for pair in _parameter(built["mt"], "pairs")]
        missing = [f"{s}-{t}" for s, t in pairs if mode_name(s, t) is None]
        if missing:
            raise SystemPackageError(f"mt: no Apertium mode installed for pairs {missing} (apt: apertium-<pair>)")
        checked.append(f"mt: Apertium pairs {', '.join(f'{s}-{t}' for s, t in pairs)}")
    if "tts" in built:
        languages = set(_parameter(built["tts"], "languages")) - set(_parameter(built["tts"], "piper_languages"))
        if languages:
            if shutil.which("espeak-ng") is None:
                raise SystemPackageError("tts: espeak-ng is not installed (apt: espeak-ng)")
            listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, check=True, text=True).stdout
            voices = {line.split()[1].split("-")[0] for line in listing.splitlines()[1:] if len(line.split()) > 1}
            missing_voices = sorted(languages - voices)
            if missing_voices:
                raise SystemPackageError(f"tts: espeak-ng has no voice for {missing_voices}")
            checked.append(f"tts: espeak-ng voices {', '.join(sorted(languages))}")
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=Path, required=True, help="model repository folder to (re)build")
    parser.add_argument("capabilities", nargs="+", help="capabilities whose models the image serves")
    parser.add_argument(
        "--trained",
        type=Path,
        help="trained-weights folder (default: $TESSERA_TRAINED_DIR, trained/ beside --target, else build/trained)",
    )
    parser.add_argument("--train", action="store_true", help="first train the capabilities' own networks there")
    args = parser.parse_args(argv)
    trained = args.trained or trained_dir(args.target)
    try:
        wanted = models_of(args.capabilities)
        if args.train:
            for capability in train(args.capabilities, trained):
                print(f"build_models: {capability}: trained into {trained}")
        built = build(args.target, only=[name for names in wanted.values() for name in names], trained_root=trained)
        checked = check_system_packages(built)
    except (ModelRepositoryError, SystemPackageError, subprocess.CalledProcessError, OSError) as exc:
        print(f"build_models: {exc}", file=sys.stderr)
        return 2
    for cap, names in wanted.items():
        print(f"build_models: {cap}: {', '.join(str(built[name]) for name in names)}")
    for line in checked:
        print(f"build_models: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
