#!/usr/bin/env bash
# TEST STAND-IN release builder. Builds the stand-in Mattermost server and mmctl
# (tests/standin/mattermost) into an archive with the real release's layout,
#   OUTDIR/mattermost-VERSION-linux-amd64.tar.gz  (+ .sha256, sha256sum format)
# and Mattermost's own config validator:
#   OUTDIR/configcheck      model of github.com/mattermost/mattermost/server/public v0.1.21 (v11: postgres only)
#   OUTDIR/configcheck-v10  model v0.1.10 (Mattermost 10.x: still accepts mysql)
#   OUTDIR/mklicense        writes TEST licenses signed with the project's test key
# The test license key (RSA-2048, made once with openssl, kept out of git) is
# $MMSTANDIN_LICENSE_KEY or tests/standin/.license-key.pem; its public half is
# compiled into the server, which accepts only licenses signed with it.
# --broken builds a release whose server fails its health check (ping answers
# 500, then the process exits 1) with the same archive layout, for
# upgrade-rollback tests; use another OUTDIR for it.
# The real release cannot be downloaded on the test machines and the server is
# AGPL, so it is not built here. Static (CGO_ENABLED=0), -trimpath, no build id or VCS stamp,
# sorted tar entries with fixed mtime/owner and gzip -n: the same sources and
# VERSION give the same archive bytes. Skips all work when the inputs are unchanged.
#
# Usage: tests/standin/build.sh VERSION OUTDIR [--broken]
set -euo pipefail

BROKEN=false
if [ $# -eq 3 ] && [ "$3" = "--broken" ]; then
    BROKEN=true
elif [ $# -ne 2 ]; then
    echo "usage: $0 VERSION OUTDIR [--broken]" >&2
    exit 2
fi
VERSION=$1
case "$VERSION" in
    *[!0-9A-Za-z.+-]*|"") echo "build.sh: bad VERSION '$VERSION'" >&2; exit 2 ;;
esac
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$2"
OUTDIR=$(cd "$2" && pwd)
NAME=mattermost-$VERSION-linux-amd64.tar.gz
ARCHIVE=$OUTDIR/$NAME
STAMP=$OUTDIR/.$NAME.inputs

export GOFLAGS=-mod=mod CGO_ENABLED=0 GOOS=linux GOARCH=amd64
command -v go >/dev/null || { echo "build.sh: go is not installed" >&2; exit 1; }

KEY=${MMSTANDIN_LICENSE_KEY:-$HERE/.license-key.pem}
# One build at a time (the suite's two workers start together; the key is shared by every
# OUTDIR): the others wait, then find it built, as the other build-*.sh do.
exec 9>"$KEY.lock"
flock 9
if [ ! -s "$KEY" ]; then
    command -v openssl >/dev/null || { echo "build.sh: openssl is needed to make the test license key" >&2; exit 1; }
    (umask 077 && openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$KEY.tmp" 2>/dev/null && mv "$KEY.tmp" "$KEY")
fi
PUBKEY=$(openssl pkey -in "$KEY" -pubout -outform DER 2>/dev/null | base64 -w0)
[ -n "$PUBKEY" ] || { echo "build.sh: cannot read the test license key $KEY" >&2; exit 1; }

# Everything that determines the outputs.
inputs() {
    echo "version=$VERSION broken=$BROKEN license_key=$PUBKEY"
    go version
    (cd "$HERE" && find build.sh mattermost configcheck release -type f \
        \( -name '*.go' -o -name 'go.*mod' -o -name 'go.*sum' -o -name 'go.mod' -o -name 'go.sum' -o -path 'release/*' -o -name build.sh \) \
        -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
WANT=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$ARCHIVE" ] && [ -f "$ARCHIVE.sha256" ] \
        && [ -x "$OUTDIR/configcheck" ] && [ -x "$OUTDIR/configcheck-v10" ] && [ -x "$OUTDIR/mklicense" ]; then
    echo "build.sh: $NAME is up to date"
    exit 0
fi

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)

LDPKG=mmdeploy.test/standin/mattermost/internal/server
LDFLAGS="-buildid= -s -w -X $LDPKG.Version=$VERSION -X $LDPKG.BuildNumber=$VERSION -X $LDPKG.BuildHash=standin-$(echo "$WANT" | cut -c1-12) -X $LDPKG.BuildDate=n/a -X $LDPKG.Broken=$BROKEN -X mmdeploy.test/standin/mattermost/internal/license.PublicKey=$PUBKEY"
(cd "$HERE/configcheck" && go build -trimpath -buildvcs=false -ldflags=-buildid= -o "$WORK/configcheck" . \
    && go build -trimpath -buildvcs=false -ldflags=-buildid= -modfile=go.v10.mod -o "$WORK/configcheck-v10" .)
D=$WORK/mattermost
mkdir -p "$D/bin" "$D/config" "$D/logs" "$D/prepackaged_plugins"
(cd "$HERE/mattermost" && go build -trimpath -buildvcs=false -ldflags="$LDFLAGS" -o "$D/bin/" ./cmd/mattermost ./cmd/mmctl \
    && go build -trimpath -buildvcs=false -ldflags="-buildid= -s -w" -o "$WORK/mklicense" ./cmd/mklicense)
cp -R "$HERE/release/i18n" "$HERE/release/templates" "$HERE/release/fonts" "$HERE/release/client" "$D/"
# Like the real release (go generate ./config): config.json is the model's
# defaults, from the model of the same major version (v10 for 10.x).
CHECK=configcheck
[ "${VERSION%%.*}" -lt 11 ] 2>/dev/null && CHECK=configcheck-v10
"$WORK/$CHECK" --print-defaults > "$D/config/config.json"
"$WORK/$CHECK" "$D/config/config.json" >/dev/null
chmod -R u=rwX,go=rX "$D"

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$WORK" -cf - mattermost | gzip -n -9 > "$WORK/$NAME"
(cd "$WORK" && sha256sum "$NAME" > "$NAME.sha256")

mv -f "$WORK/configcheck" "$WORK/configcheck-v10" "$WORK/mklicense" "$OUTDIR/"
mv -f "$WORK/$NAME" "$ARCHIVE"
mv -f "$WORK/$NAME.sha256" "$ARCHIVE.sha256"
echo "$WANT" > "$STAMP"
echo "build.sh: built $ARCHIVE ($(cut -d' ' -f1 "$ARCHIVE.sha256")) in $(( $(date +%s) - START ))s"
