#!/usr/bin/env bash
# Remove what install.sh set up: the virtualenv (default ./.venv).
#
#   ./uninstall.sh               remove the virtualenv; keep models, jobs and outputs
#   ./uninstall.sh --purge       also delete the data directory (job database, outputs, caches; ~/.local/share/sdrest)
#   ./uninstall.sh --venv DIR    the virtualenv install.sh was given
#   sudo ./uninstall.sh --system [--purge]   the system service (systemd/uninstall-system.sh)
set -euo pipefail
cd "$(dirname "$0")"

for arg in "$@"; do
    if [ "$arg" = --system ]; then
        args=()
        for a in "$@"; do [ "$a" != --system ] && args+=("$a"); done
        exec ./systemd/uninstall-system.sh "${args[@]}"
    fi
done

venv=.venv
purge=no
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) purge=yes ;;
        --venv) venv="$2"; shift ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

data_dir="${SDREST_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/sdrest}"
if [ -d "$venv" ]; then
    rm -rf "$venv"
    echo "removed $venv"
fi
if [ "$purge" = yes ] && [ -d "$data_dir" ]; then
    # Models can live in the data directory too (the default models_dir); say so before deleting them.
    echo "deleting $data_dir (jobs, outputs, caches$( [ -d "$data_dir/models" ] && echo ', and the models in it'))"
    rm -rf "$data_dir"
fi
