"""load_restorer: configuration inferred from tensors, checkpoint layouts, and every bad input."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch

from vidrestore.errors import CheckpointError
from vidrestore.models import GFPGAN, infer_config, load_restorer

CONFIGS = [
    dict(out_size=32, num_style_feat=32, channel_multiplier=1, num_mlp=3, input_is_latent=True,
         different_w=False, narrow=0.125, sft_half=False),
    dict(out_size=64, num_style_feat=64, channel_multiplier=2, num_mlp=2, input_is_latent=True,
         different_w=True, narrow=0.25, sft_half=True),
    dict(out_size=128, num_style_feat=48, channel_multiplier=1, num_mlp=1, input_is_latent=True,
         different_w=True, narrow=0.125, sft_half=False),
    dict(out_size=64, num_style_feat=32, channel_multiplier=4, num_mlp=4, input_is_latent=True,
         different_w=False, narrow=0.0625, sft_half=True),
]


def _small_model(seed: int = 0, **overrides) -> GFPGAN:
    torch.manual_seed(seed)
    config = dict(CONFIGS[1], **overrides)
    return GFPGAN(**config).eval()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"s{c['out_size']}-cm{c['channel_multiplier']}-n{c['narrow']}")
def test_config_is_inferred_from_tensors(config, tmp_path):
    torch.manual_seed(3)
    model = GFPGAN(**config).eval()
    assert infer_config(model.state_dict()) == config
    path = tmp_path / "model.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    loaded = load_restorer(path)
    assert loaded.config == config
    assert not loaded.training
    x = torch.rand(1, 3, config["out_size"], config["out_size"]) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded(x, randomize_noise=False)[0], model(x, randomize_noise=False)[0])


def test_input_is_latent_is_an_override(tmp_path):
    model = _small_model()
    path = tmp_path / "m.pth"
    torch.save({"params_ema": model.state_dict()}, path)
    assert load_restorer(path).input_is_latent is True
    assert load_restorer(path, input_is_latent=False).input_is_latent is False


@pytest.mark.parametrize("layout", ["params_ema", "params", "bare", "module_prefix", "legacy_format"])
def test_checkpoint_layouts(layout, tmp_path):
    model = _small_model(seed=4)
    state = model.state_dict()
    path = tmp_path / "m.pth"
    if layout == "params_ema":
        decoy = _small_model(seed=5).state_dict()  # params_ema must win over params
        torch.save({"params": decoy, "params_ema": state, "iter": 10}, path)
    elif layout == "params":
        torch.save({"params": state}, path)
    elif layout == "bare":
        torch.save(state, path)
    elif layout == "module_prefix":
        torch.save({"params_ema": {f"module.{k}": v for k, v in state.items()}}, path)
    else:  # what the official conversion script writes
        torch.save({"params_ema": state}, path, _use_new_zipfile_serialization=False)
    loaded = load_restorer(path)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_restorer(tmp_path / "nope.pth")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_restorer(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "m.pth"
    torch.save({"params_ema": _small_model().state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_restorer(path)
    assert str(path) in str(info.value)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("this is a text file, not a model\n" * 20)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint") as info:
        load_restorer(path)
    assert str(path) in str(info.value)


class _Exploit:
    """A pickle payload that would create a file when unpickled."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"params_ema": _Exploit(str(marker))}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_restorer(path)
    assert not marker.exists()


def test_plain_pickle_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Exploit(str(marker))))
    with pytest.raises(CheckpointError):
        load_restorer(path)
    assert not marker.exists()


def test_state_dict_of_another_architecture(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3))
    path = tmp_path / "other.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match="not a GFP-GAN checkpoint"):
        load_restorer(path)


def test_original_v1_naming_is_named(tmp_path):
    state = {k.replace("conv_body_first.weight", "conv_body_first.0.weight"): v
             for k, v in _small_model().state_dict().items()}
    path = tmp_path / "v1.pth"
    torch.save({"params_ema": state}, path)
    with pytest.raises(CheckpointError, match="original/bilinear"):
        load_restorer(path)


def test_wrong_shape_is_reported_with_the_key(tmp_path):
    state = _small_model().state_dict()
    state["toRGB.0.weight"] = torch.zeros(3, 7, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"toRGB\.0\.weight has shape"):
        load_restorer(path)


def test_missing_key_is_reported(tmp_path):
    state = _small_model().state_dict()
    del state["stylegan_decoder.noises.noise3"]
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing stylegan_decoder.noises.noise3"):
        load_restorer(path)


def test_non_tensor_entries_are_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"params_ema": {"conv_body_first.weight": [1, 2, 3]}}, path)
    with pytest.raises(CheckpointError):
        load_restorer(path)


def test_bad_checkpoint_on_the_command_line_is_one_line_without_traceback(tmp_path):
    """A broken checkpoint given to a command prints one error line naming it, exit 2, no traceback."""
    path = tmp_path / "broken.pth"
    path.write_bytes(os.urandom(4096))
    result = subprocess.run(
        [sys.executable, "-m", "vidrestore.cli", "bench", "model", "--checkpoint", str(path), "--device", "cpu"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.pth" in lines[0] and lines[0].startswith("vidrestore: error:")
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bench_model_runs_a_checkpoint_and_prints_a_table(tmp_path):
    path = tmp_path / "small.pth"
    torch.save({"params_ema": GFPGAN(out_size=32, num_style_feat=16, channel_multiplier=1, num_mlp=1,
                                     narrow=0.0625).state_dict()}, path)
    out = tmp_path / "table.md"
    result = subprocess.run(
        [sys.executable, "-m", "vidrestore.cli", "-q", "bench", "model", "--checkpoint", str(path), "--device", "cpu",
         "--batch-sizes", "1,2", "--iters", "1", "--output", str(out)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| grouped") or line.startswith("| batched")]
    assert [row.split("|")[1].strip() for row in rows] == ["grouped", "batched", "batched"]
    assert "bf16 autocast vs fp32" in result.stdout
