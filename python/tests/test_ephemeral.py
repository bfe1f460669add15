"""Ephemeral volumes against a real server (sweeping every second): they
live while held and are deleted, key destroyed, once the lease lapses."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import pytest

import cairn
from cairn._proto import volume_pb2
from conftest import cairn_binary, wait_for


def gone(client: cairn.Client, volume_id: str) -> bool:
    try:
        client.call("GetVolume", volume_pb2.GetVolumeRequest(
            volume=volume_pb2.VolumeRef(id=volume_id)))
        return False
    except cairn.NotFoundError:
        return True


def exists_for(client: cairn.Client, volume_id: str, seconds: float) -> None:
    """The volume stays for `seconds` (several leases)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert not gone(client, volume_id), "the volume went away while held"
        time.sleep(0.2)


def test_held_volume_lives_then_goes_after_the_block(client):
    with cairn.Volume.ephemeral(lease=2, client=client) as vol:
        assert vol.name.startswith("ephemeral-")
        assert vol.info().lease_expires_at is not None
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"scratch"), "/scratch.txt")
        exists_for(client, vol.object_id, 5)  # 2.5 leases: the heartbeat holds it
        assert b"".join(vol.read_file("scratch.txt")) == b"scratch"
        assert any(v.object_id == vol.object_id for v in cairn.Volume.list(client=client))
    wait_for(lambda: gone(client, vol.object_id), 60, "the released volume to be collected")
    with pytest.raises(cairn.NotFoundError):
        vol.listdir("/")
    with pytest.raises(cairn.NotFoundError) as e:
        vol.renew_lease(30)  # a lapsed lease is never revived
    assert vol.object_id in str(e.value) or "not found" in str(e.value)


def test_unrenewed_lease_lapses(client):
    v = client.stub.CreateVolume(volume_pb2.CreateVolumeRequest(ephemeral=True, lease_seconds=1))
    assert v.lease_expires_ns > 0
    wait_for(lambda: gone(client, v.id), 60, "the unrenewed volume to be collected")


def test_renewals_and_bad_requests(client, vol):
    with pytest.raises(cairn.FailedPreconditionError):
        vol.renew_lease(10)  # an ordinary volume has no lease
    with pytest.raises(cairn.InvalidError):
        client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
            name="named", ephemeral=True))
    with pytest.raises(cairn.InvalidError):
        client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
            name="ordinary-with-lease", lease_seconds=5))
    with pytest.raises(cairn.InvalidError):
        client.call("CreateVolume", volume_pb2.CreateVolumeRequest(
            ephemeral=True, lease_seconds=86401))
    with pytest.raises(cairn.InvalidError):
        with cairn.Volume.ephemeral(lease=0.2, client=client):
            pass
    assert vol.info().lease_expires_at is None


def start_cli_holder(server) -> tuple[subprocess.Popen, str]:
    """`cairn volume create --ephemeral --lease 2`, and the ID it printed."""
    p = subprocess.Popen([cairn_binary(), "volume", "create", "--ephemeral", "--lease", "2"],
                         env=server.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    line = p.stdout.readline()
    assert line.startswith("Created ephemeral volume ephemeral-"), line + p.stderr.read()
    return p, line.split("(")[1].split(",")[0]


def hold_then_stop(client, p: subprocess.Popen, volume_id: str, sig: int) -> None:
    """The holder keeps the volume for 2.5 leases; after `sig` it goes."""
    try:
        exists_for(client, volume_id, 5)
        p.send_signal(sig)
        code = p.wait(timeout=30)
        if sig == signal.SIGTERM:
            assert code == 0
        wait_for(lambda: gone(client, volume_id), 60, "the released volume to be collected")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_sigkill_of_a_python_holder(server, client):
    code = (
        "import sys, time, cairn\n"
        f"c = cairn.Client({server.address!r}, wait=30)\n"
        "with cairn.Volume.ephemeral(lease=2, client=c) as v:\n"
        "    print(v.object_id, flush=True)\n"
        "    time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    volume_id = p.stdout.readline().strip()
    assert volume_id.startswith("vo-")
    hold_then_stop(client, p, volume_id, signal.SIGKILL)


def test_cli_holder_sigkill_and_sigterm(server, client):
    hold_then_stop(client, *start_cli_holder(server), signal.SIGKILL)
    hold_then_stop(client, *start_cli_holder(server), signal.SIGTERM)


def test_cli_refuses_bad_ephemeral_usage(server):
    r = server.cli("volume", "create", "--ephemeral", "name", check=False)
    assert r.returncode == 2 and "no NAME" in r.stderr
    r = server.cli("volume", "create", "x", "--lease", "5", check=False)
    assert r.returncode == 2 and "--ephemeral" in r.stderr
    r = server.cli("volume", "create", "--ephemeral", "--lease", "0", check=False)
    assert r.returncode == 2


def test_a_mount_holds_an_ephemeral_volume(server, client, mounts):
    p, volume_id = start_cli_holder(server)
    try:
        name = next(v.name for v in cairn.Volume.list(client=client)
                    if v.object_id == volume_id)
        m = mounts(name, "eph")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        # The mount renews the lease (30 s, at once and every 10 s): it
        # outlives the CLI's 2 s.
        (m.path / "f").write_text("kept\n")
        cairn.Volume.from_mount(m.path).commit()
        exists_for(client, volume_id, 12)
        m.unmount()
        wait_for(lambda: gone(client, volume_id), 90, "the unmounted volume to go")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
