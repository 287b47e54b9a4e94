#!/usr/bin/env bash
# Builds the local Python base image, for a machine that cannot pull the public one (this
# workplace; common.sh): a minimal Debian bookworm with python3.11, imported into the
# container tool's store. Needs root, apt and debootstrap. Skipped when the image exists; the
# root filesystem tarball is cached under ~/.cache/ticketing/images so a fresh store
# re-imports it.
# Usage: images/build-base.sh [--force]
set -euo pipefail
# shellcheck source=images/common.sh
source "$(dirname "$0")/common.sh"

detect_tool
LOCAL_BASE=1 choose_base

PACKAGES="python3,python3-venv,ca-certificates"
SUITE=bookworm
TARBALL="$IMAGES_CACHE/ticketing-python-$SUITE.tar.gz"

if [[ "${1:-}" == --force ]]; then
  rm -f "$TARBALL"
  tool image rm -f "$BASE_IMAGE" >/dev/null 2>&1 || true
elif tool image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  echo "base image $BASE_IMAGE exists"
  exit 0
fi

if [[ ! -f "$TARBALL" ]]; then
  need debootstrap
  # The machine's Debian mirrors (deb822 or one-line sources).
  files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  sources="$(cat "${files[@]}" 2>/dev/null || true)"
  mirror="$(sed -n 's/^URIs: *\(.*\/debian\)\/*$/\1/p; s/^deb  *\(http[^ ]*\/debian\)\/* .*/\1/p' <<<"$sources" | head -n1)"
  security="$(sed -n 's/^URIs: *\(.*\/debian-security\)\/*$/\1/p; s/^deb  *\(http[^ ]*\/debian-security\)\/* .*/\1/p' <<<"$sources" | head -n1)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="${security:-http://deb.debian.org/debian-security}"
  rootfs="$(mktemp -d "$IMAGES_CACHE/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  start=$SECONDS
  echo "debootstrap $SUITE from $mirror"
  nice -n 10 debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$mirror" \
    >"$IMAGES_CACHE/debootstrap.log" 2>&1 || {
    tail -n 20 "$IMAGES_CACHE/debootstrap.log" >&2
    exit 1
  }
  cat >"$rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb $security $SUITE-security main
SOURCES
  # Docs, man pages and translations are not installed by later apt-get installs either.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/excludes" <<'EXCLUDES'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EXCLUDES
  echo "security updates"
  chroot "$rootfs" /bin/sh -c 'apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -q' \
    >>"$IMAGES_CACHE/debootstrap.log" 2>&1
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/tmp/*
  find "$rootfs"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs"/usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  # No stdlib bytecode, as in the official slim image: 14 MB for about 0.1 s of start-up.
  find "$rootfs"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
  tar -C "$rootfs" --numeric-owner -czf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
  echo "root filesystem built in $((SECONDS - start)) s: $TARBALL"
fi

tool import --change 'CMD ["python3"]' --change 'ENV LANG=C.UTF-8' "$TARBALL" "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE: $(human "$(tool image inspect --format '{{.Size}}' "$BASE_IMAGE")")"
