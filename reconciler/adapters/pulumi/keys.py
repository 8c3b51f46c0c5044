"""The stacks' secrets provider: a key service in each step worker that answers the two calls of Vault's
transit API that Pulumi's `hashivault://` secrets provider makes, on a Unix socket only this worker's `pulumi`
runs are told about.

Why: Pulumi's passphrase secrets manager derives its key from the passphrase (PBKDF2-SHA256, 1,000,000
rounds, 170-250 ms of CPU here) in every CLI run that opens a stack's secrets, and a weight step's
`pulumi up` opens them whether the stack holds a secret or not. With a key-management service, Pulumi keeps
a random data key per stack, stored wrapped by the service, and a run asks the service to unwrap it: two
calls on a local socket, about a millisecond each. This service derives its key-encryption key from the same
passphrase with the same PBKDF2 (1,000,000 rounds, a random salt kept in the work root) once per worker
process, so the state stays encrypted under the passphrase exactly as hard to guess as before; what changes
is where the derivation runs. An operator who would rather use a real KMS sets CANARYAPP_SECRETS_PROVIDER to
its URL (`awskms://...`, `hashivault://...`, `gcpkms://...`, `azurekeyvault://...`) and this service is not
started.

A wrapped key reads `canaryapp:v1:<salt>:<nonce and AES-256-GCM ciphertext>` (base64): the salt travels with
it, so a key wrapped by another replica or before the work root was lost still unwraps (one more derivation,
once per process). Anything that is not a well-formed wrapped key, or a call without the service's token,
is refused and unwraps nothing.

A `pulumi` command run by hand on the reconciler's stacks (a dry run's `pulumi preview`, a `stack export`)
needs a key service too: `python -m reconciler.adapters.pulumi.keys pulumi ...` runs it with one of its own,
keyed by PULUMI_CONFIG_PASSPHRASE.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.server
import json
import os
import secrets
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_NAME = "canaryapp"
# The URL the stacks name: Pulumi's Vault-transit provider, our key, the address from VAULT_ADDR.
BUILTIN_URL = f"hashivault://{KEY_NAME}"
# As Pulumi derives the passphrase's key (sdk/go/common/resource/config/crypt.go).
PBKDF2_ROUNDS = 1_000_000
_PREFIX = "canaryapp:v1:"
_SALT_FILE = "secrets-salt"


class UnwrapError(ValueError):
    """A wrapped key this service cannot unwrap: malformed, or not wrapped under this passphrase."""


class KeyEncryptionKeys:
    """Wraps and unwraps data keys under keys derived from a passphrase, one per salt (derived once)."""

    def __init__(self, passphrase: str, salt: bytes) -> None:
        self._passphrase = passphrase.encode()
        self._salt = salt
        self._derived: dict[bytes, AESGCM] = {}
        self._lock = threading.Lock()

    def _key(self, salt: bytes) -> AESGCM:
        with self._lock:
            if salt not in self._derived:
                key = hashlib.pbkdf2_hmac("sha256", self._passphrase, salt, PBKDF2_ROUNDS, 32)
                self._derived[salt] = AESGCM(key)
            return self._derived[salt]

    def wrap(self, plaintext: bytes) -> str:
        nonce = secrets.token_bytes(12)
        sealed = self._key(self._salt).encrypt(nonce, plaintext, _associated(self._salt))
        return f"{_PREFIX}{_b64(self._salt)}:{_b64(nonce + sealed)}"

    def unwrap(self, wrapped: str) -> bytes:
        if not wrapped.startswith(_PREFIX) or wrapped.count(":") != 3:
            raise UnwrapError("not a key wrapped by canaryapp's key service (canaryapp:v1:SALT:DATA)")
        salt_text, data_text = wrapped[len(_PREFIX) :].split(":")
        try:
            salt, data = (
                base64.b64decode(salt_text, validate=True),
                base64.b64decode(data_text, validate=True),
            )
        except binascii.Error:
            raise UnwrapError("a wrapped key with a salt or data that is not base64") from None
        if len(salt) < 8 or len(data) < 12 + 16:
            raise UnwrapError("a wrapped key too short to be one")
        try:
            return self._key(salt).decrypt(data[:12], data[12:], _associated(salt))
        except InvalidTag:
            raise UnwrapError(
                "a wrapped key that does not open under this passphrase: PULUMI_CONFIG_PASSPHRASE must be "
                "the one the stack's key was wrapped with"
            ) from None


def _associated(salt: bytes) -> bytes:
    return _PREFIX.encode() + salt


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def installation_salt(work_root: Path) -> bytes:
    """The salt of this work root's key-encryption key: made once (random), then read back.

    Step workers start together and each asks for it: the salt is written whole to a private file of its own
    first and then linked into place, which fails when another worker's is there already, so no worker ever
    reads a salt file still being written (one that did took an empty salt, and every key it wrapped was
    refused)."""
    path = work_root / _SALT_FILE
    work_root.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        descriptor, draft = tempfile.mkstemp(dir=work_root, prefix=f".{_SALT_FILE}-")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(_b64(secrets.token_bytes(16)) + "\n")
            os.link(draft, path)
        except FileExistsError:
            pass  # another worker's salt is in place
        finally:
            os.unlink(draft)
    salt = base64.b64decode(path.read_text().strip(), validate=True)
    if len(salt) < 8:
        raise UnwrapError(f"{path} holds no salt: remove it, and the next step process makes a new one")
    return salt


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class KeyService:
    """The transit calls on a Unix socket in a private directory, behind a random token."""

    def __init__(self, keys: KeyEncryptionKeys) -> None:
        self.keys = keys
        self.token = secrets.token_hex(32)
        self._directory = Path(tempfile.mkdtemp(prefix="canaryapp-keys-"))  # mode 0700
        self.socket_path = self._directory / "transit.sock"
        self._server = _UnixHTTPServer(str(self.socket_path), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="key-service", daemon=True)
        self._thread.start()
        # A step process ends without stopping its service: its socket goes when the process exits.
        self._remove = weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)

    @classmethod
    def for_work_root(cls, passphrase: str, work_root: Path) -> KeyService:
        return cls(KeyEncryptionKeys(passphrase, installation_salt(work_root)))

    def environment(self) -> dict[str, str]:
        """What a `pulumi` run needs to reach this service (the SERVER_ names win over an operator's own)."""
        address = f"unix://{self.socket_path}"
        return {
            "VAULT_ADDR": address,
            "VAULT_SERVER_URL": address,
            "VAULT_TOKEN": self.token,
            "VAULT_SERVER_TOKEN": self.token,
        }

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._remove()

    def answer(self, method: str, path: str, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """The status and JSON body of one call (Vault's shapes: {"data": ...} or {"errors": [...]})."""
        if not hmac.compare_digest(token.encode(), self.token.encode()):
            return 403, {"errors": ["permission denied"]}
        operation = {
            f"/v1/transit/encrypt/{KEY_NAME}": "encrypt",
            f"/v1/transit/decrypt/{KEY_NAME}": "decrypt",
        }
        if method not in ("PUT", "POST") or path not in operation:
            return 404, {"errors": [f"no handler for {method} {path}: only transit encrypt and decrypt"]}
        try:
            request = json.loads(body)
            if operation[path] == "encrypt":
                plaintext = base64.b64decode(str(request["plaintext"]), validate=True)
                return 200, {"data": {"ciphertext": self.keys.wrap(plaintext)}}
            plaintext = self.keys.unwrap(str(request["ciphertext"]))
        except UnwrapError as error:
            return 400, {"errors": [str(error)]}
        except (ValueError, KeyError, TypeError, binascii.Error):
            return 400, {"errors": ["the body must be JSON with a base64 plaintext or a ciphertext"]}
        return 200, {"data": {"plaintext": _b64(plaintext)}}


_MAX_BODY = 64 * 1024


def _handler(service: KeyService) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > _MAX_BODY:
                status, answer = 413, {"errors": ["body too large"]}
            else:
                status, answer = service.answer(
                    self.command, self.path, self.headers.get("X-Vault-Token") or "", self.rfile.read(length)
                )
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_PUT(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def address_string(self) -> str:
            return "unix"

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Runs a command (`pulumi ...` on the reconciler's stacks) with a key service of its own."""
    command = sys.argv[1:] if argv is None else argv
    if not command:
        print(
            "usage: python -m reconciler.adapters.pulumi.keys pulumi ARGS...\n"
            "runs the command with a key service keyed by PULUMI_CONFIG_PASSPHRASE, as the reconciler's "
            "step processes run theirs",
            file=sys.stderr,
        )
        return 2
    # A fresh salt: only keys this command wraps use it, and it travels with them.
    keys = KeyEncryptionKeys(os.environ.get("PULUMI_CONFIG_PASSPHRASE", ""), secrets.token_bytes(16))
    service = KeyService(keys)
    try:
        return subprocess.run(command, env={**os.environ, **service.environment()}, check=False).returncode
    finally:
        service.stop()


if __name__ == "__main__":
    raise SystemExit(main())
