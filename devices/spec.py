"""DeviceSpec and Connection: what a device is and how nasc reaches it (plain data, no TVM)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from nasc.errors import ConfigError

ConnectionKind = Literal["local", "emulated", "rpc", "tracker"]


@dataclass(frozen=True)
class Connection:
    """How to reach a device.

    - ``local``: nasc starts a TVM RPC server on 127.0.0.1 (host CPU) for the run.
    - ``emulated``: nasc starts the stock RPC server inside an emulated root file system.
    - ``rpc``: a running server at host:port.
    - ``tracker``: a tracker at host:port, servers registered under ``key``.
    """

    kind: ConnectionKind
    host: str = "127.0.0.1"
    port: int = 0
    key: str = ""

    @classmethod
    def parse(cls, text: str, where: str = "connection") -> Connection:
        """Parse ``local``, ``emulated``, ``rpc://HOST:PORT`` or ``tracker://HOST:PORT/KEY``."""
        text = text.strip()
        if text in ("local", "emulated"):
            return cls(kind=text)  # type: ignore[arg-type]
        for scheme in ("rpc", "tracker"):
            prefix = scheme + "://"
            if text.startswith(prefix):
                rest = text[len(prefix) :]
                key = ""
                if scheme == "tracker":
                    rest, _, key = rest.partition("/")
                    if not key:
                        raise ConfigError(
                            f"{where}: '{text}' names no key; write tracker://HOST:PORT/KEY"
                        )
                host, port = parse_host_port(rest, where)
                return cls(kind=scheme, host=host, port=port, key=key)  # type: ignore[arg-type]
        raise ConfigError(
            f"{where}: cannot read '{text}'; use 'local', 'emulated', "
            "'rpc://HOST:PORT' or 'tracker://HOST:PORT/KEY'"
        )

    def to_url(self) -> str:
        """The inverse of :meth:`parse`."""
        if self.kind in ("local", "emulated"):
            return self.kind
        if self.kind == "rpc":
            return f"rpc://{self.host}:{self.port}"
        return f"tracker://{self.host}:{self.port}/{self.key}"

    @property
    def address(self) -> str:
        """host:port (and key) for messages."""
        if self.kind == "tracker":
            return f"tracker {self.host}:{self.port} key '{self.key}'"
        if self.kind == "rpc":
            return f"{self.host}:{self.port}"
        return self.kind


def parse_host_port(text: str, where: str = "address") -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::1]:PORT``) with a clear error."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.lstrip(":")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            host, port_text = "", text
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"{where}: '{text}' is not HOST:PORT (for example 127.0.0.1:9190)")
    return host, int(port_text)


Target = str | dict[str, Any]


@dataclass(frozen=True)
class DeviceSpec:
    """A device nasc compiles for and measures on."""

    name: str
    target: Target
    connection: Connection
    host_target: Target | None = None
    gpu_target: Target | None = None
    cross_compiler: str | None = None
    emulated: bool = False
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # TVM runtime threads the device runs networks with (TVM_NUM_THREADS of its server); 0: as the server was
    # started. Servers nasc starts get it; a latency table keys its entries by it; tuning times candidates with it.
    threads: int = 0

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ConfigError(f"device '{self.name}': threads must be >= 0 (0: the server's own setting), "
                              f"got {self.threads}")

    def target_json(self) -> str:
        """Canonical JSON of the target as configured (tag string or dict)."""
        return json.dumps(self.target, sort_keys=True)

    def fingerprint(self) -> str:
        """Short stable hash of what makes measurements on this device comparable."""
        payload = json.dumps(
            {
                "name": self.name,
                "target": self.target,
                "host_target": self.host_target,
                "emulated": self.emulated,
                **({"threads": self.threads} if self.threads else {}),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def is_cross(self) -> bool:
        """True when artifacts need a cross compiler (the device is not this host)."""
        return self.cross_compiler is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "target": self.target,
            "connection": self.connection.to_url(),
            "host_target": self.host_target,
            "gpu_target": self.gpu_target,
            "cross_compiler": self.cross_compiler,
            "emulated": self.emulated,
            "description": self.description,
            "extra": dict(self.extra),
            "threads": self.threads,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=data["name"],
            target=data["target"],
            connection=Connection.parse(data["connection"]),
            host_target=data.get("host_target"),
            gpu_target=data.get("gpu_target"),
            cross_compiler=data.get("cross_compiler"),
            emulated=bool(data.get("emulated", False)),
            description=data.get("description", ""),
            extra=dict(data.get("extra", {})),
            threads=int(data.get("threads", 0)),
        )
