#!/usr/bin/env bash
# Assembles OpenSearch (Apache-2.0) from Maven Central, laid out like the official release
# archive, plus a TEST STAND-IN for its analysis-icu plugin zip:
#   OUTDIR/opensearch-VERSION-linux-x64.tar.gz  (+ .sha256, sha256sum format)
#     opensearch-VERSION/{bin,config,lib,logs,modules,plugins}, LICENSE.txt NOTICE.txt README.md
#   OUTDIR/analysis-icu-VERSION.zip             (+ .sha256)
# The official archives cannot be downloaded here. The node is the real OpenSearch: Maven's
# integ-test-zip distribution (bin/, lib/, transport-netty4) plus these modules, each from its
# org.opensearch.plugin artifact with its runtime dependencies and the descriptor/policy kept
# in tests/standin/opensearch/modules/ (Maven ships the classes but not those):
#   lang-painless, analysis-common, mapper-extras, parent-join, reindex
# Differences from the official archive: no bundled jdk/ (it runs on Debian's
# openjdk-17-jre-headless: the unit sets OPENSEARCH_JAVA_HOME), no bundled plugins (security
# etc. are not on Maven), no Windows scripts, and the modules above only (no ingest-common,
# percolator, rank-eval, aggs-matrix-stats, repository-url: not on Maven).
# analysis-icu (Mattermost's post and file templates need icu_tokenizer/icu_normalizer) is
# installed the way real sites install it, `bin/opensearch-plugin install file:///...zip`;
# its zip here is the stand-in in tests/standin/opensearch/analysis-icu over Lucene's ICU module.
# Sorted tar/zip entries with fixed mtime/owner, gzip -n: the same inputs give the same bytes.
# Skipped when the inputs are unchanged; runs under an flock on OUTDIR. Needs mvn, javac, jar.
#
# Usage: tests/standin/build-opensearch.sh VERSION OUTDIR     (VERSION like 2.19.6)
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 VERSION OUTDIR" >&2
    exit 2
fi
VERSION=$1
case "$VERSION" in *[!0-9.]*|"") echo "build-opensearch.sh: bad VERSION '$VERSION'" >&2; exit 2 ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$HERE/opensearch
mkdir -p "$2"
OUTDIR=$(cd "$2" && pwd)
NAME=opensearch-$VERSION-linux-x64.tar.gz
ICU=analysis-icu-$VERSION.zip
STAMP=$OUTDIR/.$NAME.inputs
for tool in mvn javac jar zip; do
    command -v $tool >/dev/null || { echo "build-opensearch.sh: $tool is not installed" >&2; exit 1; }
done

exec 9>"$OUTDIR/.lock"
flock 9

inputs() {
    echo "version=$VERSION"
    javac -version 2>&1
    (cd "$HERE" && find build-opensearch.sh opensearch -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}
WANT=$(inputs | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$OUTDIR/$NAME.sha256" ] && [ -f "$OUTDIR/$ICU.sha256" ]; then
    echo "build-opensearch.sh: $OUTDIR/$NAME is up to date"
    exit 0
fi

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
MVN="mvn -B -q -Dstyle.color=never"

# fetch copies one artifact (group:artifact:version:type); fetch_with_deps one with its runtime dependencies.
fetch() {
    local artifact=$1 dest=$2
    mkdir -p "$dest"
    $MVN dependency:copy -Dartifact="$artifact" -DoutputDirectory="$dest" >/dev/null
}
fetch_with_deps() {
    local group=$1 artifact=$2 version=$3 dest=$4 pom
    pom=$WORK/poms/$artifact/pom.xml
    mkdir -p "$(dirname "$pom")" "$dest"
    cat > "$pom" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>mmdeploy.build</groupId><artifactId>$artifact-deps</artifactId><version>1</version>
  <dependencies><dependency><groupId>$group</groupId><artifactId>$artifact</artifactId><version>$version</version></dependency></dependencies>
</project>
EOF
    $MVN -f "$pom" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest" >/dev/null
}

fetch "org.opensearch.distribution.integ-test-zip:opensearch:$VERSION:zip" "$WORK/dl"
(cd "$WORK" && unzip -q "dl/opensearch-$VERSION.zip")
D=$WORK/opensearch-$VERSION
[ -x "$D/bin/opensearch" ] || { echo "build-opensearch.sh: the integ-test-zip has no bin/opensearch" >&2; exit 1; }
rm -f "$D"/bin/*.bat "$D"/bin/*.exe

for dir in "$SRC"/modules/*/; do
    module=$(basename "$dir")
    fetch_with_deps org.opensearch.plugin "$(cat "$dir/maven-artifact")" "$VERSION" "$D/modules/$module"
    # jars the node already has in lib/ must not be loaded twice (jar hell)
    for jar in "$D/modules/$module"/*.jar; do
        [ ! -e "$D/lib/$(basename "$jar")" ] || rm -f "$jar"
    done
    sed "s/@VERSION@/$VERSION/g" "$dir/plugin-descriptor.properties" > "$D/modules/$module/plugin-descriptor.properties"
    [ ! -f "$dir/plugin-security.policy" ] || cp "$dir/plugin-security.policy" "$D/modules/$module/"
done
# painless's SPI lives in lang-painless; analysis-common (which extends it) must not carry a copy
rm -f "$D"/modules/analysis-common/opensearch-scripting-painless-spi-*.jar "$D"/modules/analysis-common/lang-painless-*.jar
mkdir -p "$D/logs" "$D/plugins" "$D/config/jvm.options.d"
chmod -R u=rwX,go=rX "$D"
find "$D/bin" -type f -exec chmod 0755 {} +

# The analysis-icu stand-in: compiled against this node's lib/ and Lucene's ICU module.
P=$WORK/icu
LUCENE=$(basename "$D"/lib/lucene-core-*.jar .jar | sed 's/^lucene-core-//')
fetch_with_deps org.apache.lucene lucene-analysis-icu "$LUCENE" "$P/deps"
mkdir -p "$P/zip"
cp "$P"/deps/lucene-analysis-icu-*.jar "$P"/deps/icu4j-*.jar "$P/zip/"
mkdir -p "$P/classes"
javac --release 11 -nowarn -d "$P/classes" -cp "$D/lib/*:$P/zip/*" $(find "$SRC/analysis-icu/src" -name '*.java' | sort)
(cd "$P/classes" && find . -type f | LC_ALL=C sort | sed 's|^\./||' > ../files && \
    TZ=UTC touch -d @315532800 $(cat ../files) && jar --create --date=1980-01-01T00:00:02Z --no-manifest --file "$P/zip/analysis-icu-$VERSION.jar" $(cat ../files))
sed "s/@VERSION@/$VERSION/g" "$SRC/analysis-icu/plugin-descriptor.properties" > "$P/zip/plugin-descriptor.properties"
chmod 0644 "$P"/zip/*
(cd "$P/zip" && TZ=UTC touch -d @315532800 ./* && ls | LC_ALL=C sort | zip -q -X -D -@ "$WORK/$ICU")

tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$WORK" -cf - "opensearch-$VERSION" | gzip -n -6 > "$WORK/$NAME"
(cd "$WORK" && sha256sum "$NAME" > "$NAME.sha256" && sha256sum "$ICU" > "$ICU.sha256")
mv -f "$WORK/$NAME" "$WORK/$ICU" "$WORK/$NAME.sha256" "$WORK/$ICU.sha256" "$OUTDIR/"
echo "$WANT" > "$STAMP"
echo "build-opensearch.sh: built $OUTDIR/$NAME ($(cut -d' ' -f1 "$OUTDIR/$NAME.sha256")) and $ICU in $(( $(date +%s) - START ))s"
