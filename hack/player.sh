#!/usr/bin/env bash
# The browser player of the test suite: Debian's Chromium, and hls.js from npm exactly as
# player/package-lock.json pins it. node_modules and npm's cache live in the cache outside the
# checkout; `npm ci` runs again only when the lock, package.json or this script changes.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-transcode}"
dest="$cache/player"

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
installed chromium || missing+=(chromium)
# Debian's nodejs and npm unless a node with its own npm is already there (NodeSource's
# nodejs package bundles npm and conflicts with Debian's npm package).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "player: installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

stamp="$(cat "$root/player/package.json" "$root/player/package-lock.json" "$0" | sha256sum | cut -c1-16)"
if [[ -f "$dest/.stamp" && "$(cat "$dest/.stamp")" == "$stamp" && -d "$dest/node_modules" ]]; then
  echo "player: hls.js up to date"
  exit 0
fi
mkdir -p "$dest"
cp "$root/player/package.json" "$root/player/package-lock.json" "$dest/"
# ci: exactly the lock (integrity checked), never rewritten; no install scripts run.
(cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --cache "$cache/npm") \
  >"$cache/build-player.log" 2>&1 || { tail -40 "$cache/build-player.log"; exit 1; }
echo "$stamp" >"$dest/.stamp"
echo "player: hls.js $(node -p "require('$dest/node_modules/hls.js/package.json').version") in $dest"
