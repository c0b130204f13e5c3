"""An ad-hoc module call from the repository's root, as a newcomer types it: the default inventory
is the lab, whose SSH settings must not reach the implicit localhost, and no warning from the
Python stack is printed on every command."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_feature_flag_ad_hoc_on_localhost(plain_clone, tmp_path):
    project = plain_clone("adhoc")
    (project / "build/collections/ansible_collections/gradual").mkdir(parents=True)
    (project / "build/collections/ansible_collections/gradual/rollout").symlink_to(project)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(project / "ansible.cfg"), PATH="%s:%s" % (BIN, env.get("PATH", "")))
    target = tmp_path / "flags.env"
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "gradual.rollout.feature_flag", "-a",
                           "backend=env_file path=%s flags={'A':'2'}" % target],
                          cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert target.read_text(encoding="utf-8") == "A=2\n"
    assert "inventory_dir" not in proc.stderr
    assert "DeprecationWarning" not in proc.stderr, proc.stderr
