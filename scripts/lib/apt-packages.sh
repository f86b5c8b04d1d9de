# Sourced by scripts that need Debian packages: the one place that reads scripts/apt-packages.txt
# and asks dpkg about a package. Asking about a package that is not on the list is a bug in the
# calling script (scripts/setup would not install it on a fresh machine) and stops it.
#
#   apt_packages                     the listed packages, one per line
#   apt_package_installed PKG        status 0 when dpkg has PKG installed
#   apt_require PKG [WHY]            dies unless PKG is listed and installed
#   apt_source_version PKG           "SOURCE VERSION" of the installed PKG (after apt_require)

LOUPE_APT_LIST=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/apt-packages.txt

apt_packages() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$LOUPE_APT_LIST"
}

apt_package_listed() {
  apt_packages | grep -qxF -- "$1"
}

apt_package_installed() {
  dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed
}

apt_require() {
  local pkg=$1 why=${2:-}
  if ! apt_package_listed "$pkg"; then
    printf '%s: error: asks for apt package %s, which %s does not list (scripts/setup would not install it)\n' \
      "$(basename "$0")" "$pkg" "$LOUPE_APT_LIST" >&2
    exit 1
  fi
  if ! apt_package_installed "$pkg"; then
    printf '%s: error: apt package %s is not installed%s: run scripts/setup\n' \
      "$(basename "$0")" "$pkg" "${why:+ ($why)}" >&2
    exit 1
  fi
}

apt_source_version() {
  apt_require "$1"
  dpkg-query -W -f='${source:Package} ${source:Version}' "$1"
}
