#!/usr/bin/env bash
# Real media for tests, demos and benchmarks: opencv-doc's sample images and clips (Debian package, no network
# beyond the apt mirror). scikit-image's bundled images come with the venv.
set -euo pipefail
dest=${1:-build/media/opencv-doc}
[ -f "$dest/vtest.avi" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && { apt-get download opencv-doc >/dev/null 2>&1 || { apt-get update -qq && apt-get download opencv-doc; }; } )
dpkg -x "$tmp"/opencv-doc_*.deb "$tmp/x"
mkdir -p "$dest"
cp -r "$tmp/x/usr/share/doc/opencv-doc/examples/data/." "$dest/"
# Debian ships some samples gzipped.
find "$dest" -name '*.gz' -exec gunzip -f {} +
echo "media ready: $dest"
