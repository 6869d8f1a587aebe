#!/usr/bin/env bash
# TEST STAND-IN release builder for mattermost-push-proxy. Builds the stand-in
# (tests/standin/pushproxy) into an archive with the real release's name and layout, as the
# real Makefile's package-software target lays it out:
#   OUTDIR/mattermost-push-proxy-linux-amd64.tar.gz  (+ .sha256, sha256sum format)
#     mattermost-push-proxy-linux-amd64/bin/mattermost-push-proxy
#     mattermost-push-proxy-linux-amd64/config/mattermost-push-proxy.sample.json, config/build.txt
#     mattermost-push-proxy-linux-amd64/logs/, README.md, NOTICE.txt
# (the real one carries LICENSE.txt too; the stand-in has no upstream license to ship). The
# real asset name has no version in it: the version is in the download path
# (.../download/vVERSION/...), so OUTDIR should be a per-version directory.
# Static (CGO_ENABLED=0), -trimpath, no build id, sorted tar entries with fixed mtime/owner
# and gzip -n: the same sources and VERSION give the same bytes. Skipped when the inputs are
# unchanged; runs under an flock on OUTDIR.
#
# Usage: tests/standin/build-pushproxy.sh VERSION OUTDIR     (VERSION like 6.5.0)
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 VERSION OUTDIR" >&2
    exit 2
fi
VERSION=${1#v}
case "$VERSION" in *[!0-9A-Za-z.+-]*|"") echo "build-pushproxy.sh: bad VERSION '$1'" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2"
OUTDIR=$(cd "$2" && pwd)
TOP=mattermost-push-proxy-linux-amd64
NAME=$TOP.tar.gz
ARCHIVE=$OUTDIR/$NAME
STAMP=$OUTDIR/.$NAME.inputs
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOOS=linux GOARCH=amd64
command -v go >/dev/null || { echo "build-pushproxy.sh: go is not installed" >&2; exit 1; }

exec 9>"$OUTDIR/.lock"
flock 9

inputs() {
    echo "version=$VERSION"
    go version
    (cd "$HERE" && find build-pushproxy.sh pushproxy -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
WANT=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$ARCHIVE" ] && [ -f "$ARCHIVE.sha256" ]; then
    echo "build-pushproxy.sh: $ARCHIVE is up to date"
    exit 0
fi

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
D=$WORK/$TOP
mkdir -p "$D/bin" "$D/config" "$D/logs"
LDFLAGS="-buildid= -s -w -X main.gitVersion=v$VERSION -X main.buildTagCurrent=v$VERSION -X main.buildTagLatest=v$VERSION"
LDFLAGS="$LDFLAGS -X main.buildHash=standin-$(echo "$WANT" | cut -c1-7) -X main.buildDate=n/a"
(cd "$HERE/pushproxy" && go build -trimpath -buildvcs=false -ldflags="$LDFLAGS" -o "$D/bin/mattermost-push-proxy" .)
cp "$HERE/pushproxy/config/mattermost-push-proxy.sample.json" "$D/config/"
echo "v$VERSION" > "$D/config/build.txt"
cp "$HERE/pushproxy/README.md" "$HERE/pushproxy/NOTICE.txt" "$D/"
chmod -R u=rwX,go=rX "$D"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$WORK" -cf - "$TOP" | gzip -n -9 > "$WORK/$NAME"
(cd "$WORK" && sha256sum "$NAME" > "$NAME.sha256")
mv -f "$WORK/$NAME" "$ARCHIVE"
mv -f "$WORK/$NAME.sha256" "$ARCHIVE.sha256"
echo "$WANT" > "$STAMP"
echo "build-pushproxy.sh: built $ARCHIVE ($(cut -d' ' -f1 "$ARCHIVE.sha256")) in $(( $(date +%s) - START ))s"
