#!/usr/bin/env bash
# Installs what the project needs from package registries, skipping what is already there.
# Debian packages (RabbitMQ, FFmpeg, Prometheus), the Python environment (hashed lock), the
# pinned Go tools (hack/tools.sh) and the tests' browser player (hack/player.sh: Chromium,
# hls.js). Safe to run any number of times.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

apt_packages=(rabbitmq-server ffmpeg prometheus openssl)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "deps: installing ${missing[*]}"
  sudo_cmd=(); [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # policy-rc.d keeps the packages' own services from starting: the stack runs its own.
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${sudo_cmd[@]}" chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
  "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
fi

"$root/hack/python.sh"
"$root/hack/tools.sh"
"$root/hack/player.sh"
