#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing: redis-server, Maven, a JDK (javac), setpriv
# (engines), libjemalloc2 (CPU training keeps its large buffers instead of re-faulting them) and Chromium with its
# driver (the demo page's browser test), npm (fetches the emoji data packages).
# Idempotent: prints what it found and installs nothing when everything is there.
set -euo pipefail

missing=()
[ -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ] || [ "$(uname -m)" != x86_64 ] || missing+=(libjemalloc2)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v javac >/dev/null 2>&1 || ls /usr/lib/jvm/*/bin/javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: redis-server, mvn, javac, setpriv, jemalloc, chromium, chromedriver and npm are present"
  exit 0
fi

echo "system packages: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "error: need root or sudo to install ${missing[*]} (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
