"""Signing keys and signed folders.

A clean dataset leaves poisonguard as a folder (data, provenance, report)
signed with the OpenSSF ``model_signing`` library: an ECDSA P-256 key signs a
DSSE envelope whose payload is an in-toto Statement listing every file of the
folder with its sha256. Anyone can check such a folder with the stock tool::

    model_signing verify key DIR --signature DIR/signature.sig --public_key public.pem

This module makes key pairs, signs folders and verifies them. Verification
defers to ``model_signing`` for the verdict; when it fails, the signed
statement is compared with the files on disk so the error names each file
that changed, appeared or went missing.

A private key is never written into a signed folder and never logged: errors
name key files by path only.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from poisonguard.pipelines.core.errors import SigningError, VerificationError

PRIVATE_KEY_NAME = "private.pem"
PUBLIC_KEY_NAME = "public.pem"
DEFAULT_SIGNATURE_NAME = "signature.sig"

# DSSE payload type model_signing puts in its envelopes (in-toto JSON).
_IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
# model_signing picks the ECDSA hash from the curve size; mirror it so the
# envelope check below agrees with the library on every key it accepts.
_HASH_FOR_KEY_SIZE = {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}


@dataclass(frozen=True)
class VerifiedFolder:
    """A folder whose files match their signature.

    Attributes
    ----------
    folder : Path
        The folder that was verified.
    files : dict of str to str
        Signed file names (POSIX paths relative to ``folder``) to their
        sha256 hex digests, as listed in the signed manifest.
    """

    folder: Path
    files: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- keys


def generate_keypair(out_dir: Path) -> tuple[Path, Path]:
    """Write a new ECDSA P-256 key pair into ``out_dir``.

    Parameters
    ----------
    out_dir : Path
        Folder for ``private.pem`` (PKCS8 PEM, unencrypted, mode 0600) and
        ``public.pem`` (SubjectPublicKeyInfo PEM). Created (mode 0700) if
        missing.

    Returns
    -------
    (private_path, public_path) : tuple of Path

    Raises
    ------
    SigningError
        ``private.pem`` already exists (it is never overwritten), or the
        folder cannot be written.
    """
    out_dir = Path(out_dir)
    private_path = out_dir / PRIVATE_KEY_NAME
    public_path = out_dir / PUBLIC_KEY_NAME
    if private_path.exists():
        raise SigningError(f"{private_path}: a private key already exists; refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private_exclusively(private_path, private_pem)
        public_path.write_bytes(_public_pem(key))
    except FileExistsError:
        raise SigningError(f"{private_path}: a private key already exists; refusing to overwrite it") from None
    except OSError as error:
        raise SigningError(f"{out_dir}: cannot write the key pair: {error.strerror or error}") from None
    return private_path, public_path


def _write_private_exclusively(path: Path, pem: bytes) -> None:
    """Write ``pem`` to ``path`` with mode 0600, failing if ``path`` exists.

    The key goes to a temporary file created 0600 (never readable by others,
    whatever the umask) in the same folder, then is hard-linked into place:
    ``link`` fails atomically when the name exists, so two processes racing
    for the same key cannot overwrite each other or expose a half-written key.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=".private-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)
    finally:
        os.unlink(temporary)


def ensure_state_key(state_dir: Path) -> tuple[Path, bool]:
    """Return the state folder's private key, creating the pair on first use.

    Parameters
    ----------
    state_dir : Path
        The poisonguard state folder; keys live in ``state_dir/keys/``.

    Returns
    -------
    (private_path, created) : tuple of (Path, bool)
        ``created`` is True when the pair was made by this call.
    """
    keys_dir = Path(state_dir) / "keys"
    private_path = keys_dir / PRIVATE_KEY_NAME
    if not private_path.exists():
        try:
            generate_keypair(keys_dir)
            return private_path, True
        except SigningError:
            if not private_path.exists():
                raise
            # Another process made the key between our check and our write.
    public_path = keys_dir / PUBLIC_KEY_NAME
    if not public_path.exists():
        # The public half is derived data; restore it rather than fail later.
        public_path.write_bytes(public_key_for(private_path))
    return private_path, False


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM ECDSA P-256 private key.

    Raises
    ------
    SigningError
        The file is missing, unreadable, not PEM, encrypted, or not a P-256
        key. The message names the file, never its content.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"{path}: private key file not found (make one with `poisonguard keygen`)") from None
    except OSError as error:
        raise SigningError(f"{path}: cannot read the private key: {error.strerror or error}") from None
    if b"-----BEGIN" not in data:
        raise SigningError(f"{path}: not a PEM file; expected an ECDSA P-256 private key in PEM")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise SigningError(f"{path}: the private key is encrypted; poisonguard needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path}: not a readable PEM private key; expected ECDSA P-256") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        kind = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
        raise SigningError(f"{path}: the key is {kind}; expected an ECDSA P-256 (secp256r1) key")
    return key


def public_key_for(private_key_path: Path) -> bytes:
    """Return the SubjectPublicKeyInfo PEM of the key in ``private_key_path``."""
    return _public_pem(load_private_key(private_key_path))


def _public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    path = Path(path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise SigningError(f"{path}: public key file not found") from None
    except OSError as error:
        raise SigningError(f"{path}: cannot read the public key: {error.strerror or error}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningError(f"{path}: not a PEM public key; expected an ECDSA public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.key_size not in _HASH_FOR_KEY_SIZE:
        raise SigningError(f"{path}: not an ECDSA P-256/P-384/P-521 public key")
    return key


# --------------------------------------------------------------------------- sign


def sign_folder(folder: Path, private_key: Path, signature_name: str = DEFAULT_SIGNATURE_NAME) -> Path:
    """Sign every file in ``folder`` with ``model_signing``.

    Parameters
    ----------
    folder : Path
        The folder to sign; every file under it (recursively) is signed,
        except the signature itself. Git metadata (``.git/``, ``.gitignore``,
        ``.gitattributes``, ``.github/``) is signed too, unlike
        ``model_signing``'s default: an output folder has none, so one that
        appears later must fail verification like any other added file
        (``model_signing verify ... --no-ignore-git-paths``).
    private_key : Path
        ECDSA P-256 private key PEM. Must not live inside ``folder``.
    signature_name : str
        File name of the signature (a Sigstore bundle), written in ``folder``.

    Returns
    -------
    Path of the signature file.

    Raises
    ------
    SigningError
        The folder is missing, the key is unusable or inside the folder, or
        ``model_signing`` fails.
    """
    import model_signing  # deferred: importing it costs ~0.3 s

    folder_abs = Path(folder).resolve()
    key_abs = Path(private_key).resolve()
    _check_signature_name(signature_name)
    if not folder_abs.is_dir():
        raise SigningError(f"{folder}: not a folder; cannot sign it")
    if key_abs.is_relative_to(folder_abs):
        raise SigningError(
            f"{private_key}: the private key is inside the folder being signed ({folder}); "
            "keep it outside so it is never shipped with the data"
        )
    load_private_key(key_abs)  # our own, clearer errors before the library's
    signature_abs = folder_abs / signature_name
    try:
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=str(key_abs))
        # The ignored path must be absolute: model_signing joins it to the
        # folder, and only an absolute path survives that join unchanged.
        config.set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[signature_abs], ignore_git_paths=False)
        )
        config.sign(folder_abs, signature_abs)
    except (ValueError, OSError) as error:
        raise SigningError(f"{folder}: could not sign the folder: {error}") from None
    return signature_abs


def _check_signature_name(signature_name: str) -> None:
    if not signature_name or Path(signature_name).name != signature_name or signature_name in (".", ".."):
        raise SigningError(f"signature name {signature_name!r}: expected a plain file name such as 'signature.sig'")


# --------------------------------------------------------------------------- verify


def verify_folder(
    folder: Path, public_key: Path, signature_name: str = DEFAULT_SIGNATURE_NAME
) -> VerifiedFolder:
    """Check that ``folder`` still matches its signature.

    ``model_signing`` decides pass or fail. On failure, the signed statement
    is compared with the files present so the message names every file that
    changed, appeared or went missing.

    Parameters
    ----------
    folder : Path
        A folder signed by :func:`sign_folder`.
    public_key : Path
        Public key PEM paired with the signing key (the CLI defaults it to
        the state folder's ``keys/public.pem``).
    signature_name : str
        File name of the signature inside ``folder``.

    Returns
    -------
    VerifiedFolder

    Raises
    ------
    VerificationError
        No signature, a signature made with another key or altered, or files
        that differ from the signed ones.
    SigningError
        The public key file cannot be read.
    """
    import model_signing

    if public_key is None:
        raise TypeError("verify_folder needs the public key paired with the signing key")
    _check_signature_name(signature_name)
    folder_abs = Path(folder).resolve()
    signature_abs = folder_abs / signature_name
    if not folder_abs.is_dir():
        raise VerificationError(f"{folder}: not a folder; nothing to verify")
    if not signature_abs.is_file():
        raise VerificationError(
            f"{folder}: no {signature_name}: this folder was never signed (or the signature was removed)"
        )
    key = _load_public_key(public_key)
    try:
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=str(public_key))
        config.set_hashing_config(
            model_signing.hashing.Config().set_ignored_paths(paths=[signature_abs], ignore_git_paths=False)
        )
        config.verify(folder_abs, signature_abs)
        failure = None
    except Exception as error:  # noqa: BLE001 - any failure of the library is a failed verification
        failure = error
    try:
        bundle = json.loads(signature_abs.read_text(encoding="utf-8"))
        payload = _payload(bundle)
    except (ValueError, KeyError, TypeError, IndexError, OSError):
        raise VerificationError(f"{folder}: {signature_name} is not a readable model_signing bundle") from None
    if failure is not None:
        raise _explain_failure(folder, folder_abs, signature_name, public_key, key, bundle, payload, failure)
    return VerifiedFolder(folder=Path(folder), files=_signed_files(payload))


def _payload(bundle: dict) -> dict:
    """Decode the in-toto Statement from a bundle's DSSE envelope (unverified)."""
    raw = base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True)
    statement = json.loads(raw)
    _signed_files(statement)  # raises KeyError/TypeError when the shape is wrong
    return statement


def _signed_files(statement: dict) -> dict[str, str]:
    # predicate.resources: [{"name": "sub/b.csv", "algorithm": "sha256", "digest": hex}]
    return {item["name"]: item["digest"] for item in statement["predicate"]["resources"]}


def _envelope_is_authentic(bundle: dict, key: ec.EllipticCurvePublicKey) -> bool:
    """Whether the DSSE envelope was signed by ``key``.

    Only used to decide whether the (already rejected) statement can be
    trusted to explain the failure; the verdict itself is model_signing's.
    """
    try:
        envelope = bundle["dsseEnvelope"]
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        payload_type = envelope.get("payloadType", _IN_TOTO_PAYLOAD_TYPE).encode()
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    # DSSE v1 pre-authentication encoding: what the signature covers.
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    try:
        key.verify(signature, pae, ec.ECDSA(_HASH_FOR_KEY_SIZE[key.key_size]()))
    except InvalidSignature:
        return False
    return True


def _explain_failure(folder, folder_abs, signature_name, public_key, key, bundle, payload, error) -> VerificationError:
    """Turn a model_signing failure into a message naming its cause."""
    if not _envelope_is_authentic(bundle, key):
        return VerificationError(
            f"{folder}: the signature in {signature_name} does not match the public key {public_key} "
            "(signed with another key, or the signature file was altered)"
        )
    problems = _describe_differences(folder_abs, signature_name, payload)
    if not problems:
        # Authentic statement, same files: the library failed for another
        # reason (e.g. a symlink); pass its words on.
        return VerificationError(f"{folder}: does not verify against {signature_name}: {error}")
    return VerificationError(f"{folder}: " + "; ".join(problems))


def _describe_differences(folder_abs: Path, signature_name: str, statement: dict) -> list[str]:
    """One clause per file that changed, appeared or went missing."""
    signed = _signed_files(statement)
    serialization_args = statement["predicate"].get("serialization", {})
    ignored = [Path(p) for p in serialization_args.get("ignore_paths", [])] + [Path(signature_name)]
    present = _hash_present_files(folder_abs, ignored)
    changed = sorted(name for name in signed.keys() & present.keys() if signed[name] != present[name])
    appeared = sorted(present.keys() - signed.keys())
    missing = sorted(signed.keys() - present.keys())
    return (
        [f"{name} changed since it was signed" for name in changed]
        + [f"{name} appeared" for name in appeared]
        + [f"{name} is missing" for name in missing]
    )


def _hash_present_files(folder_abs: Path, ignored: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``folder_abs`` outside the ignored paths."""
    digests: dict[str, str] = {}
    for path in sorted(folder_abs.rglob("*")):
        relative = path.relative_to(folder_abs)
        if not path.is_file() or any(relative.is_relative_to(skip) for skip in ignored):
            continue
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(chunk)
        digests[relative.as_posix()] = hasher.hexdigest()
    return digests
