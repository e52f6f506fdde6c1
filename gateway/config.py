"""The gateway's one YAML file, validated: what a deployer writes, nothing else.

Example::

    site: hosp-a
    gateway: gw-01
    state_dir: /var/lib/enmon/gw-01
    mqtt: {host: broker.example, port: 8883, username: gw-01, password_file: /etc/enmon/gw-01.pass,
           tls: {ca_file: /etc/enmon/ca.pem}}
    poll: {interval_s: 10}
    devices:
      - {name: main, profile: eastron-sdm630, unit_id: 1,
         transport: {type: tcp, host: 192.168.1.50, port: 502},
         building: outpatient, category: 01A00}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from enmon.config import StrictModel, load_model
from enmon.wire import ID_PATTERN

Id = Annotated[str, Field(pattern=f"^{ID_PATTERN}$")]


class TLS(StrictModel):
    """Broker TLS. Client cert/key give per-gateway certificate authentication."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = Field(
        default=False, json_schema_extra={"fix": "only for lab brokers with self-signed certs"}
    )

    @model_validator(mode="after")
    def _pair(self) -> TLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MQTT(StrictModel):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str | None = None
    username: str | None = None
    # secrets never sit in the config itself: name an env var or a file (0600)
    password_env: str | None = None
    password_file: Path | None = None
    tls: TLS | None = None
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 30

    def password(self) -> str | None:
        import os

        if self.password_file is not None:
            return self.password_file.read_text().strip()
        if self.password_env is not None:
            return os.environ.get(self.password_env)
        return None


class TcpTransport(StrictModel):
    type: Literal["tcp"] = "tcp"
    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 502
    timeout_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    retries: Annotated[int, Field(ge=0, le=10)] = 1


class Device(StrictModel):
    name: Id
    profile: str = Field(
        json_schema_extra={
            "fix": "a model from `enmon gateway profiles` or a path to a YAML profile"
        }
    )
    unit_id: Annotated[
        int, Field(ge=0, le=247, json_schema_extra={"fix": "a Modbus unit id is 1..247"})
    ] = 1
    transport: TcpTransport
    building: Annotated[str, Field(pattern=f"^({ID_PATTERN})?$")] = ""
    category: Annotated[str, Field(pattern=f"^({ID_PATTERN})?$")] = ""
    energy_type: str | None = None


class Poll(StrictModel):
    interval_s: Annotated[float, Field(ge=0.1, le=86_400)] = 10.0


class GatewayConfig(StrictModel):
    site: Id
    gateway: Id
    state_dir: Path = Field(
        json_schema_extra={"fix": "a writable directory for seq and the disk queue"}
    )
    mqtt: MQTT = MQTT()
    poll: Poll = Poll()
    devices: list[Device]

    @model_validator(mode="after")
    def _unique(self) -> GatewayConfig:
        seen: set[str] = set()
        for d in self.devices:
            if d.name in seen:
                raise ValueError(f"device name {d.name!r} is used twice")
            seen.add(d.name)
        return self


def load_config(path: str | Path) -> GatewayConfig:
    return load_model(GatewayConfig, path)
