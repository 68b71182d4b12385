#!/usr/bin/env bash
# Installs the servers and browser the tests run for real: PostgreSQL (a throwaway cluster per test
# session), Debian's Chromium + ChromeDriver (dashboard tests; never a downloaded browser) and openssl.
set -euo pipefail
need=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v openssl >/dev/null || need+=(openssl)   # a self-signed certificate for the SMTP TLS tests
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
