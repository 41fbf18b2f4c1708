#!/bin/sh
# Rebuilds the web app from source and fails when the result differs from the committed
# web/dist/ (which the Rust build embeds). Run it after changing web/src or clients/js/src, and
# commit the new dist/ it tells you about.
set -eu
cd "$(dirname "$0")"
for dir in ../clients/js .; do
  if [ ! -d "$dir/node_modules" ]; then (cd "$dir" && npm ci --no-audit --no-fund); fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node build.mjs "$tmp"
if ! diff -r "$tmp" dist >/dev/null; then
  diff -r "$tmp" dist | head -n 20 || true
  echo "web/dist is out of date: run \`npm run build\` in web/ and commit web/dist" >&2
  exit 1
fi
echo "web/dist matches its sources"
