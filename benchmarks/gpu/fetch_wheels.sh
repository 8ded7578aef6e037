#!/usr/bin/env bash
# Download, once, what the GPU run needs and the bare device lacks, into the git-ignored .whl/ (carried with
# the working tree): the wheels below for CPython 3.12 on manylinux x86-64, one version of each, fallbacks
# for device packages a carried wheel needs at a minimum version (.whl/fallback/), and the RetinaFace
# detector weights (.whl/weights/). Checks that every requirement is carried or on the device
# (benchmarks/gpu/device-packages.txt) and prints the total size: the tree and .whl together must stay
# under 64 MiB. Run from anywhere:  bash benchmarks/gpu/fetch_wheels.sh
#
# Left out on purpose: imageio-ffmpeg (a 68 MB ffmpeg binary): the benchmarks on the device use PyAV's
# FFmpeg only (`bench video`, which runs the ffmpeg binary, is not part of the run).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python3}
DEST=.whl
DETECTOR=${DETECTOR:-../shared/weights/detection_mobilenet0.25_Final.pth}
WHEELS=(
  av==18.1.0                 # video I/O (bundles its FFmpeg, with the cuda hwaccel)
  facexlib==0.3.0            # RetinaFace network
  filterpy==2.0.0            # landmark smoothing
  ffmpeg-python==0.2.0 future==1.0.0
  torchcodec==0.17.0         # JPEG in device degradations (torch >= 2.11; CPU codec build)
  fastapi==0.165.0 starlette==1.10.0 uvicorn==0.54.0 python-multipart==0.0.34
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  opentelemetry-api==1.45.2  # imported by fastapi
)
PIP_TARGET=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp
            --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
            --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p "$DEST/fallback" "$DEST/weights"
for spec in "${WHEELS[@]}"; do
  "$PYTHON" -m pip download -q "${PIP_TARGET[@]}" -d "$DEST" "$spec"
done
floors=$("$PYTHON" benchmarks/gpu/wheels.py check "$DEST" benchmarks/gpu/device-packages.txt "${WHEELS[@]}")

rm -f "$DEST"/fallback/*.whl
printf '%s\n' $floors > "$DEST/fallback/requirements.txt"
for spec in $floors; do  # installed on the device only where its own version is below the floor
  "$PYTHON" -m pip download -q "${PIP_TARGET[@]}" -d "$DEST/fallback" "$spec"
done

if [ -f "$DETECTOR" ]; then
  cp "$DETECTOR" "$DEST/weights/"
else
  echo "fetch_wheels: detector weights not found at $DETECTOR (set DETECTOR=PATH)" >&2
  exit 1
fi

echo "carried in $DEST:"
find "$DEST" -type f -printf '%s\t%P\n' | sort -k2 | awk -F'\t' '{printf "  %8.1f KiB  %s\n", $1 / 1024, $2}'
total=$(du -sb "$DEST" | cut -f1)
tree=$( (git ls-files; git ls-files --others --exclude-standard) | sort -u | while read -r f; do
          if [ -f "$f" ]; then stat -c %s "$f"; fi; done | awk '{s += $1} END {print s + 0}')
awk -v w="$total" -v t="$tree" 'BEGIN {
  printf "total: %.1f MiB carried + %.1f MiB working tree = %.1f MiB (limit 64 MiB)\n", w / 2^20, t / 2^20, (w + t) / 2^20
  exit (w + t > 64 * 2^20) }'
