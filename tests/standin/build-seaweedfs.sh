#!/usr/bin/env bash
# Builds SeaweedFS (Apache-2.0, the object storage the test bed uses in MinIO's slot) from
# the Go module proxy, packaged like SeaweedFS's official release asset:
#   OUTDIR/linux_amd64.tar.gz  (a single top-level `weed` binary; + .sha256, sha256sum format)
# This is the real SeaweedFS, not a stand-in: GitHub releases are unreachable here, so it is
# built from source. `go install` is refused (the module has replace directives), so the
# module directory is copied and built as the main module, with the release workflow's flags
# (CGO_ENABLED=0, -s -w, static, version.COMMIT stamped) plus -trimpath and an empty build id,
# sorted tar entries with fixed mtime/owner and gzip -n: the same inputs give the same bytes.
# About 8 minutes and 2.7 GB of memory cold; skipped when the inputs are unchanged. Runs under
# an flock on OUTDIR, so concurrent callers wait for one build instead of racing.
#
# No -tags 5BytesOffset: that is the separate linux_amd64_large_disk asset (8 TB volumes, an
# on-disk format the default build cannot read). Volumes default to 30 GB and SeaweedFS adds
# volumes as they fill, so the default asset is what a site installs unless it asks for more.
#
# Usage: tests/standin/build-seaweedfs.sh VERSION MODULE_VERSION OUTDIR
#   e.g. 4.53 v0.0.0-20261109003541-7506e5f91cd6 ~/.cache/mmdeploy/build/seaweedfs/4.53
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 VERSION MODULE_VERSION OUTDIR" >&2
    exit 2
fi
VERSION=$1 MODVER=$2
case "$VERSION" in *[!0-9.]*|"") echo "build-seaweedfs.sh: bad VERSION '$VERSION'" >&2; exit 2 ;; esac
case "$MODVER" in v*) ;; *) echo "build-seaweedfs.sh: bad MODULE_VERSION '$MODVER'" >&2; exit 2 ;; esac
case "$MODVER" in *[!0-9A-Za-z.+-]*) echo "build-seaweedfs.sh: bad MODULE_VERSION '$MODVER'" >&2; exit 2 ;; esac
mkdir -p "$3"
OUTDIR=$(cd "$3" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
MODULE=github.com/seaweedfs/seaweedfs
NAME=linux_amd64.tar.gz
ARCHIVE=$OUTDIR/$NAME
STAMP=$OUTDIR/.$NAME.inputs
command -v go >/dev/null || { echo "build-seaweedfs.sh: go is not installed" >&2; exit 1; }

exec 9>"$OUTDIR/.lock"
flock 9

inputs() {
    echo "version=$VERSION module=$MODULE@$MODVER"
    go version
    grep -v '^ *#' "$HERE/build-seaweedfs.sh" | sha256sum  # comments do not cost a rebuild
}
WANT=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$ARCHIVE" ] && [ -f "$ARCHIVE.sha256" ]; then
    echo "build-seaweedfs.sh: $ARCHIVE is up to date"
    exit 0
fi

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
START=$(date +%s)
export CGO_ENABLED=0 GOOS=linux GOARCH=amd64 GOFLAGS=-mod=mod GODEBUG=http2client=0
DIR=$(cd "$WORK" && go mod download -json "$MODULE@$MODVER" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$DIR" ] || { echo "build-seaweedfs.sh: go mod download gave no directory for $MODULE@$MODVER" >&2; exit 1; }
grep -q "MINOR_VERSION *= *int32($((10#${VERSION#*.})))" "$DIR/weed/util/version/constants.go" \
    || { echo "build-seaweedfs.sh: $MODULE@$MODVER is not SeaweedFS $VERSION" >&2; exit 1; }
cp -R "$DIR" "$WORK/src"
chmod -R u+w "$WORK/src"
COMMIT=${MODVER##*-}
mkdir "$WORK/out"
(cd "$WORK/src" && nice -n 10 go build -trimpath -buildvcs=false \
    -ldflags "-s -w -buildid= -extldflags -static -X $MODULE/weed/util/version.COMMIT=$COMMIT" \
    -o "$WORK/out/weed" ./weed)
"$WORK/out/weed" version
chmod 0755 "$WORK/out/weed"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$WORK/out" -cf - weed | gzip -n -6 > "$WORK/$NAME"
(cd "$WORK" && sha256sum "$NAME" > "$NAME.sha256")
mv -f "$WORK/$NAME" "$ARCHIVE"
mv -f "$WORK/$NAME.sha256" "$ARCHIVE.sha256"
echo "$WANT" > "$STAMP"
echo "build-seaweedfs.sh: built $ARCHIVE ($(cut -d' ' -f1 "$ARCHIVE.sha256"), $(stat -c %s "$ARCHIVE") bytes) in $(( $(date +%s) - START ))s"
