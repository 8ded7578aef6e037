"""Live recordings keep the source's sound: the audio packets are copied into the recording, rebased with
the video, across loops of a file (each one a new connection), into each segment, from a real RTSP feed;
`--no-audio` records video only. Sources are stamped clips with a real AAC track from the shared media."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from live_feed import RTSP_SERVER, make_stamped_clip
from live_support import RtspServer, live_output
from pipeline_support import make_tiny_restorer, pipeline_threads, test_options

from vidrestore import cli
from vidrestore.bench.stamp import read_number
from vidrestore.channel import Channel
from vidrestore.live.record import RecordingSink
from vidrestore.live.runner import LiveOptions, run_live
from vidrestore.live.source import LiveSource, SourceOptions, audio_track
from vidrestore.live.types import LiveAudio

FPS = 25
AUDIO_FROM = "retalking_face_1.mp4"  # a shared video with a real AAC track (44.1 kHz stereo)


@dataclass(frozen=True)
class Audio:
    """An audio stream as the tests compare it: codec parameters and every packet (start time, bytes)."""

    params: tuple
    frame: Fraction  # one audio frame's duration: frame_size / sample_rate
    packets: list[tuple[Fraction, bytes]]


def read_audio(path: Path) -> Audio | None:
    """The first audio stream of a file (None without one)."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        s = c.streams.audio[0]
        cc = s.codec_context
        packets = [(p.pts * p.time_base, bytes(p)) for p in c.demux(s) if p.size]
        return Audio((cc.name, cc.sample_rate, cc.channels, bytes(cc.extradata or b"")),
                     Fraction(cc.frame_size, cc.sample_rate), packets)


def stamps_and_times(path: Path) -> list[tuple[int, Fraction]]:
    """(stamped frame number, exact presentation time) of every frame of a video."""
    with av.open(str(path)) as c:
        return [(read_number(f.to_ndarray(format="rgb24")), f.pts * f.time_base) for f in c.decode(video=0)]


def video_runs(frames: list[tuple[int, Fraction]]) -> list[tuple[Fraction, Fraction]]:
    """(start time, offset) of each run of the source's frames in a recording: a run ends where the
    stamps start over (the file looped); offset = recorded time - the frame's time in the source."""
    runs: list[tuple[Fraction, Fraction]] = []
    for k, (stamp, t) in enumerate(frames):
        offset = t - Fraction(stamp, FPS)
        if k == 0 or stamp <= frames[k - 1][0]:
            runs.append((t, offset))
        else:
            assert offset == runs[-1][1], "frames of one run keep the source's time steps"
    return runs


def check_audio_follows_video(recording: Path, source: Audio) -> list[int]:
    """Assert that the recording's audio is the source's, rebased with its video: every packet is the
    source packet (same bytes) at the source time its video run's offset gives; each run's packets are
    consecutive source packets, the first starting within one audio frame after the run's first frame
    (plus one tick of the audio's time base, to which the recording rounds its start up).
    Returns the source index of every recorded packet."""
    recorded = read_audio(recording)
    assert recorded is not None, f"{recording.name} has no audio stream"
    assert recorded.params == source.params, "the recording's audio has the source's codec parameters"
    runs = video_runs(stamps_and_times(recording))
    tick = Fraction(1, source.params[1])
    source_times = [s for s, _ in source.packets]
    indices: list[int] = []
    run_of_previous = None
    for r, data in recorded.packets:
        run = max(k for k, (start, _) in enumerate(runs) if start <= r)
        start, offset = runs[run]
        index = int(np.argmin([abs(s - (r - offset)) for s in source_times]))
        assert abs(source_times[index] - (r - offset)) <= tick, f"audio at {float(r):.3f} s is not rebased"
        assert data == source.packets[index][1], f"audio at {float(r):.3f} s is not the source's packet"
        if run == run_of_previous:
            assert index == indices[-1] + 1, f"audio missing before {float(r):.3f} s"
        else:
            assert 0 <= r - start < source.frame + tick, f"run {run}'s audio starts {float(r - start):.4f} s late"
        indices.append(index)
        run_of_previous = run
    return indices


def clip_with_audio(path: Path, face: np.ndarray, audio_from: Path, frames: int) -> Path:
    """A stamped clip (make_stamped_clip) with the AAC packets of `audio_from` that start within it, remuxed."""
    video = make_stamped_clip(path.with_name(f"video-{path.name}"), face, frames=frames, fps=FPS)
    end = Fraction(frames, FPS)
    with av.open(str(video)) as v, av.open(str(audio_from)) as a, av.open(str(path), "w") as out:
        streams = [(v, v.streams.video[0]), (a, a.streams.audio[0])]
        copies = [out.add_stream_from_template(stream) for _, stream in streams]  # all before the header
        for (container, stream), copy in zip(streams, copies):
            for packet in container.demux(stream):
                if packet.size and 0 <= packet.pts * packet.time_base < end:
                    packet.stream = copy
                    out.mux(packet)
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, media_dir: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("live-audio")
    face = cv2.cvtColor(cv2.imread(str(sorted((media_dir / "faces").iterdir())[0])), cv2.COLOR_BGR2RGB)
    clip = clip_with_audio(folder / "talk.mp4", face[:120, 100:220], media_dir / "videos" / AUDIO_FROM, frames=40)
    return {"clip": clip, "model": make_tiny_restorer(folder / "tiny.pth")}


def live_args(work: dict[str, Path], detector: Path, source: str | Path, *extra: str) -> list[str]:
    """`vidrestore live` on `source` with the tiny model on the CPU."""
    return ["live", str(source), "--model", str(work["model"]), "--detector", str(detector), "--device", "cpu",
            "--det-size", "320", "--offline", "-q", *extra]


def test_recording_has_the_sources_audio_rebased_with_the_video(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "rec.mp4"
    assert cli.main(live_args(work, detector_weights, work["clip"], "--record", str(out), "--duration", "1")) == 0
    source = read_audio(work["clip"])
    indices = check_audio_follows_video(out, source)
    assert len(indices) >= 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]
    assert not pipeline_threads()


def test_a_looping_file_keeps_its_audio_on_each_pass(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "loop.mp4"
    recording = RecordingSink(out)
    source = LiveSource(str(work["clip"]), SourceOptions(loop=True))
    options = test_options(work["model"], detector_weights, smoothing_lag=0, analysis_chunk=1, max_batch_frames=1)
    run_live(source, [recording], options, LiveOptions(duration=3.5))  # the 1.6 s clip twice and more
    assert source.connection >= 3
    source_audio = read_audio(work["clip"])
    indices = check_audio_follows_video(out, source_audio)
    # each complete pass carries the clip's audio to the end (before the next pass's first frame)
    passes = [k for k in range(1, len(indices)) if indices[k] < indices[k - 1]]
    assert len(passes) >= 2 and all(indices[k - 1] == len(source_audio.packets) - 1 for k in passes)
    assert recording.audio_packets == len(indices)
    assert not pipeline_threads()


def test_frames_dropped_before_a_reconnect_keep_their_audio(work, tmp_path) -> None:
    out = tmp_path / "rec.mp4"
    sink = RecordingSink(out, queue_frames=1000)  # no drops in the recording's own queue
    with av.open(str(work["clip"])) as clip:
        stream = clip.streams.audio[0]
        packets = [p for p in clip.demux(stream) if p.size]
        clip.seek(0)
        frames = [(f.pts, f.time_base, f.to_ndarray(format="rgb24")) for f in clip.decode(video=0)]
        for connection, kept in ((1, range(0, 20)), (2, range(0, len(frames)))):  # 1 lost its last 20 frames
            sink.audio_track(audio_track(stream, connection))  # as the source does: the audio runs ahead
            for p in packets:
                sink.write_audio(LiveAudio(bytes(p), p.pts, p.dts, p.duration, p.time_base, connection))
            for n in kept:
                pts, time_base, image = frames[n]
                sink.write(live_output(image, n, pts, connection, time_base, rate=Fraction(FPS)))
    sink.close()
    # all of the first connection's audio, then the second's from its first frame on: nothing dropped
    indices = check_audio_follows_video(out, read_audio(work["clip"]))
    assert indices == list(range(len(packets))) * 2 and sink.audio_packets == 2 * len(packets)


def test_each_segment_carries_the_audio_of_its_own_span(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "cam.mp4"
    args = live_args(work, detector_weights, work["clip"], "--record", str(out), "--segment-seconds", "0.5")
    assert cli.main(args) == 0  # the whole clip, played to its end
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) >= 3 and names[0] == "cam_00000.mp4"
    source = read_audio(work["clip"])
    indices = [check_audio_follows_video(tmp_path / name, source) for name in names]
    every = [i for part in indices for i in part]
    assert every == list(range(every[0], every[-1] + 1))  # none lost or repeated at the cuts
    assert every[0] <= 1 and every[-1] >= len(source.packets) - 2  # the clip's audio from start to end


def test_no_audio_records_video_only(work, detector_weights, tmp_path) -> None:
    out = tmp_path / "silent.mp4"
    args = live_args(work, detector_weights, work["clip"], "--record", str(out), "--duration", "0.5", "--no-audio")
    assert cli.main(args) == 0
    assert read_audio(out) is None and stamps_and_times(out)


def test_a_container_that_cannot_hold_the_audio_is_a_clear_error(work, detector_weights, tmp_path, capsys) -> None:
    source = tmp_path / "g711.mov"
    with av.open(str(work["clip"])) as inp, av.open(str(source), "w") as out:  # the clip's audio as G.711
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream("pcm_mulaw", rate=8000, layout="mono")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        for packet in inp.demux():
            if packet.stream.type == "video" and packet.size:
                packet.stream = video
                out.mux(packet)
            elif packet.stream.type == "audio":
                for frame in packet.decode():
                    for part in resampler.resample(frame):
                        out.mux(audio.encode(part))
        out.mux(audio.encode(None))
    rec = tmp_path / "rec.mp4"
    assert cli.main(live_args(work, detector_weights, source, "--record", str(rec), "--duration", "1")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pcm_mulaw" in err and "--no-audio" in err  # one line, saying what to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g711.mov"]  # nothing half-written


@pytest.mark.skipif(RTSP_SERVER is None, reason="rtsp-server-perl is not installed (.ci/run installs it)")
def test_an_rtsp_feed_with_audio_is_recorded_with_it(work, detector_weights, tmp_path) -> None:
    with RtspServer() as server:
        publisher = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-re", "-stream_loop", "-1", "-i",
             str(work["clip"]), "-c", "copy", "-f", "rtsp", "-rtsp_transport", "udp", server.publish_url("cam")],
            stdin=subprocess.DEVNULL)
        try:
            out = tmp_path / "feed.mp4"
            args = live_args(work, detector_weights, server.read_url("cam"), "--transport", "udp", "--record",
                             str(out), "--duration", "3")
            assert cli.main(args) == 0
        finally:
            publisher.terminate()
            publisher.wait(10)
    source, recorded = read_audio(work["clip"]), read_audio(out)
    assert recorded is not None and recorded.params == source.params
    known = {data for _, data in source.packets}
    assert len(recorded.packets) >= 10 and all(data in known for _, data in recorded.packets)
    first_frame = stamps_and_times(out)[0][1]
    assert 0 <= recorded.packets[0][0] - first_frame < source.frame + Fraction(1, source.params[1])


def test_audio_is_never_dropped_with_the_frames() -> None:
    queue = Channel(2, "newest")
    assert queue.put("frame 1") and queue.put("audio 1", keep=True) and queue.put("frame 2")
    assert not queue.put("frame 3")  # full: the oldest frame goes, the audio stays where it was
    assert queue.put("audio 2", keep=True) and not queue.put("frame 4")
    assert queue.dropped == 2 and len(queue) == 4
    assert [queue.get(0) for _ in range(4)] == ["audio 1", "frame 3", "audio 2", "frame 4"]
