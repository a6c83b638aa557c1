"""Helpers shared by the tests: the repository root, the pdp CLI, tokens."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def pdp_bin() -> str:
    """The pdp CLI (PDP_BIN); the test is skipped without it."""
    b = os.environ.get("PDP_BIN")
    if not b:
        pytest.skip("PDP_BIN (the pdp CLI) is not set")
    return b


def realm_with_test_keys(dir: Path) -> Path:
    """The reference realm in ``dir``: policies/ with the identity settings
    that trust the committed test keys (policies/identity.json trusts none;
    the edge host's demo realm generates its key at start)."""
    dir.mkdir()
    for f in (ROOT / "policies").iterdir():
        if f.is_file():
            shutil.copyfile(f, dir / f.name)
    shutil.copyfile(ROOT / "pdp-core/tests/keys/identity.json", dir / "identity.json")
    return dir


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def eddsa_token(claims: dict) -> str:
    """An EdDSA JWT signed with pdp-core's test key (openssl: no Python
    crypto package needed)."""
    header = b64url(json.dumps({"alg": "EdDSA", "kid": "test-eddsa", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    # OpenSSL 3.0 signs Ed25519 only from a file (one shot, not a stream).
    with tempfile.NamedTemporaryFile() as f:
        f.write(signing_input)
        f.flush()
        sig = subprocess.run(
            ["openssl", "pkeyutl", "-sign", "-rawin", "-in", f.name,
             "-inkey", str(ROOT / "pdp-core/tests/keys/eddsa.key.pem")],
            capture_output=True,
            check=True,
        ).stdout
    return f"{header}.{payload}.{b64url(sig)}"
