# The base of the reconciler image when it is built here (tools/image/build.sh): a Debian root filesystem with
# Debian's own Python 3.11 (python3, python3-venv) and CA certificates, made from Debian's packages alone
# (debootstrap --variant=minbase, then the release's point and security updates), without apt's lists, man
# pages, translations and docs (their copyright files stay). The packages come from the archives this
# machine's apt sources name, read at build time (DEBIAN_MIRROR overrides the main one); the build log names
# none. The output is a tar of the root filesystem, share/debian-base.tar, which tools/image/build.sh imports
# as an image. Needs root (sudo when not root).
DEBIAN_RELEASE=bookworm
DEBIAN_PACKAGES=python3,python3-venv,ca-certificates

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# quiet_urls COMMAND...: runs COMMAND with archive URLs in its output replaced, so that the build log names no
# mirror.
quiet_urls() {
  "$@" 2>&1 | sed -E 's#[a-z]+://[^ ]+#<archive>#g'
}

# apt_site SUITE: the archive that this machine's apt sources use for SUITE, empty when none does.
apt_site() {
  # shellcheck disable=SC2016  # apt expands $(SITE) and $(RELEASE), not the shell
  apt-get indextargets --no-release-info --format '$(SITE) $(RELEASE)' 'Created-By: Packages' \
    | awk -v suite="$1" '$2 == suite { print $1; exit }'
}

build_tool() {
  local bin=$2 share root mirror suite site
  share=$(dirname "$bin")/share
  root=$(dirname "$bin")/rootfs
  mirror=${DEBIAN_MIRROR:-$(apt_site "$DEBIAN_RELEASE")}
  if [[ -z $mirror ]]; then
    echo "this machine's apt sources name no $DEBIAN_RELEASE archive: set DEBIAN_MIRROR (a mirror's URL)" >&2
    return 1
  fi
  trap 'as_root rm -rf "$root"' RETURN
  quiet_urls as_root debootstrap --variant=minbase --include="$DEBIAN_PACKAGES" \
    "$DEBIAN_RELEASE" "$root" "$mirror"
  echo "deb $mirror $DEBIAN_RELEASE main" | as_root tee "$root/etc/apt/sources.list" >/dev/null
  for suite in "$DEBIAN_RELEASE-updates" "$DEBIAN_RELEASE-security"; do
    site=$(apt_site "$suite")
    if [[ -n $site ]]; then
      echo "deb $site $suite main" | as_root tee -a "$root/etc/apt/sources.list" >/dev/null
    else
      echo "no apt source for $suite on this machine: its updates are left out"
    fi
  done
  quiet_urls as_root chroot "$root" apt-get update
  quiet_urls as_root chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -y upgrade
  as_root chroot "$root" apt-get clean
  # The image needs no package manager state, docs or host files (the container runtime provides /etc/hosts
  # and /etc/resolv.conf); the packages' copyright files stay.
  as_root rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/etc/resolv.conf "$root"/etc/hostname "$root"/etc/apt/sources.list
  as_root find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  mkdir -p "$share"
  as_root tar --numeric-owner -C "$root" -cf "$share/debian-base.tar" .
  as_root chown "$(id -u):$(id -g)" "$share/debian-base.tar"
}
