"""The step workers' key service: data keys wrapped under a key derived from the passphrase (once per salt),
unwrapped only under that passphrase and only as wrapped, served as Vault's transit encrypt and decrypt on a
private Unix socket behind a token, in the shapes Pulumi's `hashivault://` secrets provider sends and
reads."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import json
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.pulumi import keys
from reconciler.adapters.pulumi.keys import KeyEncryptionKeys, KeyService, UnwrapError, installation_salt

DATA_KEY = bytes(range(32))
REPO = Path(__file__).resolve().parents[4]


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, int]]:
    """Counts the derivations (salt, rounds), and makes each cheap: 1,000 rounds instead of 1,000,000."""
    made: list[tuple[bytes, int]] = []
    real = hashlib.pbkdf2_hmac

    def counted(name: str, password: bytes, salt: bytes, rounds: int, length: int) -> bytes:
        made.append((salt, rounds))
        return real(name, password, salt, 1000, length)

    monkeypatch.setattr(keys.hashlib, "pbkdf2_hmac", counted)
    return made


def test_a_wrapped_key_unwraps_under_the_passphrase_deriving_once_per_salt_with_pulumis_rounds(
    derivations: list[tuple[bytes, int]],
) -> None:
    first, second = KeyEncryptionKeys("passphrase", b"salt-one"), KeyEncryptionKeys("passphrase", b"salt-two")
    wrapped = [first.wrap(DATA_KEY) for _ in range(3)]

    assert len(set(wrapped)) == 3, "a fresh nonce for every wrap"
    assert all(first.unwrap(text) == DATA_KEY for text in wrapped)
    assert derivations == [(b"salt-one", 1_000_000)]
    assert second.unwrap(wrapped[0]) == DATA_KEY, (
        "another replica's (or work root's) salt travels with the key"
    )
    assert second.unwrap(wrapped[1]) == DATA_KEY
    assert derivations == [(b"salt-one", 1_000_000), (b"salt-one", 1_000_000)]
    assert DATA_KEY not in base64.b64decode(wrapped[0].rsplit(":", 1)[1])


def _tampered(text: str) -> str:
    head, data = text.rsplit(":", 1)
    raw = bytearray(base64.b64decode(data))
    raw[-1] ^= 1
    return f"{head}:{base64.b64encode(bytes(raw)).decode()}"


def _other_salt(text: str) -> str:
    prefix, _salt, data = text.rsplit(":", 2)
    return f"{prefix}:{base64.b64encode(b'another-salt').decode()}:{data}"


def test_a_key_wrapped_under_another_passphrase_unwraps_nothing_and_names_the_variable(
    derivations: list[tuple[bytes, int]],
) -> None:
    wrapped = KeyEncryptionKeys("the other passphrase", b"salt-one").wrap(DATA_KEY)
    with pytest.raises(UnwrapError, match="PULUMI_CONFIG_PASSPHRASE must be the one"):
        KeyEncryptionKeys("passphrase", b"salt-one").unwrap(wrapped)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(_tampered, "does not open", id="a changed ciphertext"),
        pytest.param(_other_salt, "does not open", id="a changed salt"),
        pytest.param(
            lambda text: "vault:v1:" + text.rsplit(":", 1)[1], "not a key wrapped", id="Vault's own"
        ),
        pytest.param(lambda text: text + ":more", "not a key wrapped", id="one part too many"),
        pytest.param(lambda text: "canaryapp:v1:c2FsdA==:!!", "not base64", id="not base64"),
        pytest.param(lambda text: "canaryapp:v1:c2FsdA==:AAAA", "too short", id="too short"),
    ],
)
def test_a_key_not_as_it_was_wrapped_unwraps_nothing(
    derivations: list[tuple[bytes, int]], change: Callable[[str], str], message: str
) -> None:
    keeper = KeyEncryptionKeys("passphrase", b"salt-one")
    with pytest.raises(UnwrapError, match=message):
        keeper.unwrap(change(keeper.wrap(DATA_KEY)))


def test_the_installation_salt_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    salt = installation_salt(tmp_path / "work")
    assert len(salt) == 16
    assert installation_salt(tmp_path / "work") == salt
    assert stat.S_IMODE((tmp_path / "work" / "secrets-salt").stat().st_mode) == 0o600
    assert installation_salt(tmp_path / "other") != salt


def test_workers_starting_together_all_read_the_one_whole_salt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Step workers start at once: none may read a salt file another is still writing (one that did took an
    empty salt, and every key it wrapped was refused, in a bench of 100 rollouts). Making the salt is slowed
    down so that every worker meets the others' half-made ones."""
    work = tmp_path / "work"
    start = threading.Barrier(16)
    token_bytes = secrets.token_bytes

    def slow_token_bytes(size: int) -> bytes:
        time.sleep(0.2)
        return token_bytes(size)

    monkeypatch.setattr(keys.secrets, "token_bytes", slow_token_bytes)

    def salt() -> bytes:
        start.wait()
        return installation_salt(work)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        salts = list(pool.map(lambda _: salt(), range(16)))
    assert len(set(salts)) == 1
    assert len(salts[0]) == 16
    assert sorted(path.name for path in work.iterdir()) == ["secrets-salt"]  # no draft left behind


def test_a_salt_file_without_a_salt_is_refused_with_the_fix(tmp_path: Path) -> None:
    (tmp_path / "secrets-salt").write_text("\n")
    with pytest.raises(UnwrapError, match="holds no salt: remove it"):
        installation_salt(tmp_path)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@pytest.fixture
def service(derivations: list[tuple[bytes, int]]) -> Iterator[KeyService]:
    running = KeyService(KeyEncryptionKeys("passphrase", b"salt-one"))
    yield running
    running.stop()


def call(
    service: KeyService,
    path: str,
    body: dict[str, Any] | bytes,
    token: str | None = None,
    method: str = "PUT",
) -> tuple[int, dict[str, Any]]:
    """One call as Vault's Go client makes it (the hashivault keeper's Logical().Write: PUT, JSON, token)."""
    connection = UnixConnection(service.environment()["VAULT_ADDR"].removeprefix("unix://"))
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection.request(method, path, payload, {"X-Vault-Token": service.token if token is None else token})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def test_the_service_wraps_and_unwraps_as_vaults_transit_does_for_pulumi(service: KeyService) -> None:
    # Go's JSON encodes the keeper's []byte plaintext as base64; the keeper decodes the answer's base64.
    status, encrypted = call(
        service, "/v1/transit/encrypt/canaryapp", {"plaintext": base64.b64encode(DATA_KEY).decode()}
    )
    assert status == 200
    ciphertext = encrypted["data"]["ciphertext"]
    assert ciphertext.startswith("canaryapp:v1:")

    status, decrypted = call(service, "/v1/transit/decrypt/canaryapp", {"ciphertext": ciphertext})
    assert (status, base64.b64decode(decrypted["data"]["plaintext"])) == (200, DATA_KEY)

    environment = service.environment()
    assert environment["VAULT_ADDR"] == environment["VAULT_SERVER_URL"] == f"unix://{service.socket_path}"
    assert environment["VAULT_TOKEN"] == environment["VAULT_SERVER_TOKEN"] == service.token
    assert stat.S_IMODE(service.socket_path.parent.stat().st_mode) == 0o700


def test_the_service_refuses_a_call_without_its_token_or_off_its_two_paths(service: KeyService) -> None:
    wrapped = service.keys.wrap(DATA_KEY)
    for token in ("", "not-the-token", service.token[:-1]):
        status, answer = call(service, "/v1/transit/decrypt/canaryapp", {"ciphertext": wrapped}, token=token)
        assert (status, answer) == (403, {"errors": ["permission denied"]})

    refused = [
        call(service, "/v1/transit/decrypt/other-key", {"ciphertext": wrapped}),
        call(service, "/v1/sys/health", {}, method="POST"),
        call(service, "/v1/transit/decrypt/canaryapp", b"not json"),
        call(service, "/v1/transit/encrypt/canaryapp", {"plaintext": "not base64!"}),
        call(service, "/v1/transit/decrypt/canaryapp", {"ciphertext": "vault:v1:abc"}),
    ]
    assert [status for status, _answer in refused] == [404, 404, 400, 400, 400]
    assert all("data" not in answer and answer["errors"] for _status, answer in refused)


def test_a_stopped_service_leaves_no_socket(derivations: list[tuple[bytes, int]]) -> None:
    running = KeyService(KeyEncryptionKeys("passphrase", b"salt-one"))
    directory = running.socket_path.parent
    assert running.socket_path.is_socket()
    running.stop()
    assert not directory.exists()


def test_a_command_by_hand_runs_with_a_key_service_of_its_own_and_keeps_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "passphrase")
    reaches = (
        "import os, socket, sys\n"
        "address = os.environ['VAULT_ADDR']\n"
        "assert address == os.environ['VAULT_SERVER_URL'] and os.environ['VAULT_TOKEN']\n"
        "socket.socket(socket.AF_UNIX).connect(address.removeprefix('unix://'))\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    assert keys.main([sys.executable, "-c", reaches, "0"]) == 0
    assert keys.main([sys.executable, "-c", reaches, "7"]) == 7
    assert keys.main([]) == 2


def test_a_process_that_ends_without_stopping_its_service_leaves_no_socket(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from reconciler.adapters.pulumi.keys import KeyService\n"
        "service = KeyService.for_work_root('passphrase', Path(sys.argv[1]))\n"
        "print(service.socket_path, flush=True)\n"
    )
    ended = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, check=True, cwd=REPO
    )
    socket_path = Path(ended.stdout.strip())
    assert socket_path.name == "transit.sock"
    assert not socket_path.parent.exists()
