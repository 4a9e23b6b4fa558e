"""Tests of poisonguard.pipelines.outputs.signing: key pairs, signing folders, verifying them."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from poisonguard.pipelines.core.errors import SigningError, VerificationError
from poisonguard.pipelines.outputs.signing import (
    VerifiedFolder, ensure_state_key, generate_keypair, load_private_key, public_key_for,
    sign_folder, verify_folder,
)

CLEAN = b"id,x,label\n1,0.5,a\n2,0.7,b\n"
REPORT = b"<html>report</html>\n"
PROVENANCE = b'{"batches": []}\n'


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def signed(tmp_path, keys) -> Path:
    folder = tmp_path / "run"
    (folder / "meta").mkdir(parents=True)
    (folder / "clean.csv").write_bytes(CLEAN)
    (folder / "report.html").write_bytes(REPORT)
    (folder / "meta" / "provenance.json").write_bytes(PROVENANCE)
    sign_folder(folder, keys[0])
    return folder


def _message(excinfo) -> str:
    return str(excinfo.value)


def test_generate_keypair_modes_and_type(tmp_path):
    private_path, public_path = generate_keypair(tmp_path / "new" / "keys")
    assert private_path == tmp_path / "new" / "keys" / "private.pem"
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(private_path.parent.stat().st_mode) == 0o700
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert public_path.read_bytes() == public_key_for(private_path)
    # No temporary key file is left behind.
    assert sorted(p.name for p in private_path.parent.iterdir()) == ["private.pem", "public.pem"]


def test_generate_keypair_refuses_to_overwrite(tmp_path):
    private_path, _ = generate_keypair(tmp_path)
    before = private_path.read_bytes()
    with pytest.raises(SigningError, match="private.pem: a private key already exists"):
        generate_keypair(tmp_path)
    assert private_path.read_bytes() == before


def test_ensure_state_key_creates_once(tmp_path):
    path, created = ensure_state_key(tmp_path / "state")
    assert (path, created) == (tmp_path / "state" / "keys" / "private.pem", True)
    first = path.read_bytes()
    (path.parent / "public.pem").unlink()
    assert ensure_state_key(tmp_path / "state") == (path, False)
    assert path.read_bytes() == first
    assert (path.parent / "public.pem").read_bytes() == public_key_for(path)


def test_load_private_key_errors_name_the_file(tmp_path):
    with pytest.raises(SigningError, match=r"missing\.pem: private key file not found"):
        load_private_key(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("hello")
    with pytest.raises(SigningError, match=r"junk\.pem: not a PEM file"):
        load_private_key(junk)
    rsa_path = tmp_path / "rsa.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    rsa_path.write_bytes(rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SigningError, match=r"rsa\.pem: the key is .*RSA.*expected an ECDSA P-256"):
        load_private_key(rsa_path)
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(SigningError, match=r"p384\.pem: the key is secp384r1"):
        load_private_key(p384)


def test_sign_then_verify(signed, keys):
    result = verify_folder(signed, keys[1])
    assert isinstance(result, VerifiedFolder)
    assert result.folder == signed
    assert result.files == {
        "clean.csv": hashlib.sha256(CLEAN).hexdigest(),
        "report.html": hashlib.sha256(REPORT).hexdigest(),
        "meta/provenance.json": hashlib.sha256(PROVENANCE).hexdigest(),
    }


def test_signature_payload_is_an_in_toto_statement(signed):
    bundle = json.loads((signed / "signature.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"][0]["name"] == "run"
    names = [item["name"] for item in statement["predicate"]["resources"]]
    assert names == ["clean.csv", "meta/provenance.json", "report.html"]
    assert "signature.sig" in statement["predicate"]["serialization"]["ignore_paths"]


def test_model_signing_cli_verifies_our_output(signed, keys):
    cli = shutil.which("model_signing") or str(Path(sys.executable).parent / "model_signing")
    result = subprocess.run(
        [cli, "verify", "key", str(signed), "--signature", str(signed / "signature.sig"),
         "--public_key", str(keys[1]), "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verification succeeded" in result.stdout


def test_verify_survives_moving_the_folder(signed, keys, tmp_path):
    # The pipeline signs a temporary folder, then renames it.
    moved = signed.rename(tmp_path / "final")
    assert verify_folder(moved, keys[1]).folder == moved


def test_tampered_byte_names_exactly_that_file(signed, keys):
    data = bytearray((signed / "clean.csv").read_bytes())
    data[5] ^= 1
    (signed / "clean.csv").write_bytes(bytes(data))
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == f"{signed}: clean.csv changed since it was signed"


def test_added_file_is_named_as_appeared(signed, keys):
    (signed / "meta" / "extra.txt").write_text("sneaky")
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == f"{signed}: meta/extra.txt appeared"


@pytest.mark.parametrize("added", [".git/x.parquet", ".gitignore", ".gitattributes", ".github/x.py"])
def test_an_added_git_file_fails_both_verifiers(signed, keys, added):
    (signed / added).parent.mkdir(exist_ok=True)
    (signed / added).write_text("sneaky")
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == f"{signed}: {added} appeared"
    # model_signing ignores git paths unless told not to; the README's command tells it.
    cli = shutil.which("model_signing") or str(Path(sys.executable).parent / "model_signing")
    result = subprocess.run(
        [cli, "verify", "key", str(signed), "--signature", str(signed / "signature.sig"),
         "--public_key", str(keys[1]), "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0 and added.split("/")[0] in result.stdout + result.stderr


def test_deleted_file_is_named_missing(signed, keys):
    (signed / "report.html").unlink()
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == f"{signed}: report.html is missing"


def test_several_differences_in_one_message(signed, keys):
    (signed / "clean.csv").write_bytes(CLEAN + b"3,9.9,a\n")
    (signed / "extra.txt").write_text("x")
    (signed / "report.html").unlink()
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == (
        f"{signed}: clean.csv changed since it was signed; extra.txt appeared; report.html is missing"
    )


def test_wrong_public_key(signed, tmp_path):
    _, other_public = generate_keypair(tmp_path / "other")
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, other_public)
    assert f"does not match the public key {other_public}" in _message(excinfo)


def test_altered_statement_is_not_trusted(signed, keys):
    # Rewrite the signed statement to match a tampered file: the envelope
    # signature no longer holds, so the error blames the signature.
    (signed / "clean.csv").write_bytes(b"poisoned\n")
    signature = signed / "signature.sig"
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for item in statement["predicate"]["resources"]:
        if item["name"] == "clean.csv":
            item["digest"] = hashlib.sha256(b"poisoned\n").hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(VerificationError, match="does not match the public key"):
        verify_folder(signed, keys[1])


def test_missing_signature(signed, keys):
    (signed / "signature.sig").unlink()
    with pytest.raises(VerificationError) as excinfo:
        verify_folder(signed, keys[1])
    assert _message(excinfo) == (
        f"{signed}: no signature.sig: this folder was never signed (or the signature was removed)"
    )


@pytest.mark.parametrize("content", ["not json", '{"mediaType": 1}', '{"dsseEnvelope": {"payload": "!!"}}'])
def test_corrupt_signature_file(signed, keys, content):
    (signed / "signature.sig").write_text(content)
    with pytest.raises(VerificationError, match="signature.sig is not a readable model_signing bundle"):
        verify_folder(signed, keys[1])


def test_private_key_inside_folder_is_refused(tmp_path):
    folder = tmp_path / "out"
    private_path, _ = generate_keypair(folder / "keys")
    (folder / "data.csv").write_bytes(CLEAN)
    with pytest.raises(SigningError, match="inside the folder being signed"):
        sign_folder(folder, private_path)
    assert not (folder / "signature.sig").exists()


def test_resigning_replaces_the_signature(signed, keys):
    (signed / "clean.csv").write_bytes(b"new\n")
    sign_folder(signed, keys[0])
    assert set(verify_folder(signed, keys[1]).files) == {"clean.csv", "report.html", "meta/provenance.json"}
