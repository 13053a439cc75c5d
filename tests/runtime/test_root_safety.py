"""What machina does as root cannot be steered by a user, a link or a bad file (issue 7).

Real files, a real unprivileged user (uid 65534, through `setpriv`) planting links and
racing, taps in a network namespace each test makes. Every test here fails on the code
before the fix: there, root followed the planted link, took another machine's file,
deleted a host interface, created a lock through a link, or let QEMU replace a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import Machina, access_group, assert_error, assert_ok, make_config, searchable

pytestmark = pytest.mark.root

NOBODY = 65534
VM_ID = "5f0e7c1a-9d2b-4e3f-8a6b-0c1d2e3f4a5b"


#: Run a command as the unprivileged user.
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")


def as_nobody(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AS_NOBODY, *argv], capture_output=True, text=True, check=check)


def make_pool(tmp_path: Path, owner: int = 0) -> Path:
    """tmp_path/pool, reachable by everyone, owned by owner (a user may plant links in
    their own pool)."""
    pool = searchable(tmp_path) / "pool"
    pool.mkdir()
    os.chown(pool, owner, owner)
    return pool


def wait_for(path: Path, timeout: float = 5) -> None:
    """Until path exists (made by a process started just before), at most timeout s."""
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def least_config(root: Path, pool: Path, machines: dict[str, Any],
                 pattern: str = "${machine-name}-${volume}.raw") -> Path:
    return make_config(root, {
        "privileges": {"mode": "least"},
        "storage": {"disks": {"path": str(pool), "pattern": pattern, "type": "raw"}},
    }, machines)


def vm(uuid: str = VM_ID, **extra: Any) -> dict[str, Any]:
    return {"id": uuid, "attrs": {"memory": {"ram": 64}},
            "volumes": [{"name": "os", "storage": "disks"}], **extra}


def disk_and_iso_config(root: Path, disks: Path, isos: Path) -> Path:
    """Least privilege; machine vm with disks/vm-os.raw and isos/cd.iso."""
    return make_config(root, {
        "privileges": {"mode": "least"},
        "storage": {"disks": {"path": str(disks), "pattern": "vm-os.raw", "type": "raw"},
                    "isos": {"path": str(isos), "pattern": "cd.iso", "type": "iso-scsi"}},
    }, {"vm": vm(volumes=[{"name": "os", "storage": "disks"},
                          {"name": "cd", "storage": "isos"}])})


def snapshot(p: Path) -> tuple[int, int, int]:
    st = p.stat()
    return st.st_uid, st.st_gid, st.st_mode


def no_advice_on(path: Path, stderr: str) -> None:
    """Refusal hints never suggest opening a link (or what it points to)."""
    for line in stderr.splitlines():
        if "setfacl" in line or "chgrp" in line or "chmod" in line:
            assert str(path) not in line, stderr


# --- item 1: links, user-writable pools, hard links, patterns ------------------------

@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A root-only file the attacker wants the guest to write."""
    v = searchable(tmp_path) / "root-only.conf"
    v.write_text("secret\n")
    v.chmod(0o600)
    return v


def test_a_link_planted_in_a_user_writable_pool_is_not_followed(
        tmp_path: Path, victim: Path, machina: Machina) -> None:
    pool = make_pool(tmp_path, NOBODY)
    as_nobody("ln", "-s", str(victim), str(pool / "vm-os.raw"))
    config = least_config(tmp_path / "etc", pool, {"vm": vm()})
    before = snapshot(victim)
    res = machina.run("prepare", "vm", config_dir=config)
    text = assert_error(res, f"{pool}/vm-os.raw is a symbolic link")
    assert "changes nothing through a link" in text
    no_advice_on(pool / "vm-os.raw", res.stderr)
    no_advice_on(victim, res.stderr)
    assert snapshot(victim) == before
    # generate says so in advance (ReadWritePaths= would follow the link)
    gen = machina.run("generate", "--unit-dir", str(tmp_path), "vm", config_dir=config)
    assert gen.returncode == 0, gen.stderr
    assert f"warning: {pool}/vm-os.raw is a symbolic link" in gen.stderr
    assert snapshot(victim) == before


def test_a_link_in_a_root_only_pool_is_refused_too(tmp_path: Path, victim: Path,
                                                    machina: Machina) -> None:
    pool = make_pool(tmp_path)
    (pool / "vm-os.raw").symlink_to(victim)
    config = least_config(tmp_path / "etc", pool, {"vm": vm()})
    before = snapshot(victim)
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, "is a symbolic link")
    no_advice_on(pool / "vm-os.raw", res.stderr)
    assert snapshot(victim) == before


def test_a_directory_link_on_the_way_is_refused(tmp_path: Path, machina: Machina) -> None:
    real = tmp_path / "real"
    searchable(tmp_path)
    real.mkdir()
    disk = real / "vm-os.raw"
    disk.write_bytes(b"\0")
    disk.chmod(0o600)
    (tmp_path / "pool").symlink_to(real)
    config = least_config(tmp_path / "etc", tmp_path / "pool", {"vm": vm()})
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, f"{tmp_path}/pool is a symbolic link",
                 f"(on the way to {tmp_path}/pool/vm-os.raw)")
    assert snapshot(disk)[1:] == (0, stat.S_IFREG | 0o600)


def test_a_root_file_in_a_user_writable_pool_is_not_handed_over(
        tmp_path: Path, machina: Machina) -> None:
    """The user could swap it for a link between the check and the change."""
    pool = make_pool(tmp_path)
    pool.chmod(0o777)
    disk = pool / "vm-os.raw"
    disk.write_bytes(b"\0")
    disk.chmod(0o600)
    config = least_config(tmp_path / "etc", pool, {"vm": vm()})
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, f"{pool} may be changed by a user other than root",
                 "root will not change")
    assert snapshot(disk) == (0, 0, stat.S_IFREG | 0o600)


def test_a_user_racing_link_and_file_never_gets_the_target(
        tmp_path: Path, victim: Path, machina: Machina) -> None:
    """TOCTOU: while prepare runs again and again, the user swaps the volume between
    their own file and a link to a root-only file. The target is never handed over."""
    pool = make_pool(tmp_path, NOBODY)
    name = pool / "vm-os.raw"
    script = (f"while :; do ln -sfn {victim} {name}.l; mv -T {name}.l {name}; "
              f": > {name}.f; mv -T {name}.f {name}; done")
    racer = subprocess.Popen([*AS_NOBODY, "sh", "-c", script])
    config = least_config(tmp_path / "etc", pool, {"vm": vm()})
    before = snapshot(victim)
    try:
        wait_for(name)
        codes = [machina.run("prepare", "vm", config_dir=config).returncode
                 for _ in range(12)]
    finally:
        racer.kill()
        racer.wait()
    assert codes == [1] * 12
    assert snapshot(victim) == before


def test_a_hard_link_to_another_file_is_not_handed_over(tmp_path: Path, victim: Path,
                                                        machina: Machina) -> None:
    pool = make_pool(tmp_path)
    os.link(victim, pool / "vm-os.raw")
    config = least_config(tmp_path / "etc", pool, {"vm": vm()})
    before = snapshot(victim)
    assert_error(machina.run("prepare", "vm", config_dir=config), "has 2 names (hard links)")
    assert snapshot(victim) == before


def test_a_readonly_link_is_named_by_its_target_in_the_hint(
        tmp_path: Path, victim: Path, machina: Machina) -> None:
    pool = make_pool(tmp_path)
    disk = pool / "vm-os.raw"
    disk.write_bytes(b"\0")
    iso = pool / "cd.iso"
    iso.symlink_to(victim)
    config = disk_and_iso_config(tmp_path / "etc", pool, pool)
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, f"{iso} (a link to {victim}) cannot be read")
    no_advice_on(iso, res.stderr)
    assert f"if {victim} is meant for this machine" in res.stderr


@pytest.mark.parametrize(("where", "machine"), [
    ("vars", vm(vars={"sub": "../../etc"}, volumes=[{"name": "os", "storage": "disks"}])),
    ("description", vm(description="../../etc/shadow")),
], ids=["vars", "description"])
def test_a_pattern_cannot_lead_out_of_its_pool(tmp_path: Path, machina: Machina,
                                               where: str, machine: dict[str, Any]) -> None:
    pattern = "${sub}/${volume}.raw" if where == "vars" else "${machine-description}"
    config = least_config(tmp_path / "etc", tmp_path / "pool", {"vm": machine},
                          pattern=pattern)
    for verb in ("args", "generate --preview"):
        res = machina.run(*verb.split(), "vm", config_dir=config)
        assert_error(res, f"{config}/machina.conf.json: $.storage.disks.pattern: volume "
                     '"os" of machine "vm" would be /', "outside the pool's path")


# --- item 2: one writable file, two machines; world bits ------------------------------

@contextlib.contextmanager
def machine_groups(config: Path, machina: Machina, *names: str) -> Iterator[None]:
    """The machines' groups, as `generate` creates them (removed afterwards)."""
    made = []
    try:
        for name in names:
            group, gid = access_group(machina, config, name)
            subprocess.run(["groupadd", "-g", str(gid), group], check=True)
            made.append(group)
        yield
    finally:
        for group in made:
            subprocess.run(["groupdel", group], check=False)


def test_a_file_given_to_one_machine_is_not_given_to_another(
        tmp_path: Path, machina: Machina) -> None:
    tag = secrets.token_hex(3)
    a, b = f"hr-share-a-{tag}", f"hr-share-b-{tag}"
    pool = make_pool(tmp_path)
    shared = pool / "shared.raw"
    shared.write_bytes(b"\0")
    shared.chmod(0o644)  # world-readable: prepare must close that too
    config = least_config(tmp_path / "etc", pool, {
        a: vm(), b: vm("6a1f8d2b-0e3c-4f4a-9b7c-1d2e3f4a5b6c")}, pattern="shared.raw")
    with machine_groups(config, machina, a, b):
        assert_ok(machina.run("prepare", a, config_dir=config))
        ga = snapshot(shared)
        assert stat.S_IMODE(ga[2]) == 0o660, "a writable volume keeps no world access"
        res = machina.run("prepare", b, config_dir=config)
        assert_error(res, f"{shared} already belongs to the group machina-{a}",
                     "two machines must not share a writable file")
        assert snapshot(shared) == ga
        # generate sees it across the host, before any start
        gen = machina.run("generate", "--unit-dir", str(tmp_path), b, config_dir=config)
        assert_error(gen, f"{shared}", a, b)
        assert not (tmp_path / f"machina-{b}.service").exists()


# --- item 3: the mediated-device lock ---------------------------------------------------

def _mdev_host(tmp_path: Path, machina: Machina) -> tuple[Path, dict[str, str]]:
    config = make_config(tmp_path / "etc", {
        "mdev": {"gpu": {"address": "0000:c1:00.0", "types": {"small": "GRID-1Q"}}}},
        {"vm": {"id": VM_ID, "attrs": {"memory": {"ram": 64}},
                "devices": [{"name": "vgpu", "class": "small"}]}})
    cat = machina.run("cat", "vm", config_dir=config).stdout
    uuid = cat.rsplit("(", 1)[1].split(")")[0]
    sysfs = tmp_path / "sys"
    (sysfs / "bus" / "pci" / "devices").mkdir(parents=True)
    (sysfs / "bus" / "mdev" / "devices" / uuid).mkdir(parents=True)  # exists: kept
    return config, {"MACHINA_SYSFS_ROOT": str(sysfs)}


def test_the_lock_is_not_opened_through_a_link(tmp_path: Path, machina: Machina) -> None:
    config, env = _mdev_host(tmp_path, machina)
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "mdev.lock").symlink_to(tmp_path / "created-through-the-link")
    res = machina.run("prepare", "vm", config_dir=config,
                      env={**env, "MACHINA_MDEV_LOCK": str(locks / "mdev.lock")})
    assert_error(res, f"cannot open the lock {locks}/mdev.lock")
    assert not (tmp_path / "created-through-the-link").exists()
    (locks / "mdev.lock").unlink()
    (locks / "mdev.lock").write_bytes(b"")
    os.chown(locks / "mdev.lock", NOBODY, NOBODY)  # a user's file: they could hold it
    res = machina.run("prepare", "vm", config_dir=config,
                      env={**env, "MACHINA_MDEV_LOCK": str(locks / "mdev.lock")})
    assert_error(res, f"the lock {locks}/mdev.lock is not a regular file of root's")


def test_a_lock_a_user_made_and_holds_is_refused_at_once(tmp_path: Path,
                                                         machina: Machina) -> None:
    config, env = _mdev_host(tmp_path, machina)
    locks = tmp_path / "locks"
    searchable(tmp_path)
    locks.mkdir()
    locks.chmod(0o1777)  # like /run/lock, where the lock used to be
    lock = locks / "mdev.lock"
    holder = subprocess.Popen([*AS_NOBODY, "flock", str(lock), "sleep", "60"])
    try:
        wait_for(lock)
        res = machina.run("prepare", "vm", config_dir=config, timeout=20,
                          env={**env, "MACHINA_MDEV_LOCK": str(lock)})
    finally:
        holder.kill()
        holder.wait()
    assert_error(res, f"{locks} may be changed by a user other than root")


def test_the_default_lock_is_in_a_directory_only_root_changes(
        tmp_path: Path, machina: Machina) -> None:
    config, env = _mdev_host(tmp_path, machina)
    with contextlib.suppress(FileNotFoundError):
        os.unlink("/run/machina/mdev.lock")  # prepare makes it again
    assert_ok(machina.run("prepare", "vm", config_dir=config,
                          env={**env, "MACHINA_MDEV_LOCK": None}))
    st = os.lstat("/run/machina/mdev.lock")
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0
    d = os.lstat("/run/machina")
    assert stat.S_ISDIR(d.st_mode) and d.st_uid == 0 and d.st_mode & 0o022 == 0


# --- item 6: QMP sockets -------------------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("names", "../../../var/lib/x"), ("names", "a/b"), ("paths", "/etc/shadow"),
    ("paths", "/run/../etc/shadow"), ("paths", "/run/x.sock"),
    ("paths", "/run/user/1000/q.sock"), ("paths", "run/q.sock")])
def test_qmp_socket_names_and_paths_are_confined(tmp_path: Path, machina: Machina,
                                                 key: str, value: str) -> None:
    config = make_config(tmp_path, {}, {"vm": {
        "id": VM_ID, "attrs": {"memory": {"ram": 64}, "qmp": {
            "enabled": True, "sockets": {key: [value]}}}}})
    res = machina.run("args", "vm", config_dir=config)
    assert_error(res, f"$.attrs.qmp.sockets.{key}[0]", json.dumps(value))


def test_least_mode_qmp_paths_must_be_in_the_run_directory(tmp_path: Path,
                                                           machina: Machina) -> None:
    config = make_config(tmp_path, {"privileges": {"mode": "least"}}, {"vm": {
        "id": VM_ID, "attrs": {"memory": {"ram": 64}, "qmp": {
            "enabled": True, "sockets": {"paths": ["/run/qmp/vm.sock"]}}}}})
    assert_error(machina.run("generate", "--preview", "vm", config_dir=config),
                 "the QMP socket path /run/qmp/vm.sock (attrs.qmp.sockets.paths) is outside "
                 "/run/machina/vm/")


def test_root_qemu_may_not_replace_a_file_with_its_socket(
        tmp_path: Path, host_dir: Path, machina: Machina) -> None:
    keep = host_dir / "state.sock"
    keep.write_text("not a socket\n")
    config = make_config(tmp_path, {}, {"vm": {
        "id": VM_ID, "attrs": {"memory": {"ram": 64}, "qmp": {
            "enabled": True, "sockets": {"paths": [str(keep)]}}}}})
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, f"{keep} exists and is not a socket")
    assert keep.read_text() == "not a socket\n"
    keep.unlink()
    assert_ok(machina.run("prepare", "vm", config_dir=config))  # free: QEMU may bind
    os.chown(host_dir, NOBODY, NOBODY)  # a directory a user may change: refused
    assert_error(machina.run("prepare", "vm", config_dir=config),
                 f"{host_dir} may be changed by a user other than root")


# --- item 4: taps -------------------------------------------------------------------------

class Netns:
    def __init__(self) -> None:
        self.name = f"hr-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def links(self) -> dict[str, dict[str, Any]]:
        out = subprocess.run(["ip", "-n", self.name, "-d", "-j", "link", "show"],
                             check=True, capture_output=True, text=True).stdout
        return {x["ifname"]: x for x in json.loads(out)}

    def machina(self, machina: Machina, config: Path, *args: str
                ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name,
                               *machina.argv(list(args), config)],
                              env=machina.environ(), capture_output=True, text=True,
                              timeout=60)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    ns = Netns()
    try:
        ns.ip("link", "add", "br0", "type", "bridge")
        yield ns
    finally:
        ns.close()


def _tap_config(tmp_path: Path, machines: dict[str, str]) -> Path:
    """Least-privilege machines, each with one connection (machine → connection)."""
    return make_config(tmp_path / "etc", {
        "privileges": {"mode": "least"}, "network": {"lan": {"device": "br0"}}},
        {m: {"id": f"5f0e7c1a-9d2b-4e3f-8a6b-0c1d2e3f4a{i:02x}",
             "attrs": {"memory": {"ram": 64}},
             "connections": [{"name": c, "network": "lan"}]}
         for i, (m, c) in enumerate(machines.items())})


def test_prepare_and_teardown_leave_a_host_interface_alone(
        tmp_path: Path, netns: Netns, machina: Machina) -> None:
    """Machine `eth0`, connection `10`: the tap name is the host's VLAN `eth0.10`."""
    netns.ip("link", "add", "eth0.10", "type", "bridge")  # any link that is not ours
    config = _tap_config(tmp_path, {"eth0": "10"})
    res = netns.machina(machina, config, "prepare", "eth0")
    assert_error(res, "a network link named eth0.10 exists and is not a tap machina made "
                 "for eth0")
    assert "eth0.10" in netns.links()
    res = netns.machina(machina, config, "teardown", "eth0")
    assert res.returncode == 0 and "is not a tap machina made for eth0" in res.stderr
    assert "eth0.10" in netns.links()
    for verb in ("connect", "disconnect"):
        assert_error(netns.machina(machina, config, verb, "eth0.10"), "is not a tap",
                     stdout=None)
    assert netns.links()["eth0.10"].get("master") is None


def test_colliding_tap_names_never_delete_the_other_machines_tap(
        tmp_path: Path, netns: Netns, machina: Machina) -> None:
    """`a` + `b.c` and `a.b` + `c` both give the tap `a.b.c`."""
    config = _tap_config(tmp_path, {"a": "b.c", "a.b": "c"})
    assert_ok(netns.machina(machina, config, "prepare", "a"))
    tap = netns.links()["a.b.c"]
    assert tap["ifalias"] == "machina:a" and tap["master"] == "br0"
    assert_error(netns.machina(machina, config, "prepare", "a.b"),
                 "a network link named a.b.c exists and is not a tap machina made for a.b")
    res = netns.machina(machina, config, "teardown", "a.b")
    assert "is not a tap machina made for a.b" in res.stderr
    assert netns.links()["a.b.c"]["ifindex"] == tap["ifindex"], "a's tap was touched"
    assert_ok(netns.machina(machina, config, "prepare", "a"))  # its own: replaced
    assert_ok(netns.machina(machina, config, "teardown", "a"))
    assert "a.b.c" not in netns.links()
    # generate sees the collision across the host, before anything runs
    gen = machina.run("generate", "--unit-dir", str(tmp_path), "a.b", config_dir=config)
    assert_error(gen, "a.b.c")
    assert not (tmp_path / "machina-a.b.service").exists()


def test_a_tap_name_collision_is_found_by_generate(tmp_path: Path, machina: Machina) -> None:
    config = make_config(tmp_path / "etc", {"network": {"lan": {"device": "br0"}}}, {
        "a": {"id": "5f0e7c1a-9d2b-4e3f-8a6b-0c1d2e3f4a01", "attrs": {"memory": {"ram": 64}},
              "connections": [{"name": "b.c", "network": "lan"}]},
        "a.b": {"id": "5f0e7c1a-9d2b-4e3f-8a6b-0c1d2e3f4a02", "attrs": {"memory": {"ram": 64}},
                "connections": [{"name": "c", "network": "lan"}]}})
    res = machina.run("generate", "--unit-dir", str(tmp_path), "a", config_dir=config)
    assert_error(res, "tap name a.b.c is used 2 times on one host: a (connection b.c); "
                 "a.b (connection c)")
    assert list(tmp_path.glob("*.service")) == []



def test_root_talks_to_no_socket_a_link_points_to(tmp_path: Path, machina: Machina) -> None:
    """In least-privilege mode /run/machina/NAME belongs to QEMU's user: a link it puts
    where a QMP socket should be must not lead root's `shutdown` (or `query`) to another
    program's socket."""
    import socket

    name = f"hr-qmp-{secrets.token_hex(3)}"
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(tmp_path / "other.sock"))
    other.listen(4)
    other.settimeout(0.5)
    run_dir = Path("/run/machina", name)
    run_dir.mkdir(parents=True)
    try:
        for sock in ("systemd.0", "command.0", "command.1"):
            (run_dir / f"{sock}.qmp.socket").symlink_to(tmp_path / "other.sock")
        config = make_config(tmp_path / "etc", {}, {name: {
            "id": VM_ID, "attrs": {"memory": {"ram": 64}, "qmp": {"enabled": True}}}})
        res = machina.run("query", "pci", name, config_dir=config)
        assert res.stdout.startswith(f"Failed to query {name}: could not connect to QMP "
                                     f"socket {run_dir}/command.0.qmp.socket: it is not a "
                                     "socket"), res.stdout
        res = machina.run("shutdown", "--system", name, config_dir=config)
        assert "it is not a socket" in res.stdout + res.stderr, res
        with pytest.raises(TimeoutError):
            other.accept()
    finally:
        other.close()
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()


def test_a_hint_about_a_directory_names_the_real_one(tmp_path: Path, machina: Machina) -> None:
    """A read-only file in a directory reached through a link: the unsearchable directory
    is named by its real path, never the link's."""
    searchable(tmp_path)
    real = tmp_path / "real"
    (real / "isos").mkdir(parents=True)
    real.chmod(0o700)  # QEMU's group cannot pass
    (real / "isos" / "cd.iso").write_bytes(b"iso")
    (real / "isos" / "cd.iso").chmod(0o644)
    (tmp_path / "link").symlink_to(real / "isos")
    pool = make_pool(tmp_path)
    disk = pool / "vm-os.raw"
    disk.write_bytes(b"\0")
    config = disk_and_iso_config(tmp_path / "etc", pool, tmp_path / "link")
    res = machina.run("prepare", "vm", config_dir=config)
    assert_error(res, f"directory {real} is not searchable by the group")
    assert f"setfacl -m g:{access_group(machina, config)[1]}:x {real}\n" in res.stderr
    no_advice_on(tmp_path / "link", res.stderr)
