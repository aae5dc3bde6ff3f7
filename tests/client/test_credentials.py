"""Loading the application key: key file (mode checked), systemd credentials, environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from b2fs.b2 import Credentials, CredentialsError, load_credentials, resolve_endpoint
from b2fs.b2.credentials import DEFAULT_ENDPOINT

SECRET = "K005SuperSecretApplicationKey01"


def key_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "b2.key"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_key_file(tmp_path: Path) -> None:
    creds = load_credentials(key_file=key_file(tmp_path, f"005keyid:{SECRET}\n"), environ={})
    assert (creds.key_id, creds.key) == ("005keyid", SECRET)
    assert "key file" in creds.source
    assert SECRET not in repr(creds) and "005keyid" in repr(creds)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, f"005keyid:{SECRET}", mode)
    with pytest.raises(CredentialsError, match="group or others") as caught:
        load_credentials(key_file=path, environ={})
    assert SECRET not in str(caught.value) and "chmod 600" in str(caught.value)


@pytest.mark.parametrize("text", ["no-colon-here", ":onlykey", "onlyid:", "a:b\nc:d", ""])
def test_malformed_key_files(tmp_path: Path, text: str) -> None:
    with pytest.raises(CredentialsError, match="keyID:applicationKey"):
        load_credentials(key_file=key_file(tmp_path, text), environ={})


def test_key_file_errors_never_show_the_key(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError) as caught:
        load_credentials(key_file=key_file(tmp_path, f"{SECRET}\nsecond line"), environ={})
    assert SECRET not in str(caught.value)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(key_file=tmp_path / "nope", environ={})


def test_systemd_single_file(tmp_path: Path) -> None:
    (tmp_path / "b2-key-file").write_text(f"id1:{SECRET}\n")
    creds = load_credentials(
        environ={
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "B2_APPLICATION_KEY_ID": "envid",
            "B2_APPLICATION_KEY": "envkey",
        }
    )
    assert (creds.key_id, creds.key) == ("id1", SECRET)


def test_systemd_pair_of_files(tmp_path: Path) -> None:
    (tmp_path / "b2-key-id").write_text("id2\n")
    (tmp_path / "b2-key").write_text(f"{SECRET}\n")
    creds = load_credentials(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert (creds.key_id, creds.key) == ("id2", SECRET)


def test_systemd_half_a_pair_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "b2-key-id").write_text("id2\n")
    with pytest.raises(CredentialsError, match="one is missing"):
        load_credentials(environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})


def test_systemd_directory_without_b2_files_falls_back_to_env(tmp_path: Path) -> None:
    creds = load_credentials(
        environ={
            "CREDENTIALS_DIRECTORY": str(tmp_path),
            "B2_APPLICATION_KEY_ID": "envid",
            "B2_APPLICATION_KEY": SECRET,
        }
    )
    assert creds.source == "environment" and creds.key == SECRET


def test_environment() -> None:
    creds = load_credentials(
        environ={"B2_APPLICATION_KEY_ID": "envid", "B2_APPLICATION_KEY": SECRET}
    )
    assert (creds.key_id, creds.key, creds.source) == ("envid", SECRET, "environment")
    with pytest.raises(CredentialsError, match="B2_APPLICATION_KEY is not set"):
        load_credentials(environ={"B2_APPLICATION_KEY_ID": "envid"})
    with pytest.raises(CredentialsError, match="no B2 application key"):
        load_credentials(environ={})


def test_explicit_key_file_wins_over_everything(tmp_path: Path) -> None:
    path = key_file(tmp_path, "fileid:filekey")
    creds = load_credentials(
        key_file=path, environ={"B2_APPLICATION_KEY_ID": "e", "B2_APPLICATION_KEY": "k"}
    )
    assert creds.key_id == "fileid"


def test_credentials_refuse_empty_or_spaced_values() -> None:
    with pytest.raises(CredentialsError):
        Credentials("", "k")
    with pytest.raises(CredentialsError, match="whitespace"):
        Credentials("id", "a key")


def test_endpoint_resolution() -> None:
    assert resolve_endpoint(environ={}) == DEFAULT_ENDPOINT == "https://api.backblazeb2.com"
    assert (
        resolve_endpoint(environ={"B2FS_ENDPOINT": "http://127.0.0.1:8000/"})
        == "http://127.0.0.1:8000"
    )
    assert resolve_endpoint("http://x:1", environ={"B2FS_ENDPOINT": "http://y:2"}) == "http://x:1"
    with pytest.raises(CredentialsError, match="http"):
        resolve_endpoint("ftp://x", environ={})
