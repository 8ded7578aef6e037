"""The weights manager: manifest, lookup order, download (resume, restart, retries, checksums) and the CLI.

Downloads run against a real HTTP server on 127.0.0.1 that serves random bytes made here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from videogen import make_video
from vidrestore import cli, weights
from vidrestore.errors import WeightsError
from vidrestore.weights import VerifyStatus, WeightSpec

PAYLOAD = os.urandom(300 * 1024 + 17)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
WRONG_SHA256 = "0" * 64
TEST_FILE = "testnet.pth"
REAL_REPO_WEIGHTS_DIR = weights.repo_weights_dir


# --- a local HTTP server -------------------------------------------------------------------------


@dataclasses.dataclass
class ServerState:
    """What the test server serves and how it misbehaves; `ranges` records each request's Range header."""

    mode: str = "good"  # good | corrupt | cut_once | cut_always | no_range | missing | error
    ranges: list = dataclasses.field(default_factory=list)


def _requested_offset(range_header: str | None) -> int:
    """The start of a 'bytes=N-' Range header, 0 when there is none."""
    if not range_header:
        return 0
    return int(range_header.removeprefix("bytes=").split("-")[0])


def _make_handler(state: ServerState) -> type[http.server.BaseHTTPRequestHandler]:
    """A request handler serving PAYLOAD under /testnet.pth the way `state.mode` says."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.ranges.append(range_header)
            if state.mode == "error":
                self.send_error(500)
                return
            if state.mode == "missing" or self.path != f"/{TEST_FILE}":
                self.send_error(404)
                return
            body = PAYLOAD if state.mode != "corrupt" else PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])
            offset = 0 if state.mode == "no_range" else _requested_offset(range_header)
            self.send_response(206 if offset else 200)
            if offset:
                self.send_header("Content-Range", f"bytes {offset}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - offset))
            self.end_headers()
            cut = state.mode == "cut_always" or (state.mode == "cut_once" and len(state.ranges) == 1)
            self.wfile.write(body[offset : len(body) // 2] if cut else body[offset:])
            self.close_connection = True

    return Handler


@pytest.fixture()
def server():
    """A threaded HTTP server on 127.0.0.1 (port 0); yields (base_url, state)."""
    state = ServerState()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


# --- isolation from the real environment ---------------------------------------------------------


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Point HOME, the cache and $VIDRESTORE_WEIGHTS into tmp_path, hide the repository's weights/
    folder, and make retries instant, so no test touches real files or waits."""
    dirs = {name: tmp_path / name for name in ("home", "cache", "env", "dest")}
    monkeypatch.setenv("HOME", str(dirs["home"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(dirs["cache"]))
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", str(dirs["env"]))
    monkeypatch.setenv("VIDRESTORE_OFFLINE", "0")
    monkeypatch.delenv("VIDRESTORE_WEIGHTS_URL_BASE", raising=False)
    monkeypatch.setattr(weights, "repo_weights_dir", lambda: None)
    monkeypatch.setattr(weights, "RETRY_BACKOFF_S", 0.0)
    return dirs


def make_spec(**changes) -> WeightSpec:
    """A spec for the test payload, with some fields changed."""
    fields = dict(name="testnet", filename=TEST_FILE, url="http://127.0.0.1:9/unused", sha256=PAYLOAD_SHA256,
                  size=len(PAYLOAD), kind="restorer", description="test payload")
    return WeightSpec(**{**fields, **changes})


def download_from(base: str, dest: Path, *, retries: int = 3, **spec_changes) -> Path:
    """Download the test payload from the test server into dest, without a progress bar."""
    spec = make_spec(url=f"{base}/{TEST_FILE}", **spec_changes)
    return weights.download(spec, dest, progress=False, retries=retries)


def place(folder: Path, content: bytes = PAYLOAD, name: str = TEST_FILE) -> Path:
    """Write a file into a folder (created if needed) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


@pytest.fixture()
def known_testnet(monkeypatch: pytest.MonkeyPatch):
    """Replace the manifest by a single test entry; returns a setter to change that entry."""

    def use(spec: WeightSpec) -> WeightSpec:
        monkeypatch.setattr(weights, "known", lambda: {spec.name: spec})
        return spec

    return use


def files_in(folder: Path) -> list[str]:
    """The names of the files in a folder (empty when it does not exist)."""
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --- manifest ------------------------------------------------------------------------------------


def test_manifest_lists_the_release_files_with_valid_checks():
    expected_urls = {
        "GFPGANv1.3": "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.3.pth",
        "GFPGANv1.4": "https://github.com/TencentARC/GFPGAN/releases/download/v1.3.0/GFPGANv1.4.pth",
        "retinaface_resnet50":
            "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_Resnet50_Final.pth",
        "retinaface_mobile0.25":
            "https://github.com/xinntao/facexlib/releases/download/v0.1.0/detection_mobilenet0.25_Final.pth",
        "parsenet": "https://github.com/xinntao/facexlib/releases/download/v0.2.2/parsing_parsenet.pth",
        "arcface_resnet18": "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/arcface_resnet18.pth",
        "vgg19": "https://download.pytorch.org/models/vgg19-dcbf9e7d.pth",
        "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        "stylegan2_512_prior": "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/"
        "StyleGAN2_512_Cmul1_FFHQ_B12G4_scratch_800k.pth",
        "ffhq_component_boxes":
            "https://github.com/TencentARC/GFPGAN/releases/download/v0.1.0/FFHQ_eye_mouth_landmarks_512.pth",
        "niqe_pristine": "https://github.com/XPixelGroup/BasicSR/raw/master/basicsr/metrics/niqe_pris_params.npz",
        "RealESRGAN_x2plus": "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.1/RealESRGAN_x2plus.pth",
        "RealESRGAN_x4plus": "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth",
    }
    assert {name: spec.url for name, spec in weights.known().items()} == expected_urls
    for spec in weights.known().values():
        assert spec.url.endswith("/" + spec.filename)
        assert spec.kind in weights.KINDS


def test_shared_mobilenet_file_is_not_claimed_as_the_release_file(detector_weights: Path):
    """The shared test copy is not confirmed identical to facexlib's release: its hash must not be listed."""
    spec = weights.known()["retinaface_mobile0.25"]
    assert spec.sha256 != "38ec7bb3c9cbfe2f40edabc05fab970a6d648747cbc534092be85d5eb9b37ed0"
    assert weights.verify(detector_weights, spec).status is not VerifyStatus.OK


def test_manifest_with_a_malformed_sha256_is_rejected(tmp_path: Path):
    entry = dataclasses.asdict(make_spec(sha256="ABC"))
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"checkpoints": [entry]}))
    with pytest.raises(WeightsError, match="sha256"):
        weights.load_manifest(bad)


def test_manifest_ships_inside_the_package_and_is_read_on_first_use():
    """A wheel has no weights/ folder: the manifest is package data, and importing the module reads nothing."""
    packaged = Path(str(weights.packaged_manifest()))
    assert packaged.parent == Path(weights.__file__).parent
    assert weights.load_manifest(packaged) == weights.known()
    probe = "import vidrestore.weights as w; print(w.known.cache_info().currsize)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip() == "0"


def test_a_name_of_another_kind_is_refused_with_the_names_of_that_kind():
    with pytest.raises(WeightsError) as err:
        weights.find_weights("retinaface_resnet50", kind="restorer", offline=True)
    message = str(err.value)
    assert "unknown restorer checkpoint 'retinaface_resnet50'" in message
    assert "GFPGANv1.4" in message and "parsenet" not in message


@pytest.mark.parametrize("alias", ["GFPGANv1.4", "gfpganv1.4", "GFPGANv1.4.pth", "v1.4", "1.4", " V1.4 "])
def test_gfpgan_aliases_resolve_to_the_same_spec(alias: str):
    assert weights.spec_for(alias) is weights.known()["GFPGANv1.4"]


def test_detector_found_by_file_name():
    assert weights.spec_for("detection_mobilenet0.25_Final.pth").name == "retinaface_mobile0.25"


def test_unknown_name_lists_the_known_names():
    with pytest.raises(WeightsError) as err:
        weights.find_weights("GFPGANv9")
    assert "GFPGANv9" in str(err.value)
    for name in weights.known():
        assert name in str(err.value)


# --- lookup --------------------------------------------------------------------------------------


def test_search_dirs_order(isolated, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    second = tmp_path / "env2"
    repo = tmp_path / "repo_weights"
    monkeypatch.setenv("VIDRESTORE_WEIGHTS", os.pathsep.join([str(isolated["env"]), str(second)]))
    monkeypatch.setattr(weights, "repo_weights_dir", lambda: repo)
    cache = isolated["cache"] / "vidrestore" / "weights"
    assert weights.search_dirs() == [isolated["env"], second, repo, cache]


def test_cache_defaults_to_home_when_xdg_is_unset(isolated, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert weights.user_cache_dir() == isolated["home"] / ".cache" / "vidrestore" / "weights"


def test_repository_weights_folder_is_searched_from_a_checkout():
    assert REAL_REPO_WEIGHTS_DIR() == REPO_ROOT / "weights"


def test_env_folder_beats_the_cache(isolated, known_testnet):
    known_testnet(make_spec())
    for folder in (isolated["env"], weights.user_cache_dir()):
        place(folder)
    assert weights.find_weights("testnet", offline=True) == isolated["env"] / TEST_FILE


def test_existing_path_is_returned_as_is(tmp_path: Path):
    path = tmp_path / "custom.pth"
    path.write_bytes(b"anything")
    assert weights.find_weights(path, offline=True) == path
    assert weights.find_weights(str(path), offline=True) == path


def test_missing_path_is_an_error_not_a_download(tmp_path: Path):
    with pytest.raises(WeightsError, match="does not exist"):
        weights.find_weights(tmp_path / "GFPGANv1.4.pth")


def test_offline_missing_file_names_the_file_and_every_folder(known_testnet, monkeypatch: pytest.MonkeyPatch):
    known_testnet(make_spec())
    monkeypatch.setenv("VIDRESTORE_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        weights.find_weights("testnet")
    message = str(err.value)
    assert TEST_FILE in message
    for folder in weights.search_dirs():
        assert str(folder) in message
    assert "\n" not in message


def test_found_file_with_the_wrong_size_is_an_error(isolated, known_testnet):
    known_testnet(make_spec())
    place(isolated["env"], PAYLOAD[:100])
    with pytest.raises(WeightsError, match="100 bytes"):
        weights.find_weights("testnet", offline=True)


def test_missing_file_is_downloaded_from_the_url_base(isolated, known_testnet, server, monkeypatch):
    base, _ = server
    known_testnet(make_spec())
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base + "/")
    path = weights.find_weights("TESTNET", progress=False)
    assert path == weights.user_cache_dir() / TEST_FILE
    assert path.read_bytes() == PAYLOAD


# --- verify --------------------------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(weights, "CHUNK_BYTES", 4096)  # many chunks
    path = tmp_path / "f"
    path.write_bytes(PAYLOAD)
    assert weights.sha256_file(path) == PAYLOAD_SHA256


@pytest.mark.parametrize(
    ("content", "sha256", "status"),
    [
        (PAYLOAD, PAYLOAD_SHA256, VerifyStatus.OK),
        (PAYLOAD, WRONG_SHA256, VerifyStatus.MISMATCH),
        (PAYLOAD[:-1] + b"x", PAYLOAD_SHA256, VerifyStatus.MISMATCH),
        (PAYLOAD[:-1], PAYLOAD_SHA256, VerifyStatus.MISMATCH),
        (PAYLOAD, None, VerifyStatus.UNVERIFIED),
        (None, PAYLOAD_SHA256, VerifyStatus.MISSING),
    ],
)
def test_verify_status(tmp_path: Path, content, sha256, status):
    path = tmp_path / TEST_FILE
    if content is not None:
        path.write_bytes(content)
    assert weights.verify(path, make_spec(sha256=sha256)).status is status


# --- download ------------------------------------------------------------------------------------


def test_download_good_file(isolated, server):
    base, state = server
    path = download_from(base, isolated["dest"])
    assert path == isolated["dest"] / TEST_FILE
    assert path.read_bytes() == PAYLOAD
    assert files_in(isolated["dest"]) == [TEST_FILE]
    assert state.ranges == [None]


def test_download_checksum_mismatch_leaves_nothing(isolated, server):
    base, state = server
    state.mode = "corrupt"
    with pytest.raises(WeightsError) as err:
        download_from(base, isolated["dest"])
    assert PAYLOAD_SHA256 in str(err.value)
    assert hashlib.sha256(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF])).hexdigest() in str(err.value)
    assert files_in(isolated["dest"]) == []


def test_download_wrong_manifest_sha256_leaves_nothing(isolated, server):
    base, _ = server
    with pytest.raises(WeightsError, match=WRONG_SHA256):
        download_from(base, isolated["dest"], sha256=WRONG_SHA256)
    assert files_in(isolated["dest"]) == []


def test_cut_connection_is_resumed_with_a_range_request(isolated, server):
    base, state = server
    state.mode = "cut_once"
    path = download_from(base, isolated["dest"])
    assert path.read_bytes() == PAYLOAD
    assert state.ranges == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert files_in(isolated["dest"]) == [TEST_FILE]


def test_cut_connection_without_known_size_is_still_detected(isolated, server):
    """Content-Length alone shows the cut when the manifest has no size."""
    base, state = server
    state.mode = "cut_once"
    assert download_from(base, isolated["dest"], size=None, sha256=None).read_bytes() == PAYLOAD
    assert len(state.ranges) == 2


def test_connection_cut_every_time_fails_without_a_final_file(isolated, server):
    base, state = server
    state.mode = "cut_always"
    with pytest.raises(WeightsError, match="after 3 attempts"):
        download_from(base, isolated["dest"], retries=2)
    assert len(state.ranges) == 3
    assert not (isolated["dest"] / TEST_FILE).exists()


def test_server_ignoring_range_restarts_from_scratch(isolated, server):
    base, state = server
    state.mode = "no_range"
    place(isolated["dest"], b"stale bytes from another file", name=f"{TEST_FILE}.part")
    path = download_from(base, isolated["dest"])
    assert path.read_bytes() == PAYLOAD
    assert state.ranges == ["bytes=29-"]
    assert files_in(isolated["dest"]) == [TEST_FILE]


def test_resumed_download_failing_its_checksum_restarts_cleanly(isolated, server):
    base, state = server
    place(isolated["dest"], b"\0" * 1000, name=f"{TEST_FILE}.part")  # wrong start, right server
    path = download_from(base, isolated["dest"])
    assert path.read_bytes() == PAYLOAD
    assert state.ranges == ["bytes=1000-", None]


def test_unverified_download_is_accepted_with_a_warning(isolated, server, caplog):
    base, _ = server
    path = download_from(base, isolated["dest"], sha256=None)
    assert path.read_bytes() == PAYLOAD
    assert "unverified" in caplog.text


def test_http_404_fails_at_once(isolated, server):
    base, state = server
    state.mode = "missing"
    with pytest.raises(WeightsError, match="404"):
        download_from(base, isolated["dest"])
    assert len(state.ranges) == 1
    assert files_in(isolated["dest"]) == []


def test_failed_download_says_what_to_do_instead(isolated, known_testnet, server, monkeypatch):
    """After the retries, the error names the folders searched, $VIDRESTORE_WEIGHTS and --offline."""
    base, state = server
    state.mode = "error"
    known_testnet(make_spec())
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    with pytest.raises(WeightsError) as err:
        weights.find_weights("testnet", progress=False)
    message = str(err.value)
    assert f"cannot download {TEST_FILE}" in message and "after 4 attempts" in message and "500" in message
    assert "--offline" in message and "VIDRESTORE_WEIGHTS " in message
    for folder in weights.search_dirs():
        assert str(folder) in message
    assert "\n" not in message
    assert len(state.ranges) == 4
    assert files_in(weights.user_cache_dir()) == []


def two_known_specs(known_testnet, monkeypatch: pytest.MonkeyPatch) -> list[WeightSpec]:
    """The test entry and a second one whose file the test server does not have (404)."""
    specs = [make_spec(), make_spec(name="othernet", filename="othernet.pth")]
    known_testnet(specs[0])
    monkeypatch.setattr(weights, "known", lambda: {spec.name: spec for spec in specs})
    return specs


def test_every_missing_file_of_a_run_is_named_in_one_error(isolated, known_testnet, server, monkeypatch):
    base, state = server
    state.mode = "missing"
    two_known_specs(known_testnet, monkeypatch)
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    with pytest.raises(WeightsError) as err:
        weights.find_all_weights([("testnet", None), ("othernet", None)], progress=False)
    message = str(err.value)
    assert f"cannot download {TEST_FILE}" in message and "cannot download othernet.pth" in message
    assert message.count("404") == 2 and "the files" in message and "--offline" in message
    assert len(state.ranges) == 2  # both were tried, not just the first


def test_one_file_missing_offline_names_only_that_one(isolated, known_testnet, monkeypatch):
    specs = two_known_specs(known_testnet, monkeypatch)
    place(isolated["env"])
    with pytest.raises(WeightsError) as err:
        weights.find_all_weights([("testnet", None), ("othernet", None)], offline=True)
    assert "othernet.pth (othernet) not found" in str(err.value) and TEST_FILE not in str(err.value)
    assert specs[1].url in str(err.value)


def test_names_are_all_checked_before_anything_is_downloaded(isolated, known_testnet, server, monkeypatch):
    base, state = server
    known_testnet(make_spec())
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    with pytest.raises(WeightsError, match="unknown checkpoint 'nosuchnet'"):
        weights.find_all_weights([("testnet", None), ("nosuchnet", None)], progress=False)
    assert state.ranges == []


def test_restore_run_missing_model_and_detector_reports_both(isolated, server, monkeypatch, capsys, tmp_path):
    """The real manifest: `vidrestore IN OUT` needs GFPGANv1.4 and the detector; the server has neither."""
    base, state = server
    state.mode = "missing"
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    clip, out = tmp_path / "in.mp4", tmp_path / "out" / "restored.mp4"
    make_video(clip, frames=3)
    out.parent.mkdir()
    assert cli.main(["-q", str(clip), str(out), "--model", "GFPGANv1.4", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    for name in ("GFPGANv1.4.pth", "detection_mobilenet0.25_Final.pth", "--offline", "VIDRESTORE_WEIGHTS"):
        assert name in err
    assert str(weights.user_cache_dir()) in err
    assert files_in(out.parent) == []


def test_malformed_url_is_a_clear_error(isolated):
    with pytest.raises(WeightsError, match="invalid URL"):
        weights.download(make_spec(url="not a url"), isolated["dest"], progress=False)
    assert files_in(isolated["dest"]) == []


# --- command line --------------------------------------------------------------------------------


def test_cli_list_shows_where_each_file_is(isolated, known_testnet, capsys):
    known_testnet(make_spec())
    assert cli.main(["weights", "list"]) == 0
    assert "missing" in capsys.readouterr().out
    place(isolated["env"])
    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert str(isolated["env"] / TEST_FILE) in out and "missing" not in out


def test_cli_list_real_manifest(capsys):
    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    for spec in weights.known().values():
        assert spec.name in out and spec.filename in out


@pytest.mark.parametrize(("sha256", "exit_code"), [(PAYLOAD_SHA256, 0), (None, 0), (WRONG_SHA256, 1)])
def test_cli_verify_exit_code(isolated, known_testnet, capsys, sha256, exit_code):
    known_testnet(make_spec(sha256=sha256))
    place(isolated["env"])
    assert cli.main(["weights", "verify"]) == exit_code
    status = {PAYLOAD_SHA256: "ok", None: "unverified", WRONG_SHA256: "mismatch"}[sha256]
    assert status in capsys.readouterr().out


def test_cli_verify_skips_missing_unless_named(known_testnet):
    known_testnet(make_spec())
    assert cli.main(["weights", "verify"]) == 0
    assert cli.main(["weights", "verify", "testnet"]) == 1


def test_cli_download_into_dir(isolated, known_testnet, server, monkeypatch):
    base, _ = server
    known_testnet(make_spec())
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    assert cli.main(["-q", "weights", "download", "--dir", str(isolated["dest"])]) == 0
    assert (isolated["dest"] / TEST_FILE).read_bytes() == PAYLOAD


def test_cli_download_mismatch_exits_2_and_leaves_nothing(known_testnet, server, monkeypatch, capsys):
    base, _ = server
    known_testnet(make_spec(sha256=WRONG_SHA256))
    monkeypatch.setenv("VIDRESTORE_WEIGHTS_URL_BASE", base)
    assert cli.main(["-q", "weights", "download", "testnet"]) == 2
    assert "testnet.pth" in capsys.readouterr().err
    assert files_in(weights.user_cache_dir()) == []


def test_cli_download_offline_refuses_missing_files(known_testnet, capsys):
    known_testnet(make_spec())
    assert cli.main(["--offline", "weights", "download", "testnet"]) == 2
    assert "testnet.pth" in capsys.readouterr().err
    assert files_in(weights.user_cache_dir()) == []
