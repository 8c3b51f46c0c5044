"""The stacks' secrets provider with the real Pulumi CLI and engine (no cluster: an inline program with one
secret output): with the step workers' key service a stack's secret is stored encrypted, its data key wrapped
by the service, and a run needs no passphrase of its own (so Pulumi derives no key); a stack made with the
passphrase, and a stack whose work directory lost its settings, move to the key service at their next run
and keep their secrets; a key service with another passphrase opens nothing."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi import automation as auto

from reconciler.adapters.pulumi.compat import step_stack
from reconciler.adapters.pulumi.keys import BUILTIN_URL, KeyService
from reconciler.adapters.pulumi.worker import use_secrets_provider

SECRET = "s3cr3t-token-value"
PASSPHRASE = "integration-passphrase"


def program() -> None:
    pulumi.export("token", pulumi.Output.secret(SECRET))


@pytest.fixture
def no_passphrase_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's environment is this process's plus the workspace's: each run says whether it has one."""
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE", raising=False)
    for name in ("VAULT_ADDR", "VAULT_TOKEN", "VAULT_SERVER_URL", "VAULT_SERVER_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyService]:
    service = KeyService.for_work_root(PASSPHRASE, tmp_path / "work")
    yield service
    service.stop()


class Backend:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.state.mkdir()

    def workspace(self, work_dir: str, environment: dict[str, str], provider: str) -> auto.LocalWorkspace:
        (self.root / work_dir).mkdir(exist_ok=True)
        return auto.LocalWorkspace(
            work_dir=str(self.root / work_dir),
            pulumi_home=str(self.root / "home"),
            env_vars={
                "PULUMI_BACKEND_URL": f"file://{self.state}",
                "PULUMI_SKIP_UPDATE_CHECK": "true",
                **environment,
            },
            secrets_provider=provider,
            program=program,
            project_settings=auto.ProjectSettings(
                name="secrets", runtime="python", backend=auto.ProjectBackend(url=f"file://{self.state}")
            ),
        )

    def checkpoint(self) -> dict[str, Any]:
        text = (self.state / ".pulumi" / "stacks" / "secrets" / "web.json").read_text()
        assert SECRET not in text, "a secret stored in plain text"
        return json.loads(text)["checkpoint"]["latest"]  # type: ignore[no-any-return]


def up(workspace: auto.LocalWorkspace, provider: str, *, create: bool = True) -> None:
    stack = step_stack("web", workspace, create=create)
    use_secrets_provider(workspace, "web", provider)
    stack.up(on_output=lambda _line: None)


def secret_output(workspace: auto.LocalWorkspace) -> object:
    return auto.Stack.select("web", workspace).outputs()["token"].value


def wrapped_by_the_key_service(checkpoint: dict[str, Any]) -> bool:
    provider = checkpoint["secrets_providers"]
    wrapped = base64.b64decode(provider["state"]["encryptedkey"]).decode()
    return (
        provider["type"] == "cloud"
        and provider["state"]["url"] == BUILTIN_URL
        and wrapped.startswith("canaryapp:v1:")
    )


def test_with_the_key_service_a_secret_is_stored_encrypted_and_no_run_needs_the_passphrase(
    tmp_path: Path, keys: KeyService, no_passphrase_in_environment: None
) -> None:
    backend = Backend(tmp_path)
    workspace = backend.workspace("work", keys.environment(), BUILTIN_URL)
    up(workspace, BUILTIN_URL)
    up(workspace, BUILTIN_URL, create=False)

    assert wrapped_by_the_key_service(backend.checkpoint())
    assert secret_output(workspace) == SECRET
    assert "encryptionsalt" not in (tmp_path / "work" / "Pulumi.web.yaml").read_text()


def test_a_key_service_with_another_passphrase_opens_nothing(
    tmp_path: Path, keys: KeyService, no_passphrase_in_environment: None
) -> None:
    backend = Backend(tmp_path)
    up(backend.workspace("work", keys.environment(), BUILTIN_URL), BUILTIN_URL)
    other = KeyService.for_work_root("another passphrase", tmp_path / "other-root")
    try:
        with pytest.raises(auto.errors.CommandError, match="does not open under this passphrase"):
            up(backend.workspace("work", other.environment(), BUILTIN_URL), BUILTIN_URL, create=False)
    finally:
        other.stop()


def test_a_passphrase_stack_moves_to_the_key_service_at_its_next_run_and_keeps_its_secret(
    tmp_path: Path, keys: KeyService, no_passphrase_in_environment: None
) -> None:
    backend = Backend(tmp_path)
    passphrase = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    up(backend.workspace("work", passphrase, "passphrase"), "passphrase")
    assert backend.checkpoint()["secrets_providers"]["type"] == "passphrase"

    # The worker still gives every run the passphrase: the move reads the old state with it, once.
    workspace = backend.workspace("work", {**passphrase, **keys.environment()}, BUILTIN_URL)
    up(workspace, BUILTIN_URL, create=False)

    assert wrapped_by_the_key_service(backend.checkpoint())
    assert "encryptionsalt" not in (tmp_path / "work" / "Pulumi.web.yaml").read_text()
    assert secret_output(backend.workspace("work", keys.environment(), BUILTIN_URL)) == SECRET


def test_a_work_directory_without_the_stacks_settings_names_the_key_service_again(
    tmp_path: Path, keys: KeyService, no_passphrase_in_environment: None
) -> None:
    backend = Backend(tmp_path)
    up(backend.workspace("work", keys.environment(), BUILTIN_URL), BUILTIN_URL)
    first_key = backend.checkpoint()["secrets_providers"]["state"]["encryptedkey"]

    replacement = backend.workspace("replacement", keys.environment(), BUILTIN_URL)
    assert not os.path.exists(tmp_path / "replacement" / "Pulumi.web.yaml")
    up(replacement, BUILTIN_URL, create=False)

    assert wrapped_by_the_key_service(backend.checkpoint())
    assert backend.checkpoint()["secrets_providers"]["state"]["encryptedkey"] != first_key
    assert secret_output(replacement) == SECRET
