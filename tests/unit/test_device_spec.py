"""Connection URLs and DeviceSpec JSON round trips."""

from __future__ import annotations

import pytest

from nasc.devices.registry import BUILTIN_PROFILES, resolve_device
from nasc.devices.spec import Connection, DeviceSpec
from nasc.errors import ConfigError


@pytest.mark.parametrize("url", ["local", "emulated", "rpc://127.0.0.1:9090", "tracker://10.0.0.2:9190/rpi4",
                                 "rpc://[::1]:9000"])
def test_connection_round_trip(url: str) -> None:
    conn = Connection.parse(url)
    again = Connection.parse(conn.to_url())
    assert again == conn


@pytest.mark.parametrize("bad", ["usb", "rpc://host", "rpc://host:0", "tracker://h:9190", "rpc://:99"])
def test_bad_connection_is_explained(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        Connection.parse(bad, "build.toml: key 'devices.x.connection'")
    assert "devices.x.connection" in str(info.value)


@pytest.mark.parametrize("name", sorted(BUILTIN_PROFILES))
def test_every_profile_round_trips_through_json(name: str) -> None:
    spec = resolve_device(name)
    assert DeviceSpec.from_dict(spec.to_dict()) == spec
    assert len(spec.fingerprint()) == 16


def test_fingerprint_changes_with_target() -> None:
    a = resolve_device("rpi4")
    b = DeviceSpec.from_dict({**a.to_dict(), "target": {"kind": "llvm", "mcpu": "cortex-a53"}})
    assert a.fingerprint() != b.fingerprint()


def test_emulated_profile_is_marked() -> None:
    assert resolve_device("rpi4-emulated").emulated is True
    assert resolve_device("rpi4").emulated is False


def test_threads_come_from_build_toml_and_change_the_fingerprint() -> None:
    from nasc.pipeline.config import parse_config

    config = parse_config('[devices.pi]\nbase = "rpi4"\nthreads = 2\n', "build.toml")
    pi = config.device("pi")
    assert pi.threads == 2 and DeviceSpec.from_dict(pi.to_dict()) == pi
    unset = DeviceSpec(name="pi", target="raspberry-pi/4b-aarch64", connection=Connection(kind="local"))
    assert unset.threads == 0
    assert unset.fingerprint() != DeviceSpec(name="pi", target="raspberry-pi/4b-aarch64",
                                             connection=Connection(kind="local"), threads=2).fingerprint()
    with pytest.raises(ConfigError, match=r"build\.toml: key 'devices\.pi\.threads': must be >= 0"):
        parse_config('[devices.pi]\nbase = "rpi4"\nthreads = -1\n', "build.toml").device("pi")
