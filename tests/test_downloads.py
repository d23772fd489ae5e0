"""Downloads against a local stand-in of the hub: whole files, resumed files, cancels, checksums, refusals, starters."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import constants as hf_constants

from sdrest.library.architectures import ROLES
from sdrest.library.downloads import Cancelled, DownloadError, download_hub, download_url, list_remote, remote_file
from sdrest.library.headers import MODEL_SUFFIXES
from sdrest.library.starters import STARTERS, starter
from tests.hub_standin import HubStandin

REPO = "acme/tiny-model"
WEIGHTS = "unet/tiny.safetensors"
DATA = os.urandom(300_000)
FILES = {
    WEIGHTS: DATA,
    "tiny-q8_0.gguf": os.urandom(5_000),
    "README.md": b"# tiny\n",
    "model_index.json": b"{}",
    "tokenizer/tokenizer.bin": b"not weights",
    "text_encoder/model.safetensors": os.urandom(2_000),
}


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token from this machine's environment or login: a test gives one where it wants one."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStandin]:
    with HubStandin({REPO: dict(FILES)}) as standin:
        monkeypatch.setenv("HF_ENDPOINT", standin.endpoint)
        yield standin


@pytest.fixture
def partial_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "downloads"


def _leftovers(partial_dir: Path) -> list[str]:
    return sorted(p.name for p in partial_dir.iterdir()) if partial_dir.exists() else []


def test_a_download_arrives_whole_and_leaves_nothing_behind(hub: HubStandin, tmp_path: Path, partial_dir: Path) -> None:
    dest = tmp_path / "models" / "diffusion_models" / "tiny.safetensors"
    seen: list[tuple[int, int | None]] = []
    assert download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir, progress=lambda *a: seen.append(a)) == dest
    assert dest.read_bytes() == DATA
    assert _leftovers(partial_dir) == []
    assert [p.name for p in dest.parent.iterdir()] == ["tiny.safetensors"]
    assert seen[-1] == (len(DATA), len(DATA))
    assert [r.range for r in hub.seen("cdn")] == [None]


def test_a_dropped_connection_is_resumed_with_a_range_request(
    hub: HubStandin, tmp_path: Path, partial_dir: Path
) -> None:
    hub.drop_after, hub.drops = 100_000, 1
    dest = tmp_path / "tiny.safetensors"
    download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    assert dest.read_bytes() == DATA
    assert [r.range for r in hub.seen("cdn")] == [None, "bytes=100000-"]


def test_a_broken_download_keeps_its_partial_file_and_the_next_attempt_resumes_it(
    hub: HubStandin, tmp_path: Path, partial_dir: Path
) -> None:
    hub.drop_after, hub.drops = 40_000, 100  # every response is cut: one call cannot finish
    dest = tmp_path / "tiny.safetensors"
    with pytest.raises(DownloadError, match="run the download again to resume it"):
        download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    assert not dest.exists()
    (partial,) = partial_dir.glob("*.part")
    kept = partial.stat().st_size
    assert 0 < kept < len(DATA)

    hub.drops = 0  # the network is back (or the server restarted)
    hub.requests.clear()
    download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    assert dest.read_bytes() == DATA
    assert [r.range for r in hub.seen("cdn")] == [f"bytes={kept}-"]
    assert _leftovers(partial_dir) == []


def test_a_partial_file_is_never_resumed_onto_a_changed_file(
    hub: HubStandin, tmp_path: Path, partial_dir: Path
) -> None:
    hub.drop_after, hub.drops = 40_000, 100
    dest = tmp_path / "tiny.safetensors"
    with pytest.raises(DownloadError):
        download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    changed = os.urandom(len(DATA))
    hub.put(REPO, WEIGHTS, changed)  # a new commit on main: same name, same size, other bytes
    hub.drops = 0
    hub.requests.clear()
    download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    assert dest.read_bytes() == changed
    assert [r.range for r in hub.seen("cdn")] == [None]


def test_progress_is_reported_at_most_ten_times_a_second(hub: HubStandin, tmp_path: Path, partial_dir: Path) -> None:
    hub.slow = 0.01  # ~0.2 s for the 19 chunks of the file
    seen: list[tuple[int, int | None]] = []
    started = time.monotonic()
    download_hub(REPO, WEIGHTS, tmp_path / "x", partial_dir=partial_dir, progress=lambda *a: seen.append(a))
    elapsed = time.monotonic() - started
    assert 2 <= len(seen) <= 2 + elapsed * 10
    assert seen[-1] == (len(DATA), len(DATA))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_a_full_disk_is_said_before_the_transfer(
    hub: HubStandin, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, partial_dir: Path
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - 1000, free=1000))
    with pytest.raises(DownloadError, match=f"not enough free space in .*: {len(DATA)} bytes needed, 1000 free"):
        download_hub(REPO, WEIGHTS, tmp_path / "x", partial_dir=partial_dir)
    assert hub.seen("cdn") == []


def test_a_cancelled_download_leaves_no_file(hub: HubStandin, tmp_path: Path, partial_dir: Path) -> None:
    hub.slow = 0.01
    cancel = threading.Event()
    dest = tmp_path / "tiny.safetensors"

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            cancel.set()

    with pytest.raises(Cancelled):
        download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir, progress=progress, cancel=cancel)
    assert not dest.exists()
    assert _leftovers(partial_dir) == []


def test_a_checksum_mismatch_leaves_no_file(tmp_path: Path, partial_dir: Path) -> None:
    wrong = "0" * 64
    with HubStandin({REPO: FILES}, wrong_sha256={(REPO, WEIGHTS): wrong}) as hub:
        dest = tmp_path / "tiny.safetensors"
        with pytest.raises(
            DownloadError, match=f"checksum mismatch: expected {wrong}, got {hashlib.sha256(DATA).hexdigest()}"
        ):
            download_hub(REPO, WEIGHTS, dest, endpoint=hub.endpoint, partial_dir=partial_dir)
    assert not dest.exists()
    assert _leftovers(partial_dir) == []


def test_missing_files_repos_and_revisions_are_named(hub: HubStandin, tmp_path: Path, partial_dir: Path) -> None:
    dest = tmp_path / "x.gguf"
    with pytest.raises(DownloadError, match=f"^no file nope.gguf in repo {REPO} \\(revision main\\)$"):
        download_hub(REPO, "nope.gguf", dest, partial_dir=partial_dir)
    with pytest.raises(DownloadError, match="^no revision v9 in repo"):
        remote_file(REPO, WEIGHTS, revision="v9")
    with pytest.raises(DownloadError, match="^no repo acme/other on"):
        list_remote("acme/other")
    assert not dest.exists()


def test_a_gated_repo_asks_for_a_token_and_the_token_never_leaves_the_hub(tmp_path: Path, partial_dir: Path) -> None:
    with HubStandin({REPO: FILES}, require_token="hf_secret") as hub:
        for call in (
            lambda: download_hub(REPO, WEIGHTS, tmp_path / "a", endpoint=hub.endpoint, partial_dir=partial_dir),
            lambda: list_remote(REPO, endpoint=hub.endpoint),
        ):
            with pytest.raises(DownloadError, match="needs a token: set HF_TOKEN .* accept the model's licence"):
                call()
        dest = download_hub(
            REPO, WEIGHTS, tmp_path / "b", token="hf_secret", endpoint=hub.endpoint, partial_dir=partial_dir
        )
        assert dest.read_bytes() == DATA
        assert {r.authorization for r in hub.seen("hub", "HEAD")} == {None, "Bearer hf_secret"}
        assert [r.authorization for r in hub.seen("cdn")] == [None]  # the signed CDN URL gets no token


def test_no_network_says_so_plainly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, partial_dir: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HF_ENDPOINT", closed)
    message = f"^cannot reach {closed} \\(.*\\): this machine has no network connection to the hub, or it is down"
    with pytest.raises(DownloadError, match=message):
        download_hub(REPO, WEIGHTS, tmp_path / "x", partial_dir=partial_dir)
    with pytest.raises(DownloadError, match=message):
        list_remote(REPO)


def test_list_remote_keeps_loadable_files_with_sizes_and_hashes(hub: HubStandin) -> None:
    listed = {f.filename: (f.size, f.sha256) for f in list_remote(REPO)}
    assert listed == {
        name: (len(data), hashlib.sha256(data).hexdigest())
        for name, data in FILES.items()
        if name in (WEIGHTS, "tiny-q8_0.gguf", "text_encoder/model.safetensors")
    }
    one = remote_file(REPO, WEIGHTS)
    assert (one.size, one.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    small = remote_file(REPO, "README.md")
    assert (small.size, small.sha256) == (len(FILES["README.md"]), None)  # a git file: its ETag is a sha1


def test_download_url_checks_the_given_hash(hub: HubStandin, tmp_path: Path, partial_dir: Path) -> None:
    url = f"{hub.cdn}/cdn/{hashlib.sha256(DATA).hexdigest()}"
    hub.drop_after, hub.drops = 50_000, 1
    dest = download_url(
        url, tmp_path / "a.safetensors", partial_dir=partial_dir, sha256=hashlib.sha256(DATA).hexdigest()
    )
    assert dest.read_bytes() == DATA
    assert [r.range for r in hub.seen("cdn")] == [None, "bytes=50000-"]
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_url(url, tmp_path / "b.safetensors", partial_dir=partial_dir, sha256="1" * 64)
    assert not (tmp_path / "b.safetensors").exists()
    assert _leftovers(partial_dir) == []


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://example.com/model.safetensors", "http://example.com/model.safetensors",
     "http://192.168.1.2/model.safetensors", "model.safetensors"],
)  # fmt: skip
def test_download_url_refuses_other_schemes_and_plain_http_off_this_machine(
    url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, partial_dir: Path
) -> None:
    def no_request(*args: object, **kwargs: object) -> None:
        raise AssertionError("a request was made")

    monkeypatch.setattr(urllib.request.OpenerDirector, "open", no_request)
    with pytest.raises(DownloadError, match=r"only https:// URLs can be downloaded"):
        download_url(url, tmp_path / "x.safetensors", partial_dir=partial_dir)
    assert _leftovers(partial_dir) == []


@pytest.mark.parametrize("target", ["ftp://example.com/model.safetensors", "http://example.com/model.safetensors"])
def test_download_url_follows_no_redirect_it_would_not_fetch(target: str, tmp_path: Path, partial_dir: Path) -> None:
    with HubStandin({}, redirects={"/model.safetensors": target}) as hub:
        with pytest.raises(DownloadError, match="only https:// URLs can be downloaded"):
            download_url(f"{hub.endpoint}/model.safetensors", tmp_path / "x.safetensors", partial_dir=partial_dir)
    assert not (tmp_path / "x.safetensors").exists()


def test_an_existing_destination_is_refused_before_any_request(
    hub: HubStandin, tmp_path: Path, partial_dir: Path
) -> None:
    dest = tmp_path / "tiny.safetensors"
    dest.write_bytes(b"mine")
    with pytest.raises(DownloadError, match="already exists"):
        download_hub(REPO, WEIGHTS, dest, partial_dir=partial_dir)
    assert dest.read_bytes() == b"mine"
    assert hub.requests == []


def test_every_starter_file_has_a_role_and_a_loadable_suffix() -> None:
    assert {"sd-turbo", "sdxl", "flux-schnell", "wan2.1-t2v-1.3b"} <= set(STARTERS)
    for name, model in STARTERS.items():
        assert model.name == name and model.files
        for file in model.files:
            assert file.role in ROLES and file.role != "unknown", file
            assert file.filename.lower().endswith(MODEL_SUFFIXES), file
            assert "/" in file.repo_id and file.revision and file.licence and file.size > 0, file
    roles = {model.name: sorted(f.role for f in model.files) for model in STARTERS.values()}
    assert roles["flux-schnell"] == ["diffusion_model", "text_encoder", "text_encoder", "vae"]
    assert roles["wan2.1-t2v-1.3b"] == ["diffusion_model", "text_encoder", "vae"]


def test_an_unknown_starter_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="sd-turbo, sdxl"):
        starter("nope")


@pytest.mark.parametrize("name", sorted(STARTERS))
def test_a_starter_downloads_end_to_end(name: str, tmp_path: Path, partial_dir: Path) -> None:
    model = starter(name)
    repos: dict[str, dict[str, bytes]] = {}
    for file in model.files:
        repos.setdefault(file.repo_id, {})[file.filename] = f"{file.repo_id}/{file.filename}".encode() * 50
    with HubStandin(repos) as hub:
        for file in model.files:
            dest = tmp_path / "models" / file.role / file.basename
            got = download_hub(
                file.repo_id,
                file.filename,
                dest,
                revision=file.revision,
                endpoint=hub.endpoint,
                partial_dir=partial_dir,
            )
            assert got.read_bytes() == repos[file.repo_id][file.filename]
    assert _leftovers(partial_dir) == []
