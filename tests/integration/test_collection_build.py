"""The collection builds into a tarball that installs and whose plugins ansible-doc renders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*cmd: str, env: dict | None = None, cwd: Path = ROOT) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    _run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(ROOT))
    tarballs = list(out.glob("gradual-rollout-*.tar.gz"))
    assert len(tarballs) == 1
    dest = tmp_path_factory.mktemp("collections")
    # --no-deps: the dependencies come from the `ansible` bundle already on sys.path (no Galaxy here).
    _run(str(BIN / "ansible-galaxy"), "collection", "install", "--force", "--no-deps", "-p", str(dest), str(tarballs[0]))
    cfg = dest / "ansible.cfg"   # an empty config: nothing from the checkout's ansible.cfg
    cfg.write_text("[defaults]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_CONFIG=str(cfg))
    return tarballs[0], dest, env


def test_tarball_leaves_out_dev_files(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "galaxy.yml" not in names
    for unwanted in (".venv/", ".venv-sanity/", ".lab/", "build/", "molecule/"):
        assert not any(n.startswith(unwanted) for n in names), unwanted


def test_installed_version(installed):
    dest = installed[1]
    manifest = json.loads((dest / "ansible_collections/gradual/rollout/MANIFEST.json").read_text())
    assert manifest["collection_info"]["version"] == "0.1.0"
    assert manifest["collection_info"]["license"] == ["GPL-3.0-or-later"]


def _plugins(kind: str, folder: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / "plugins" / folder).glob("*.py") if not p.stem.startswith("_"))


@pytest.mark.parametrize("kind,folder", [("module", "modules"), ("callback", "callback")])
def test_ansible_doc_renders_every_plugin(installed, kind, folder):
    env = installed[2]
    names = _plugins(kind, folder)
    if not names:
        pytest.skip(f"no {kind} plugins in this checkout yet")
    out = json.loads(_run(str(BIN / "ansible-doc"), "-t", kind, "--json",
                          *[f"gradual.rollout.{n}" for n in names], env=env))
    for name in names:
        doc = out[f"gradual.rollout.{name}"]["doc"]
        assert doc.get("short_description"), f"{name} has no short_description"
        if kind == "module":
            assert out[f"gradual.rollout.{name}"].get("examples"), f"{name} has no EXAMPLES"


def test_ansible_doc_renders_role_specs(installed):
    env = installed[2]
    roles = sorted(p.parent.parent.name for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
    if not roles:
        pytest.skip("no roles in this checkout yet")
    out = json.loads(_run(str(BIN / "ansible-doc"), "-t", "role", "--json",
                          *[f"gradual.rollout.{r}" for r in roles], env=env))
    for role in roles:
        assert out[f"gradual.rollout.{role}"]["entry_points"]["main"]["options"], role
