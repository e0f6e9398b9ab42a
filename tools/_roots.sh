# tools/_roots.sh — sourced by build_wheels.sh and test_wheel.sh: minimal Debian roots made
# with debootstrap (no docker on our machines), cached between runs, and the mounts that let
# a command inside one see host paths at the same absolute paths.
#
#   NORMKIT_ROOTS  where roots are cached (default /var/cache/normkit-roots)
#   NORMKIT_DEBIAN_MIRROR  (default http://deb.debian.org/debian)
#
# Must run as root (debootstrap, chroot, mount) inside a private mount namespace
# (nk_enter_namespace re-executes the calling script under `unshare --mount`), so every mount
# disappears when the script exits, however it exits.

NK_ROOTS="${NORMKIT_ROOTS:-/var/cache/normkit-roots}"
NK_MIRROR="${NORMKIT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

nk_die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# nk_enter_namespace "$0" "$@": re-exec once in a private mount namespace.
nk_enter_namespace() {
  [[ "$(id -u)" == 0 ]] || nk_die "must run as root (debootstrap, chroot and bind mounts)"
  if [[ -z "${NK_IN_NAMESPACE:-}" ]]; then
    command -v unshare >/dev/null || nk_die "unshare (util-linux) not found"
    NK_IN_NAMESPACE=1 exec unshare --mount --propagation private "$@"
  fi
}

# nk_make_root NAME SUITE PACKAGES...: $NK_ROOTS/NAME, a debootstrap --variant=minbase root of
# Debian SUITE with PACKAGES; made once (a stamp records suite and packages; a different list
# remakes it). Prints the root's path.
nk_make_root() {
  local name="$1" suite="$2"; shift 2
  local root="$NK_ROOTS/$name" want="$suite $*"
  if [[ -f "$root/.normkit-root" && "$(cat "$root/.normkit-root")" == "$want" ]]; then
    nk_host_net "$root"; echo "$root"; return
  fi
  command -v debootstrap >/dev/null ||
    nk_die "debootstrap not found (Debian: apt-get install debootstrap)"
  echo "making $root: Debian $suite + $* (debootstrap, about a minute)" >&2
  rm -rf "$root" && mkdir -p "$NK_ROOTS"
  local inc; inc="$(IFS=,; echo "$*")"
  debootstrap --variant=minbase --include="$inc" "$suite" "$root" "$NK_MIRROR" >"$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; nk_die "debootstrap of $suite failed (log: $root.log)"; }
  echo "$want" >"$root/.normkit-root"
  nk_host_net "$root"
  echo "$root"
}

# nk_host_net ROOT: the host's DNS settings and CA bundle inside ROOT (pip there must trust
# what the host trusts, e.g. a site's TLS-intercepting proxy).
nk_host_net() {
  cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
  local ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"
  if [[ -f "$ca" ]]; then
    mkdir -p "$1/etc/ssl/certs" && cp "$ca" "$1/etc/ssl/certs/ca-certificates.crt"
  fi
}

# nk_bind ROOT DIR...: each host DIR mounted at the same path inside ROOT (read-write), plus
# /proc and /dev. A DIR below one already bound is skipped.
nk_bind() {
  local root="$1"; shift
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
  mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
  local d done_dirs=()
  for d in "$@"; do
    d="$(readlink -f "$d")"
    local covered=0 b
    for b in "${done_dirs[@]}"; do [[ "$d" == "$b" || "$d" == "$b"/* ]] && covered=1; done
    [[ $covered == 1 ]] && continue
    mkdir -p "$root$d"
    mount --bind "$d" "$root$d"
    done_dirs+=("$d")
  done
}

# nk_in ROOT DIR CMD...: run CMD inside ROOT with DIR as working directory.
nk_in() {
  local root="$1" dir="$2"; shift 2
  chroot "$root" /bin/sh -c 'cd "$0" && exec "$@"' "$dir" "$@"
}
