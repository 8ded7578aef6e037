"""`vidrestore bench stability` end to end on one short talking head: four runs measured, the report written."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_support import cut_clip

from vidrestore.cli import main


@pytest.mark.slow
def test_bench_stability_reports_every_way(media_dir: Path, detector_weights: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    cut_clip(media_dir / "videos" / "retalking_face_1.mp4", media / "retalking_short.mp4", 6)
    report = tmp_path / "stability.md"
    assert main(["bench", "stability", "--media", str(media), "--detector", str(detector_weights), "--frames", "5",
                 "--long-side", "160", "--output", str(report)]) == 0
    text = report.read_text()
    errors = {}
    for way in ("per-frame loop (official behaviour)", "vidrestore causal (live preset)", "vidrestore file mode",
                "per-frame loop, noise fixed"):
        row = f"| retalking_short.mp4 | {way} | 4 |"
        assert row in text
        errors[way] = float(text.split(row)[1].split("|")[0])  # the warping error column
    assert errors["vidrestore file mode"] < errors["per-frame loop (official behaviour)"]
    assert "A trained model's figures may differ" in text and "Targets (means over the clips):" in text
    assert "- file mode (random-weight model):" in text and "below the per-frame loop with its noise fixed" in text
    assert "no trained checkpoint was at hand" in text
