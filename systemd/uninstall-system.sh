#!/usr/bin/env bash
# Remove the sdrest service (called by `uninstall.sh --system`): the unit, the program and the user. The data and the
# config stay unless --purge.
#
#   sudo ./uninstall.sh --system [--purge] [--user NAME] [--root DIR]
set -euo pipefail

user=sdrest root="" purge=no
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=yes ;;
        --user) user="$2"; shift ;;
        --root) root="$(realpath -m "$2")"; shift ;;
        *) echo "uninstall.sh --system: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh --system: run it as root (sudo)" >&2; exit 1; }

prefix="$root/opt/sdrest" state="$root/var/lib/sdrest" confdir="$root/etc/sdrest"
unit="$root/etc/systemd/system/sdrest.service" pam="$root/etc/pam.d/sdrest"

if [ -z "$root" ] && [ -d /run/systemd/system ] && [ -e "$unit" ]; then
    systemctl disable --now --quiet sdrest || true
fi
rm -f "$unit"
[ -z "$root" ] && [ -d /run/systemd/system ] && systemctl daemon-reload
rm -rf "$prefix"
echo "removed the service and $prefix"
if getent passwd "$user" >/dev/null; then
    userdel "$user"
    echo "removed the user $user"
fi
if [ "$purge" = yes ]; then
    rm -rf "$state" "$confdir" "$pam"
    echo "purged $state (jobs, outputs, models) and $confdir"
else
    echo "kept $state (jobs, outputs, models) and $confdir; --purge removes them"
fi
