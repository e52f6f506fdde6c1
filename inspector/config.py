"""Configuration of the inspector API (YAML, validated; errors name file, key and fix).

Example (``enmon api run -c inspector.yaml``)::

    influx: {url: http://127.0.0.1:8086, database: enmon}
    sites: [site-campus.yaml]            # rules site files: buildings, floor areas, quotas
    rules_url: http://127.0.0.1:8095     # the rules service's alert API (acknowledging)
    rules_token_env: ENMON_RULES_TOKEN
    language: zh-CN                      # or en: reports and console unless a request asks
    tokens:
      - {name: wang.inspector, role: inspector, sha256: 3f1a...}
      - {name: li.facilities, role: facility_manager, sha256: 9b0c...}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from enmon.config import StrictModel, load_model
from enmon.influx import InfluxConfig
from inspector.auth import Role


class TokenEntry(StrictModel):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    role: Role = Field(json_schema_extra={"fix": "inspector, facility_manager or data_clerk"})
    sha256: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] = Field(json_schema_extra={
        "fix": "the SHA-256 of the token, as printed by `enmon api token`"})


class InspectorConfig(StrictModel):
    influx: InfluxConfig = InfluxConfig()
    sites: list[Path] = Field(default_factory=list, json_schema_extra={
        "fix": "paths of rules site files (see rules/sample-site.yaml); relative to this file"})
    tokens: list[TokenEntry] = Field(default_factory=list, json_schema_extra={
        "fix": "at least one {name, role, sha256} from `enmon api token`"})
    rules_url: str | None = Field(default=None, json_schema_extra={
        "fix": "the rules service's http: address, e.g. http://127.0.0.1:8095"})
    rules_token_env: str | None = None
    timezone: str = "Asia/Shanghai"
    max_range_days: Annotated[int, Field(ge=1, le=3660)] = 400
    # what reports and the console speak unless a request asks otherwise (?lang=,
    # Accept-Language, --lang); our readers are Chinese, so Chinese unless told
    language: Literal["zh-CN", "en"] = Field(default="zh-CN", json_schema_extra={
        "fix": "zh-CN or en"})

    def rules_token(self) -> str | None:
        return os.environ.get(self.rules_token_env) if self.rules_token_env else None


def load_config(path: str | Path) -> InspectorConfig:
    cfg = load_model(InspectorConfig, path)
    base = Path(path).resolve().parent
    return cfg.model_copy(update={"sites": [p if p.is_absolute() else base / p
                                            for p in cfg.sites]})
