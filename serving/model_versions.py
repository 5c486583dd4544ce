"""The numbered versions of a Triton model repository: listing them, publishing a new one in
one rename, and rolling back by publishing an earlier version's content as the newest.

Triton serves the highest version (``version_policy latest 1``, repository polling), so a
roll-back publishes a copy of the earlier version under a *new* number rather than removing
the bad one: numbers only grow, so a record's ``model_version`` names one content forever
(removing version N and exporting again would give another model the same N), the bad
version stays on disk to inspect, and what Triton sees is the same as for any export, a
complete version folder appearing in one rename. No torch here: listing and roll-back run
where only the repository is mounted.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.triton_config import CONFIG_FILES, OUTPUTS_BEFORE_NEXT_EVENT, model_config_text

__all__ = [
    "MANIFEST",
    "ModelVersion",
    "RollbackError",
    "StaleVersionError",
    "list_versions",
    "publish_version",
    "rollback",
    "served_version",
    "utc_now",
]

MANIFEST = "manifest.json"


class StaleVersionError(RuntimeError):
    """A version was published while another was being built on the one before it."""


class RollbackError(ValueError):
    """No version to roll back to, or the one named is not there."""


@dataclass(frozen=True)
class ModelVersion:
    """One version folder and its manifest (empty for a folder without one)."""

    number: int
    path: Path
    manifest: Mapping[str, Any]

    @property
    def content(self) -> int:
        """The version whose model this is: itself, or the one a roll-back copied."""
        return int(self.manifest.get("copy_of", self.number))

    def summary(self) -> dict[str, Any]:
        """What ``nextaction models`` shows of it."""
        m = self.manifest
        return {
            "version": self.number,
            "created": m.get("created"),
            "data_fingerprint": m.get("data", {}).get("fingerprint"),
            "validation": m.get("validation"),
            "code_revision": m.get("code_revision"),
            "window": m.get("window"),
            "top_k": m.get("top_k"),
            "copy_of": m.get("copy_of"),
            "rolled_back_from": m.get("rolled_back_from"),
        }


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def list_versions(model_dir: Path) -> list[ModelVersion]:
    """Every numbered version folder, lowest first (staging folders are not numbered)."""
    if not model_dir.is_dir():
        return []
    versions = []
    for path in model_dir.iterdir():
        if path.is_dir() and path.name.isdigit():
            manifest_path = path / MANIFEST
            manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
            versions.append(ModelVersion(int(path.name), path, manifest))
    return sorted(versions, key=lambda v: v.number)


def served_version(model_dir: Path) -> ModelVersion | None:
    """The version Triton serves under ``version_policy latest 1``: the highest."""
    versions = list_versions(model_dir)
    return versions[-1] if versions else None


def publish_version(
    staging: Path, model_dir: Path, manifest: dict[str, Any], extends: int | None = None
) -> Path:
    """Write the manifest (numbered now), the configs that fit it, then rename ``staging``
    to the next version; returns the version folder. ``staging`` must lie in ``model_dir``:
    the rename is then atomic, and Triton never sees a half-written version (it ignores
    non-numeric folders). Renaming onto a version folder another publisher took first
    fails; the loser takes the next number, unless it was built on version ``extends`` and
    that is no longer the newest (StaleVersionError: publishing would hide the newer one)."""
    while True:
        newest = max((v.number for v in list_versions(model_dir)), default=0)
        if extends is not None and newest != extends:
            raise StaleVersionError(f"version {newest} was published while building on version {extends}")
        version = newest + 1
        numbered = {**manifest, "version": version}
        (staging / MANIFEST).write_text(json.dumps(numbered, indent=2) + "\n")
        # Configs first: the new version must never appear without a config that fits it.
        for device, relative in CONFIG_FILES.items():
            text = model_config_text(
                numbered["model_name"],
                numbered["window"],
                numbered["top_k"],
                device,
                outputs=numbered.get("outputs", OUTPUTS_BEFORE_NEXT_EVENT),
            )
            _replace_if_changed(model_dir / relative, text)
        version_dir = model_dir / str(version)
        try:
            staging.rename(version_dir)
        except OSError:
            if not version_dir.is_dir():
                raise
            continue
        return version_dir


def _replace_if_changed(path: Path, text: str) -> None:
    """Atomic replace (the server may read the file at any moment), skipped when equal: touching
    an unchanged config makes Triton reload the model."""
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(exist_ok=True)
    # A name of its own: two publishers may write the same config at once.
    descriptor, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    Path(staged).chmod(0o644)
    Path(staged).replace(path)


def staging_dir(model_dir: Path, prefix: str) -> Path:
    """A private folder beside the versions to build one in; readable by the server's user."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=model_dir))
    staging.chmod(0o755)  # mkdtemp makes it private; the server may run as another user
    return staging


def _rollback_target(versions: list[ModelVersion], to: int | None) -> ModelVersion:
    served = versions[-1]
    if to is not None:
        named = [v for v in versions if v.number == to]
        if not named:
            raise RollbackError(f"no version {to} in {served.path.parent}")
        if named[0].content == served.content:
            raise RollbackError(f"version {to} is what version {served.number} already serves")
        return named[0]
    # The newest earlier content that is not served now and was never rolled back from.
    content = {v.number: v.content for v in versions}
    rolled_back = [int(v.manifest["rolled_back_from"]) for v in versions if "rolled_back_from" in v.manifest]
    bad = {content.get(number) for number in rolled_back}
    candidates = [v for v in versions[:-1] if v.content != served.content and v.content not in bad]
    if not candidates:
        raise RollbackError(f"no earlier version to roll back to from version {served.number}")
    return candidates[-1]


def rollback(model_dir: Path, to: int | None = None) -> tuple[ModelVersion, ModelVersion, Path]:
    """Publish ``to`` (default: the newest earlier version not rolled back from) as the new
    highest version; returns (served before, the version copied, the new version folder)."""
    versions = list_versions(model_dir)
    if not versions:
        raise RollbackError(f"no versions in {model_dir}")
    served = versions[-1]
    target = _rollback_target(versions, to)
    staging = staging_dir(model_dir, ".rollback-")
    try:
        for item in target.path.iterdir():
            if item.name != MANIFEST:
                copy = shutil.copytree if item.is_dir() else shutil.copy2
                copy(item, staging / item.name)
        manifest = {
            **target.manifest,
            "created": utc_now(),
            "copy_of": target.content,
            "rolled_back_from": served.number,
        }
        version_dir = publish_version(staging, model_dir, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return served, target, version_dir
