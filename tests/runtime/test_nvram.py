"""The machine's NVRAM file (ours): prepare creates it from the firmware's template when
missing, never rewrites an existing one, and never follows a link."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from machina.errors import HostError
from machina.plan.devices import Nvram
from machina.runtime.nvram import create_nvram


def test_created_once_then_left_alone(tmp_path: Path) -> None:
    template = tmp_path / "template.fd"
    template.write_bytes(b"T" * 4096)
    nv = Nvram(str(tmp_path / "a" / "b" / "nvram.fd"), str(template))
    assert create_nvram(nv) is True
    path = Path(nv.path)
    assert path.read_bytes() == template.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_bytes(b"guest wrote this")
    inode = path.stat().st_ino
    template.write_bytes(b"new template")
    assert create_nvram(nv) is False
    assert path.read_bytes() == b"guest wrote this" and path.stat().st_ino == inode
    assert [p.name for p in path.parent.iterdir()] == ["nvram.fd"]  # no temporary left


def test_a_link_is_refused_not_followed(tmp_path: Path) -> None:
    template = tmp_path / "template.fd"
    template.write_bytes(b"T")
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (tmp_path / "nvram.fd").symlink_to(victim)
    with pytest.raises(HostError, match="symbolic link"):
        create_nvram(Nvram(str(tmp_path / "nvram.fd"), str(template)))
    assert victim.read_bytes() == b"keep"
    dangling = tmp_path / "d" / "nvram.fd"
    dangling.parent.mkdir()
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(HostError, match="symbolic link"):
        create_nvram(Nvram(str(dangling), str(template)))
    assert not (tmp_path / "nowhere").exists()


def test_a_linked_directory_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "template.fd"
    template.write_bytes(b"T")
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(HostError, match="symbolic link"):
        create_nvram(Nvram(str(tmp_path / "link" / "x" / "nvram.fd"), str(template)))
    assert list((tmp_path / "real").iterdir()) == []


def test_missing_template_changes_nothing(tmp_path: Path) -> None:
    nv = Nvram(str(tmp_path / "vm" / "nvram.fd"), str(tmp_path / "none.fd"))
    with pytest.raises(HostError, match="template") as raised:
        create_nvram(nv)
    assert not (tmp_path / "vm").exists()
    assert "firmware detect" in raised.value.hints[0]
    assert "--microsoft-2023" in raised.value.hints[0]  # a plain detect drops the 2023 keys


def test_directories_are_searchable_whatever_the_umask(tmp_path: Path) -> None:
    template = tmp_path / "template.fd"
    template.write_bytes(b"T")
    old = os.umask(0o077)  # a least-privilege unit's UMask=
    try:
        create_nvram(Nvram(str(tmp_path / "a" / "b" / "nvram.fd"), str(template)))
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o755


@pytest.mark.root
def test_a_template_a_user_can_swap_is_not_copied(tmp_path: Path) -> None:
    """A vars template in a directory a user may write (review): the user replaces it by
    a link to a root-only file, and root copied that file into the machine's NVRAM, which
    the machine's group (and its guest) reads. A template whose link root made in a
    root-only directory is still followed (Fedora's /usr/share/OVMF is one)."""
    from .test_root_safety import NOBODY, as_nobody, searchable

    victim = tmp_path / "root-only"
    victim.write_bytes(b"secret")
    victim.chmod(0o600)
    users = searchable(tmp_path) / "templates"
    users.mkdir()
    os.chown(users, NOBODY, NOBODY)
    as_nobody("ln", "-s", str(victim), str(users / "VARS.fd"))
    nv = Nvram(str(tmp_path / "vm" / "nvram.fd"), str(users / "VARS.fd"))
    with pytest.raises(HostError, match=f"{users} may be changed by a user other than root"):
        create_nvram(nv)
    assert not Path(nv.path).exists()
    root_dir = tmp_path / "ovmf"
    root_dir.mkdir()
    (root_dir / "VARS.real.fd").write_bytes(b"T" * 64)
    (root_dir / "VARS.fd").symlink_to("VARS.real.fd")
    assert create_nvram(Nvram(nv.path, str(root_dir / "VARS.fd"))) is True
    assert Path(nv.path).read_bytes() == b"T" * 64
