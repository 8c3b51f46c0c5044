"""Where Pulumi keeps its state and plugins, which secrets provider encrypts the stacks' secrets, and the
environment every `pulumi` run of a step is given (the workspace passes it to the CLI: no step changes the
worker's own environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from reconciler.adapters.pulumi.keys import BUILTIN_URL

PROJECT_NAME = "canaryapp"
# The Go collector of each `pulumi` run, a process that lives for one step: Go starts with a 4 MiB heap goal
# and collects whenever the heap doubles, so a run collected several times before its engine started. At
# GOGC=200 (the heap triples between collections) a weight step's `up` costs 170 -> 142 CPU-ms for 110 -> 114
# MiB at its peak (GOGC=400: 141 CPU-ms, 120 MiB); docs/performance.md. An operator's own GOGC wins. The
# long-lived provider keeps Go's default.
PULUMI_RUN_GOGC = "200"
# After every update Pulumi's state backend (file or S3) saves a history entry with a copy of the new
# checkpoint, and then a backup copy of the same checkpoint under .pulumi/backups/: one more read and write
# (two S3 requests) per step, and one more file that is never pruned. The history's copy stays, and so does
# the `.bak` of the previous checkpoint that every checkpoint write leaves. An operator's own setting wins.
DISABLE_CHECKPOINT_BACKUPS = "PULUMI_DIY_BACKEND_DISABLE_CHECKPOINT_BACKUPS"


@dataclass(frozen=True)
class PulumiSettings:
    """Where Pulumi keeps its state and plugins, and what encrypts the stacks' secrets ("": the step workers'
    key service). The passphrase comes from PULUMI_CONFIG_PASSPHRASE."""

    backend_url: str
    work_root: str
    pulumi_home: str
    extra_env: dict[str, str] = field(default_factory=dict)
    # False: every `up` starts its own provider, as the Pulumi CLI does on its own (slower; a fallback).
    long_lived_provider: bool = True
    secrets_provider: str = ""

    def environment(self) -> dict[str, str]:
        return {
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_HOME": self.pulumi_home,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_CONFIG_PASSPHRASE": os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""),
            DISABLE_CHECKPOINT_BACKUPS: os.environ.get(DISABLE_CHECKPOINT_BACKUPS, "true"),
            **self.extra_env,
        }

    def run_environment(self) -> dict[str, str]:
        """`environment()` as a `pulumi` run gets it: with its Go collector set (PULUMI_RUN_GOGC)."""
        return {"GOGC": os.environ.get("GOGC", PULUMI_RUN_GOGC), **self.environment()}

    @property
    def stacks_secrets_provider(self) -> str:
        """What the stacks name as their secrets provider (the key service's URL unless the operator's)."""
        return self.secrets_provider or BUILTIN_URL

    @property
    def file_backend_path(self) -> Path | None:
        parsed = urlparse(self.backend_url)
        return Path(parsed.path) if parsed.scheme == "file" else None
