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


# What the tarball may hold at its top: the collection alone.
SHIPPED = {"plugins", "roles", "playbooks", "meta", "docs", "changelogs", "README.md", "LICENSE",
           "MANIFEST.json", "FILES.json",
           # links to meta/ee-*.txt: ansible-builder's introspection reads them at the collection's root
           "ee-bindep.txt", "ee-requirements.txt"}


@pytest.fixture
def dirty_tarball(plain_clone, tmp_path_factory):
    """A build from a working copy as a developer has it: the tracked files plus a lab vault, a
    lab key, caches, a venv and reports (none of which may ship)."""
    tree = plain_clone("dirty")
    dirt = ["inventories/lab/group_vars/all/vault.yml", ".lab/id_ed25519", ".lab/vault-pass",
            ".pytest_cache/v/cache/nodeids", "plugins/modules/__pycache__/feature_flag.cpython-311.pyc",
            ".venv/bin/python", "reports/rollout-x.md", "tests/output/molecule-x.log", ".ansible/tmp/x",
            "build/collections/x"]
    # and one file for every .gitignore line, so a folder the harness starts making (.venv-units
    # was one) fails here until galaxy.yml's build_ignore leaves it out too
    for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name = line.strip().rstrip("/").replace("*", "x")
            # a folder pattern, or a name that is a folder of the dirt above (.venv): a file inside it
            folder = line.strip().endswith("/") or any(d.startswith(name + "/") for d in dirt)
            dirt.append(name + "/x" if folder else name)
    for name in dirt:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("not for the tarball\n")
    out = tmp_path_factory.mktemp("dirty-build")
    _run(str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out), str(tree), cwd=tree)
    with tarfile.open(next(out.glob("gradual-rollout-*.tar.gz"))) as tar:
        return tar.getnames()


def test_tarball_is_the_collection_alone(dirty_tarball):
    names = dirty_tarball
    print("tarball entries: %d" % len(names))
    assert "MANIFEST.json" in names and "galaxy.yml" not in names and "LICENSE" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert tops <= SHIPPED, sorted(tops - SHIPPED)
    for unwanted in ("__pycache__", ".pyc", ".pytest_cache", "vault.yml", "id_ed25519"):
        assert not any(unwanted in n for n in names), unwanted


def test_tarball_leaves_out_dev_files(installed):
    tarball = installed[0]
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "MANIFEST.json" in names and "galaxy.yml" not in names
    assert {n.split("/", 1)[0] for n in names} <= SHIPPED


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
