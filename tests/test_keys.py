"""Keys: the ed25519 wrapper, the keystore, and ``p2pnode keys`` end to end."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pnode.chain.address import decode_address
from p2pnode.cli import main
from p2pnode.keys import (
    KDF_FAST,
    KDF_MODERATE,
    CorruptKeyFile,
    InsecureKeyFile,
    KeyExists,
    KeyStore,
    KeyStoreError,
    PasswordError,
    WrongPassword,
    kdf_params_from_env,
    password_from,
)
from protocols.crypto import Keypair, generate_keypair, keypair_from_seed, verify

PASSWORD = "correct horse battery staple"
SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
# RFC 8032 test 1: this seed's public key.
SEED_PUBLIC_HEX = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "p2pnode-home"
    monkeypatch.setenv("P2PNODE_HOME", str(home))
    monkeypatch.setenv("P2PNODE_KDF", "fast")
    monkeypatch.delenv("P2PNODE_PASSWORD", raising=False)
    return home


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    def run(*argv: str) -> Result:
        code = main(["keys", *argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run


@pytest.fixture
def prompts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answers for getpass, in order; the test fails if the code prompts more often than answered."""
    answers: list[str] = []
    asked: list[str] = []

    def fake_getpass(prompt: str = "Password: ", stream: object = None) -> str:
        asked.append(prompt)
        if not answers:
            raise AssertionError(f"unexpected prompt {prompt!r}")
        return answers.pop(0)

    monkeypatch.setattr("getpass.getpass", fake_getpass)
    return answers


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.code != 0
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("p2pnode: error: ")
    assert "Traceback" not in result.err
    for fragment in fragments:
        assert fragment in lines[0]


def file_mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the ed25519 wrapper -------------------------------------------------------------------------


def test_keypair_signs_and_verifies() -> None:
    keypair = generate_keypair()
    signature = keypair.sign(b"message")
    assert len(signature) == 64 and len(keypair.public_key) == 32
    assert verify(keypair.public_key, b"message", signature)
    assert not verify(keypair.public_key, b"messagf", signature)
    assert not verify(generate_keypair().public_key, b"message", signature)
    assert not verify(keypair.public_key, b"message", signature[:-1] + bytes([signature[-1] ^ 1]))


def test_keypair_matches_rfc8032_vector() -> None:
    keypair = keypair_from_seed(bytes.fromhex(SEED_HEX))
    assert keypair.public_key.hex() == SEED_PUBLIC_HEX
    assert keypair.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
        "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    assert decode_address(keypair.address) == keypair.public_key
    assert keypair == keypair_from_seed(bytes.fromhex(SEED_HEX))


@pytest.mark.parametrize(
    ("public_key", "message", "signature"),
    [
        (b"", b"m", bytes(64)),
        (bytes(32), b"m", bytes(64)),  # small-order point
        (b"\xff" * 32, b"m", bytes(64)),  # not a curve point
        (bytes(31), b"m", bytes(64)),
        (bytes.fromhex(SEED_PUBLIC_HEX), b"m", bytes(63)),
        (bytes.fromhex(SEED_PUBLIC_HEX), "m", bytes(64)),
        ("d75a98", b"m", bytes(64)),
        (None, None, None),
        (12, b"m", 34),
    ],
)
def test_verify_never_raises(public_key: object, message: object, signature: object) -> None:
    assert verify(public_key, message, signature) is False  # type: ignore[arg-type]


def test_keypair_hides_its_secret_and_is_frozen() -> None:
    keypair = keypair_from_seed(bytes.fromhex(SEED_HEX))
    assert SEED_HEX not in repr(keypair) and keypair.address in repr(keypair)
    with pytest.raises(AttributeError):
        keypair.seed = bytes(32)  # type: ignore[misc]
    with pytest.raises(ValueError):
        Keypair(bytes(31))


# -- creating keys through the CLI ---------------------------------------------------------------


def test_new_coldkey_is_encrypted_private_and_opens_with_its_password(
    home: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    result = cli("new", "--wallet", "alice")
    assert result.code == 0, result.err
    path = home / "wallets" / "alice" / "coldkey"
    document = json.loads(path.read_text())
    assert result.out.split("\n")[0].endswith(document["address"])
    assert "P2PNODE_KDF=fast" in result.err  # the cheap KDF is never silent
    assert set(document) == {"format", "version", "kind", "address", "kdf", "cipher"}
    assert document["kdf"]["name"] == "argon2id" and document["cipher"]["name"] == "xsalsa20-poly1305"
    assert file_mode(path) == 0o600
    for directory in (home, home / "wallets", home / "wallets" / "alice"):
        assert file_mode(directory) == 0o700
    keypair = KeyStore(home).load_coldkey("alice", PASSWORD)
    assert keypair.address == document["address"]
    assert keypair.seed.hex() not in path.read_text()
    with pytest.raises(WrongPassword):
        KeyStore(home).load_coldkey("alice", PASSWORD + "!")


def test_new_hotkey_list_show_and_export_public_agree(
    home: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    assert cli("new", "--wallet", "alice").code == 0
    assert cli("new", "--wallet", "alice", "--hotkey", "miner").code == 0
    # btcli spellings work too; a wallet may hold hotkeys only.
    assert cli("new", "--wallet.name", "bob", "--wallet.hotkey", "validator").code == 0
    store = KeyStore(home)
    coldkey = store.load_coldkey("alice", PASSWORD)
    miner = store.load_hotkey("alice", "miner")
    validator = store.load_hotkey("bob", "validator")
    assert file_mode(home / "wallets" / "alice" / "hotkeys" / "miner") == 0o600

    listing = cli("list", "--json").json()
    assert [wallet["name"] for wallet in listing["wallets"]] == ["alice", "bob"]
    alice, bob = listing["wallets"]
    assert alice["coldkey"]["address"] == coldkey.address
    assert [(h["hotkey"], h["address"]) for h in alice["hotkeys"]] == [("miner", miner.address)]
    assert bob["coldkey"] is None and bob["hotkeys"][0]["address"] == validator.address
    text = cli("list").out
    assert coldkey.address in text and miner.address in text and validator.address in text

    shown = cli("show", "--wallet", "alice", "--json").json()
    assert shown["coldkey"]["public_key"] == coldkey.public_key.hex()
    assert shown["coldkey"]["kdf"] == {"name": "argon2id", "opslimit": 1, "memlimit": 8192}
    assert cli("show", "--wallet", "alice", "--hotkey", "miner", "--json").json()["address"] == miner.address
    assert coldkey.address in cli("show", "--wallet", "alice").out

    assert cli("export-public", "--wallet", "alice").out == coldkey.address + "\n"
    assert cli("export-public", "--wallet", "alice", "--hotkey", "miner").out == miner.address + "\n"
    assert cli("export-public", "--wallet", "alice", "--hex").out == coldkey.public_key.hex() + "\n"
    assert cli("export-public", "--wallet", "bob", "--hotkey", "validator", "--json").json() == {
        "wallet": "bob",
        "kind": "hotkey",
        "hotkey": "validator",
        "address": validator.address,
        "public_key": validator.public_key.hex(),
    }


def test_default_wallet_and_keys_dir_flag(
    home: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    elsewhere = tmp_path / "elsewhere"
    assert cli("new", "--keys-dir", str(elsewhere)).code == 0
    assert (elsewhere / "wallets" / "default" / "coldkey").exists()
    assert not home.exists()  # --keys-dir wins over P2PNODE_HOME
    assert cli("list", "--json").json()["wallets"] == []
    assert "no wallets" in cli("list").out


def test_list_of_empty_store(home: Path, cli) -> None:
    result = cli("list", "--json")
    assert result.code == 0 and result.json() == {"keys_dir": str(home), "wallets": []}


def test_existing_keys_are_never_replaced(home: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    assert cli("new", "--wallet", "w", "--hotkey", "h").code == 0
    assert cli("new", "--wallet", "w").code == 0
    before = {path: path.read_bytes() for path in (home / "wallets" / "w").rglob("*") if path.is_file()}
    assert_one_line_error(cli("new", "--wallet", "w"), "already has a coldkey")
    assert_one_line_error(cli("new", "--wallet", "w", "--hotkey", "h"), "already has a hotkey 'h'")
    assert_one_line_error(
        cli("import", "--wallet", "w", "--hotkey", "h", "--seed-file", "/dev/null"), "already"
    )
    after = {path: path.read_bytes() for path in (home / "wallets" / "w").rglob("*") if path.is_file()}
    assert after == before  # no stray temporary files either
    with pytest.raises(KeyExists):
        KeyStore(home).create_hotkey("w", "h")


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "-flag", "x" * 65, "white space"])
def test_unsafe_names_are_refused(home: Path, cli, name: str) -> None:
    # `--flag=value` so that argparse takes "-flag" as a value.
    assert_one_line_error(cli("new", "--wallet", "w", f"--hotkey={name}"), "invalid hotkey name")
    assert_one_line_error(cli("show", f"--wallet={name}"), "invalid wallet name")
    assert not (home / "escape").exists()


def test_missing_keys_are_named(home: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    assert_one_line_error(cli("show", "--wallet", "nope"), "no wallet 'nope'")
    assert_one_line_error(cli("export-public", "--wallet", "nope"), "has no coldkey")
    assert cli("new", "--wallet", "w", "--hotkey", "h").code == 0
    assert_one_line_error(cli("export-public", "--wallet", "w", "--hotkey", "x"), "has no hotkey 'x'")
    assert_one_line_error(cli("show", "--wallet", "w", "--verify"), "no coldkey")


# -- passwords --------------------------------------------------------------------------------------


def test_password_from_file(home: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # the trailing newline is not part of the password
    assert cli("new", "--wallet", "w", "--password-file", str(password_file)).code == 0
    KeyStore(home).load_coldkey("w", PASSWORD)
    assert cli("show", "--wallet", "w", "--verify", "--password-file", str(password_file)).code == 0
    # The file wins over the environment.
    monkeypatch.setenv("P2PNODE_PASSWORD", "something else")
    assert cli("show", "--wallet", "w", "--verify", "--password-file", str(password_file), "--json").json()[
        "verified"
    ]
    assert_one_line_error(
        cli("show", "--wallet", "w", "--verify", "--password-file", str(tmp_path / "missing")),
        "cannot read password file",
    )


def test_password_from_prompt_asks_twice_for_a_new_password(home: Path, cli, prompts: list[str]) -> None:
    prompts += [PASSWORD, PASSWORD]
    assert cli("new", "--wallet", "w").code == 0
    assert prompts == []
    KeyStore(home).load_coldkey("w", PASSWORD)

    prompts += [PASSWORD]
    result = cli("show", "--wallet", "w", "--verify")
    assert result.code == 0 and "verified" in result.out and prompts == []

    prompts += ["wrong"]
    assert_one_line_error(cli("show", "--wallet", "w", "--verify"), "wrong password")


def test_mismatched_or_empty_new_password_creates_nothing(home: Path, cli, prompts: list[str]) -> None:
    prompts += [PASSWORD, PASSWORD + "x"]
    assert_one_line_error(cli("new", "--wallet", "w"), "the two passwords differ")
    prompts += ["", ""]
    assert_one_line_error(cli("new", "--wallet", "w"), "must not be empty")
    assert not (home / "wallets" / "w" / "coldkey").exists()


def test_prompt_without_input_is_an_error(home: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_terminal(prompt: str = "", stream: object = None) -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    assert_one_line_error(cli("new", "--wallet", "w"), "no password given", "P2PNODE_PASSWORD")


def test_existing_coldkey_is_refused_before_prompting(
    home: Path, cli, prompts: list[str], monkeypatch
) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    assert cli("new", "--wallet", "w").code == 0
    monkeypatch.delenv("P2PNODE_PASSWORD")
    assert_one_line_error(cli("new", "--wallet", "w"), "already has a coldkey")  # `prompts` is empty


def test_password_from_sources(tmp_path: Path, prompts: list[str]) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\r\n")
    environ = {"P2PNODE_PASSWORD": "from-env"}
    assert password_from(password_file=password_file, environ=environ) == "from-file"
    assert password_from(environ=environ) == "from-env"
    assert password_from(environ={"P2PNODE_PASSWORD": ""}) == ""  # set but empty is still set
    prompts += ["typed"]
    assert password_from(environ={}) == "typed"
    prompts += ["a", "b"]
    with pytest.raises(PasswordError, match="differ"):
        password_from(environ={}, confirm=True)


def test_kdf_choice_from_environment() -> None:
    assert kdf_params_from_env({}) == KDF_MODERATE
    assert KDF_MODERATE.memlimit >= 256 * 1024**2 and KDF_MODERATE.opslimit >= 3
    assert kdf_params_from_env({"P2PNODE_KDF": "fast"}) == KDF_FAST
    assert kdf_params_from_env({"P2PNODE_KDF": "moderate"}) == KDF_MODERATE
    with pytest.raises(KeyStoreError, match="not one of"):
        kdf_params_from_env({"P2PNODE_KDF": "turbo"})


def test_unicode_password_is_normalized(tmp_path: Path) -> None:
    store = KeyStore(tmp_path, kdf=KDF_FAST)
    store.create_coldkey("w", "caf\u00e9")  # precomposed
    assert store.load_coldkey("w", "cafe\u0301").address  # decomposed: same password to a person


# -- bad files: one line, non-zero exit, no traceback ---------------------------------------------


@pytest.fixture
def wallet(home: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Wallet 'w' with a coldkey (password PASSWORD, also in the environment) and hotkey 'h'."""
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    assert cli("new", "--wallet", "w").code == 0
    assert cli("new", "--wallet", "w", "--hotkey", "h").code == 0
    return home / "wallets" / "w"


def test_wrong_password(wallet: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", "not it")
    assert_one_line_error(cli("show", "--wallet", "w", "--verify"), "wrong password for coldkey")


@pytest.mark.parametrize("key", ["coldkey", "hotkeys/h"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_key_readable_by_others_is_refused(wallet: Path, cli, key: str, mode: int) -> None:
    path = wallet / key
    path.chmod(mode)
    hotkey_args = ["--hotkey", "h"] if key != "coldkey" else []
    assert_one_line_error(
        cli("export-public", "--wallet", "w", *hotkey_args), f"mode {mode:04o}", "chmod 600"
    )
    assert_one_line_error(cli("show", "--wallet", "w"), f"mode {mode:04o}")
    assert_one_line_error(cli("list"), f"mode {mode:04o}")
    with pytest.raises(InsecureKeyFile):
        if key == "coldkey":
            KeyStore(wallet.parent.parent).load_coldkey("w", PASSWORD)
        else:
            KeyStore(wallet.parent.parent).load_hotkey("w", "h")
    path.chmod(0o400)  # owner-only read is fine
    assert cli("export-public", "--wallet", "w", *hotkey_args).code == 0


@pytest.mark.parametrize("key", ["coldkey", "hotkeys/h"])
@pytest.mark.parametrize("keep", [0, 1, 40, 150, -3])
def test_truncated_key_file(wallet: Path, cli, key: str, keep: int) -> None:
    path = wallet / key
    path.write_bytes(path.read_bytes()[:keep])
    hotkey_args = ["--hotkey", "h"] if key != "coldkey" else []
    assert_one_line_error(cli("show", "--wallet", "w", *hotkey_args, "--verify"), str(path))
    assert_one_line_error(cli("export-public", "--wallet", "w", *hotkey_args), "not valid JSON")


def edit_json(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "format version 2"),
        (lambda d: d.update(version=True), "format version True"),
        (lambda d: d.update(format="other"), "not a p2pnode key file"),
        (lambda d: d.update(kind="hotkey"), "holds a 'hotkey', not a coldkey"),
        (lambda d: d.update(extra=1), "exactly the fields"),
        (lambda d: d.pop("cipher"), "exactly the fields"),
        (lambda d: d.update(address="p2p1qqqq"), "bad address"),
        (lambda d: d["kdf"].update(salt="00"), "'salt' must be 16 bytes"),
        (lambda d: d["kdf"].update(opslimit="3"), "'opslimit' must be an integer"),
        (lambda d: d["kdf"].update(memlimit=2**42), "'memlimit' must be an integer from 8192"),
        (lambda d: d["kdf"].update(name="scrypt"), "unsupported algorithms"),
        (lambda d: d["cipher"].update(nonce=d["cipher"]["nonce"].upper()), "lowercase hex"),
        (
            lambda d: d["cipher"].update(ciphertext=d["cipher"]["ciphertext"][:-2]),
            "'ciphertext' must be 48 bytes",
        ),
        (lambda d: d.update(address=generate_keypair().address), "does not match the key"),
    ],
)
def test_corrupt_coldkey_file(wallet: Path, cli, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    edit_json(wallet / "coldkey", edit)
    assert_one_line_error(cli("show", "--wallet", "w", "--verify"), message)


def test_altered_ciphertext_does_not_decrypt(wallet: Path, cli) -> None:
    def flip_a_bit(document: dict) -> None:  # type: ignore[type-arg]
        ciphertext = bytearray.fromhex(document["cipher"]["ciphertext"])
        ciphertext[5] ^= 1
        document["cipher"]["ciphertext"] = ciphertext.hex()

    edit_json(wallet / "coldkey", flip_a_bit)
    assert_one_line_error(cli("show", "--wallet", "w", "--verify"), "wrong password", "altered")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe not utf-8", "not valid JSON"),
        (b"[]", "not a p2pnode key file"),
        (b'{"format": "p2pnode-key", "format": "p2pnode-key"}', "not valid JSON"),  # duplicate key
        (b"[" * 50_000 + b"]" * 50_000, "larger than"),
        (b"[" * 20_000, "not valid JSON"),
    ],
)
def test_garbage_hotkey_file(wallet: Path, cli, content: bytes, message: str) -> None:
    (wallet / "hotkeys" / "h").write_bytes(content)
    assert_one_line_error(cli("export-public", "--wallet", "w", "--hotkey", "h"), message)


def test_hotkey_whose_seed_was_swapped_is_corrupt(wallet: Path, cli) -> None:
    edit_json(wallet / "hotkeys" / "h", lambda d: d.update(seed=generate_keypair().seed.hex()))
    assert_one_line_error(cli("show", "--wallet", "w", "--hotkey", "h"), "does not match the key")
    with pytest.raises(CorruptKeyFile):
        KeyStore(wallet.parent.parent).load_hotkey("w", "h")


def test_key_path_that_is_a_directory(wallet: Path, cli) -> None:
    (wallet / "hotkeys" / "h").unlink()
    (wallet / "hotkeys" / "h").mkdir()
    assert_one_line_error(cli("export-public", "--wallet", "w", "--hotkey", "h"))


# -- import -----------------------------------------------------------------------------------------


def test_import_seed_from_file_for_coldkey_and_hotkey(home: Path, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.setenv("P2PNODE_PASSWORD", PASSWORD)
    seed_file = tmp_path / "seed"
    seed_file.write_text("0x" + SEED_HEX + "\n")
    expected = keypair_from_seed(bytes.fromhex(SEED_HEX))
    result = cli("import", "--wallet", "w", "--seed-file", str(seed_file), "--json")
    assert result.code == 0 and result.json()["address"] == expected.address
    assert KeyStore(home).load_coldkey("w", PASSWORD) == expected
    assert cli("import", "--wallet", "w", "--hotkey", "h", "--seed-file", str(seed_file)).code == 0
    assert KeyStore(home).load_hotkey("w", "h") == expected
    assert file_mode(home / "wallets" / "w" / "hotkeys" / "h") == 0o600


def test_import_seed_from_stdin_and_prompt(home: Path, cli, prompts: list[str], monkeypatch) -> None:
    expected = keypair_from_seed(bytes.fromhex(SEED_HEX))
    monkeypatch.setattr("sys.stdin", io.StringIO(SEED_HEX + "\n"))
    assert cli("import", "--wallet", "w", "--hotkey", "from-stdin", "--seed-file", "-").code == 0
    prompts += [SEED_HEX, PASSWORD, PASSWORD]  # the seed, then the new password twice
    assert cli("import", "--wallet", "w").code == 0
    assert prompts == []
    store = KeyStore(home)
    assert store.load_hotkey("w", "from-stdin") == expected == store.load_coldkey("w", PASSWORD)


@pytest.mark.parametrize("bad_seed", [SEED_HEX[:-2], SEED_HEX + "00", "zz" + SEED_HEX[2:], ""])
def test_import_bad_seed_is_refused_without_echoing_it(
    home: Path, tmp_path: Path, cli, bad_seed: str
) -> None:
    seed_file = tmp_path / "seed"
    seed_file.write_text(bad_seed)
    result = cli("import", "--wallet", "w", "--hotkey", "h", "--seed-file", str(seed_file))
    assert_one_line_error(result, "64 hex digits")
    if bad_seed:
        assert bad_seed not in result.err
    assert not (home / "wallets" / "w" / "hotkeys" / "h").exists()


def test_import_key_files_from_another_machine(tmp_path: Path, cli, wallet: Path, monkeypatch) -> None:
    other = tmp_path / "other-machine"
    # Copies often lose their mode on the way: the source's mode is not held against it.
    (wallet / "coldkey").chmod(0o644)
    result = cli("import", "--keys-dir", str(other), "--wallet", "copy", "--key-file",
                 str(wallet / "coldkey"), "--json")
    assert result.code == 0, result.err
    assert (other / "wallets" / "copy" / "coldkey").read_bytes() == (wallet / "coldkey").read_bytes()
    assert file_mode(other / "wallets" / "copy" / "coldkey") == 0o600
    (wallet / "coldkey").chmod(0o600)
    original = KeyStore(wallet.parent.parent)
    assert KeyStore(other).load_coldkey("copy", PASSWORD) == original.load_coldkey("w", PASSWORD)

    hotkey_file = wallet / "hotkeys" / "h"
    assert (
        cli("import", "--keys-dir", str(other), "--wallet", "copy", "--hotkey", "h", "--key-file",
            str(hotkey_file)).code
        == 0
    )
    assert KeyStore(other).load_hotkey("copy", "h") == original.load_hotkey("w", "h")


def test_import_key_file_checks_password_and_kind(tmp_path: Path, cli, wallet: Path, monkeypatch) -> None:
    other = tmp_path / "other-machine"
    monkeypatch.setenv("P2PNODE_PASSWORD", "not it")
    assert_one_line_error(
        cli("import", "--keys-dir", str(other), "--wallet", "copy", "--key-file", str(wallet / "coldkey")),
        "wrong password",
    )
    assert_one_line_error(
        cli("import", "--keys-dir", str(other), "--wallet", "copy", "--key-file",
            str(wallet / "hotkeys" / "h")),
        "holds a 'hotkey', not a coldkey",
    )
    assert_one_line_error(
        cli("import", "--keys-dir", str(other), "--wallet", "c", "--hotkey", "h", "--key-file",
            str(tmp_path / "nope")),
        "no such key file",
    )
    assert not (other / "wallets" / "copy" / "coldkey").exists()


# -- the real command line --------------------------------------------------------------------------


def run_p2pnode(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `-c` rather than `-m p2pnode.cli`: see the note on `python -m` in docs/keys.md.
    command = [sys.executable, "-c", "import sys; from p2pnode.cli import main; sys.exit(main())", *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_cli_in_a_subprocess(tmp_path: Path) -> None:
    env = {**os.environ, "P2PNODE_HOME": str(tmp_path), "P2PNODE_KDF": "fast", "P2PNODE_PASSWORD": PASSWORD}
    created = run_p2pnode("keys", "new", "--wallet", "w", "--json", env=env)
    assert created.returncode == 0, created.stderr
    address = json.loads(created.stdout)["address"]
    exported = run_p2pnode("keys", "export-public", "--wallet", "w", env=env)
    assert exported.returncode == 0 and exported.stdout == address + "\n"

    (tmp_path / "wallets" / "w" / "coldkey").chmod(0o644)
    refused = run_p2pnode("keys", "show", "--wallet", "w", env=env)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("p2pnode: error: key file ") and "mode 0644" in refused.stderr


@pytest.mark.slow
def test_production_kdf_round_trip(tmp_path: Path) -> None:
    # The default cost (256 MiB, 3 passes) really is what gets written and read back; slow: ~2 s.
    store = KeyStore(tmp_path, kdf=KDF_MODERATE)
    created = store.create_coldkey("w", PASSWORD)
    assert store.coldkey_info("w").kdf == KDF_MODERATE
    assert store.load_coldkey("w", PASSWORD) == created
