"""qcow2 volumes: a backing chain or data file that leaves the pool is refused, by reading
the real headers of images made by qemu-img (runtime/images.py; issue 9 acceptance 5)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from machina.config.schema import HostFile
from machina.errors import ConfigError, HostError
from machina.plan.devices import FileUse, Image
from machina.runtime.images import check_image, parse_qcow2_header

from .support import Machina, assert_error, assert_ok, make_config

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None and
                                "qemu" not in os.environ.get("MACHINA_REQUIRE", ""),
                                reason="needs qemu-img (qemu-utils)")

HOST = HostFile(path="/etc/machina/machina.conf.json")


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def qcow2(path: Path, backing: str | None = None, *extra: str) -> Path:
    opts = ["-b", backing, "-F", "qcow2", "-u"] if backing is not None else []
    qemu_img("create", "-q", "-f", "qcow2", *opts, *extra, path, "16M")
    return path


def image(pool: Path, name: str = "top.qcow2") -> Image:
    return Image(str(pool / name), "images", str(pool), "os")


def refused(pool: Path, *fragments: str, name: str = "top.qcow2") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        check_image(HOST, image(pool, name))
    err = info.value
    assert (err.file, err.pointer) == (HOST.path, "$.storage.images")
    assert err.message.startswith('volume "os": ')
    for fragment in fragments:
        assert fragment in err.message, err.message
    assert "qemu-img rebase" in err.hints[0]
    return err


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    p = tmp_path / "pool"
    p.mkdir()
    return p


def test_a_chain_inside_the_pool_is_accepted(pool: Path) -> None:
    (pool / "base").mkdir()
    qcow2(pool / "base" / "win11.qcow2")
    qcow2(pool / "mid.qcow2", "base/win11.qcow2")            # relative to the image
    qcow2(pool / "top.qcow2", str(pool / "mid.qcow2"))       # absolute, inside
    assert check_image(HOST, image(pool)) == [
        FileUse(str(pool / "mid.qcow2"), False), FileUse(str(pool / "base/win11.qcow2"), False)]
    header = parse_qcow2_header((pool / "top.qcow2").read_bytes()[:65536])
    assert header is not None and header.backing == str(pool / "mid.qcow2")
    assert header.backing_format == "qcow2" and header.version == 3


def test_a_raw_backing_file_ends_the_chain(pool: Path) -> None:
    (pool / "base.raw").write_bytes(b"\0" * 4096)
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "-u",
             pool / "top.qcow2", "16M")
    assert check_image(HOST, image(pool)) == [FileUse(str(pool / "base.raw"), False)]


def test_an_absolute_backing_file_outside_is_refused(pool: Path, tmp_path: Path) -> None:
    qcow2(tmp_path / "outside.qcow2")
    qcow2(pool / "top.qcow2", str(tmp_path / "outside.qcow2"))
    refused(pool, f"has the backing file {tmp_path / 'outside.qcow2'}, outside the pool")


def test_a_relative_backing_file_outside_is_refused(pool: Path, tmp_path: Path) -> None:
    qcow2(tmp_path / "outside.qcow2")
    qcow2(pool / "top.qcow2", "../outside.qcow2")
    refused(pool, "outside the pool")


def test_a_link_out_of_the_pool_is_refused(pool: Path, tmp_path: Path) -> None:
    qcow2(tmp_path / "outside.qcow2")
    (pool / "base.qcow2").symlink_to(tmp_path / "outside.qcow2")
    qcow2(pool / "top.qcow2", "base.qcow2")
    refused(pool, "outside the pool")


def test_deeper_in_the_chain_is_checked_too(pool: Path, tmp_path: Path) -> None:
    qcow2(tmp_path / "outside.qcow2")
    qcow2(pool / "mid.qcow2", str(tmp_path / "outside.qcow2"))
    qcow2(pool / "top.qcow2", "mid.qcow2")
    refused(pool, f"the qcow2 image {pool / 'mid.qcow2'} has the backing file")


def test_protocols_and_json_descriptions_are_refused(pool: Path) -> None:
    qcow2(pool / "top.qcow2", 'json:{"driver":"file","filename":"/etc/shadow"}')
    refused(pool, "a protocol or JSON description")
    qcow2(pool / "top.qcow2", "nbd:localhost:10809")
    refused(pool, "a protocol")


def test_an_external_data_file_outside_is_refused(pool: Path, tmp_path: Path) -> None:
    qcow2(pool / "top.qcow2", None, "-o", f"data_file={tmp_path / 'data.raw'}")
    refused(pool, "external data file", "outside the pool")
    qcow2(pool / "in.qcow2", None, "-o", f"data_file={pool / 'in.data'}")
    assert check_image(HOST, image(pool, "in.qcow2")) == [FileUse(str(pool / "in.data"), True)]


def test_other_formats_as_backing_files_are_refused(pool: Path) -> None:
    qemu_img("create", "-q", "-f", "vmdk", pool / "base.vmdk", "16M")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.vmdk", "-F", "vmdk", "-u",
             pool / "top.qcow2", "16M")
    refused(pool, "format 'vmdk'")
    # without the backing-format extension (qemu-img no longer writes such images, older
    # ones exist), QEMU would probe the format: machina recognises vmdk by its magic
    top = pool / "top.qcow2"
    data = top.read_bytes()
    assert data.count(b"\xe2\x79\x2a\xca") == 1
    top.write_bytes(data.replace(b"\xe2\x79\x2a\xca", b"\x00\x00\x00\x0f"))
    refused(pool, "is a vmdk image")


def test_loops_and_non_qcow2_images_are_refused(pool: Path) -> None:
    qcow2(pool / "a.qcow2", "b.qcow2")
    qcow2(pool / "b.qcow2", "a.qcow2")
    refused(pool, "loops", name="a.qcow2")
    (pool / "top.qcow2").write_bytes(b"\0" * 4096)
    refused(pool, "is not a qcow2 image")
    (pool / "top.qcow2").write_bytes(b"QFI\xfb\0\0\0\x03" + b"\0" * 20)
    refused(pool, "not a valid qcow2 image")


def test_a_missing_file_is_a_host_error(pool: Path) -> None:
    with pytest.raises(HostError, match="cannot read"):
        check_image(HOST, image(pool))
    qcow2(pool / "top.qcow2", "gone.qcow2")
    with pytest.raises(HostError, match="does not exist"):
        check_image(HOST, image(pool))


@pytest.mark.root
def test_generate_and_prepare_refuse_a_chain_that_leaves_the_pool(
        machina: Machina, tmp_path: Path, pool: Path) -> None:
    qcow2(tmp_path / "outside.qcow2")
    qcow2(pool / "vm-os.qcow2", "base.qcow2")
    qcow2(pool / "base.qcow2")
    cfg = make_config(tmp_path / "etc", {"storage": {"images": {
        "path": str(pool), "pattern": "${machine-name}-${volume}.qcow2", "type": "qcow2"}}},
        {"vm": {"id": "8b18191a-234f-45ce-b43c-b46e28cd2f70", "attrs": {"memory": {"ram": 64}},
                "volumes": [{"name": "os", "storage": "images"}]}})
    assert_ok(machina.run("generate", "--preview", "vm", config_dir=cfg))
    assert_ok(machina.run("prepare", "--dry-run", "vm", config_dir=cfg), quiet_stderr=False)
    qcow2(pool / "base.qcow2", str(tmp_path / "outside.qcow2"))
    host_file = str(cfg / "machina.conf.json")
    for args in (("generate", "--preview", "vm"), ("prepare", "--dry-run", "vm")):
        message = assert_error(machina.run(*args, config_dir=cfg))
        assert message.startswith(f'{host_file}: $.storage.images: volume "os": the qcow2 '
                                  f"image {pool / 'base.qcow2'} has the backing file "
                                  f"{tmp_path / 'outside.qcow2'}, outside the pool"), message


@pytest.mark.root
def test_least_privilege_refuses_an_external_data_file(machina: Machina, tmp_path: Path,
                                                       pool: Path) -> None:
    qcow2(pool / "vm-os.qcow2", None, "-o", f"data_file={pool / 'vm-os.data'}")
    cfg = make_config(tmp_path / "etc", {"storage": {"images": {
        "path": str(pool), "pattern": "${machine-name}-${volume}.qcow2", "type": "qcow2"}}},
        {"vm": {"id": "8b18191a-234f-45ce-b43c-b46e28cd2f70",
                "attrs": {"memory": {"ram": 64}, "privileges": {"mode": "least"}},
                "volumes": [{"name": "os", "storage": "images"}]}})
    assert_error(machina.run("prepare", "--dry-run", "vm", config_dir=cfg),
                 f"the qcow2 data file {pool / 'vm-os.data'} cannot be written by QEMU in "
                 "least-privilege mode")


def test_a_fifo_in_the_chain_is_refused_at_once(machina: Machina, tmp_path: Path,
                                                 pool: Path) -> None:
    """A user who may write in the pool plants a FIFO as a backing file (or as the volume
    itself): root's generate and prepare read its header and waited forever (review)."""
    os.mkfifo(pool / "base.raw")
    qemu_img("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "-u",
             pool / "vm-os.qcow2", "16M")
    os.mkfifo(pool / "vm-data.qcow2")
    cfg = make_config(tmp_path / "etc", {"storage": {"images": {
        "path": str(pool), "pattern": "${machine-name}-${volume}.qcow2", "type": "qcow2"}}},
        {"vm": {"id": "8b18191a-234f-45ce-b43c-b46e28cd2f70", "attrs": {"memory": {"ram": 64}},
                "volumes": [{"name": "os", "storage": "images"},
                            {"name": "data", "storage": "images"}]}})
    for args in (("generate", "--preview", "vm"), ("prepare", "--dry-run", "vm")):
        message = assert_error(machina.run(*args, config_dir=cfg, timeout=20))
        assert f"{pool / 'base.raw'} is not a regular file or a block device" in message, message
    os.unlink(pool / "base.raw")
    qemu_img("create", "-q", "-f", "qcow2", pool / "vm-os.qcow2", "16M")
    message = assert_error(machina.run("generate", "--preview", "vm", config_dir=cfg,
                                       timeout=20))
    assert f"{pool / 'vm-data.qcow2'} is not a regular file or a block device" in message


def test_a_nul_in_a_name_is_refused(pool: Path) -> None:
    """QEMU reads a backing or data file name up to its first NUL; root's check crashed
    on one ("unexpected ValueError: embedded null byte") instead of refusing (review)."""
    qcow2(pool / "base.qcow2")
    qcow2(pool / "top.qcow2", "base.qcow2" + "X" * 16)
    top = pool / "top.qcow2"
    data = top.read_bytes()
    top.write_bytes(data.replace(b"base.qcow2" + b"X" * 16, b"base.qcow2\0" + b"/" * 15))
    refused(pool, "not a valid qcow2 image", "NUL")
    qcow2(pool / "top.qcow2", None, "-o", f"data_file={pool / 'in.dataXX'}")
    data = top.read_bytes()
    top.write_bytes(data.replace(b"in.dataXX", b"in.data\0X"))
    refused(pool, "not a valid qcow2 image", "NUL")
