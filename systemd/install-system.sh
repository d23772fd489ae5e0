#!/usr/bin/env bash
# Install sdrest as a system service (called by `install.sh --system`; see README "Run as a service").
#
#   sudo ./install.sh --system [--backend cpu|cuda|vulkan|rocm] [--user NAME] [--root DIR] [--no-start]
#
# --root DIR puts every path under DIR (a scratch root for tests); the unit then points there. Running it again
# upgrades in place: the program is replaced, data and config are kept, the service is restarted once.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)

backend=cpu user=sdrest root="" start=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) backend="$2"; shift ;;
        --user) user="$2"; shift ;;
        --root) root="$(realpath -m "$2")"; shift ;;
        --no-start) start=no ;;
        *) echo "install.sh --system: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh --system: run it as root (sudo)" >&2; exit 1; }

prefix="$root/opt/sdrest" state="$root/var/lib/sdrest" confdir="$root/etc/sdrest"
unitdir="$root/etc/systemd/system" pamdir="$root/etc/pam.d"
config="$confdir/config.toml"

# The service user: no login shell, its home is the state directory (nothing outside it).
if ! getent passwd "$user" >/dev/null; then
    useradd --system --user-group --home-dir "$state" --no-create-home --shell /usr/sbin/nologin "$user"
    echo "created the system user $user"
fi
install -d -m 0755 "$prefix"
install -d -m 0750 -o "$user" -g "$user" "$state" "$state/models"
install -d -m 0750 -o root -g "$user" "$confdir"

# The program, in its own virtualenv, built beside the old one and swapped in only when it works.
upgrade=no
[ -x "$prefix/venv/bin/sdrest" ] && upgrade=yes
rm -rf "$prefix/venv.new"
# The system's Python: the service user must be able to run it (a per-user Python under /root is not readable).
PYTHON="${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}" \
    "$src/install.sh" --venv "$prefix/venv.new" --backend "$backend" --no-editable --quiet
if [ "$upgrade" = yes ]; then mv "$prefix/venv" "$prefix/venv.old"; fi
mv "$prefix/venv.new" "$prefix/venv"
rm -rf "$prefix/venv.old"
# The virtualenv records its own path: rewrite the scripts' shebangs for the final place.
grep -rlI --exclude-dir=__pycache__ "$prefix/venv.new" "$prefix/venv/bin" | xargs -r sed -i "s#$prefix/venv.new#$prefix/venv#g"
install -m 0644 "$src/README.md" "$prefix/README.md"

# The config: written once with commented defaults, never overwritten (it may hold secrets: 0640 root:$user).
if [ ! -e "$config" ]; then
    umask 027
    cat > "$config" <<CONF
# sdrest settings (README "Settings" lists every one). \`systemctl reload sdrest\` applies most of them.
data_dir = "$state"
models_dir = "$state/models"
# host = "127.0.0.1"        # another address needs auth below (or allow_unauthenticated = true)
# port = 7860
# auth = "none"             # or "api_key", "jwt", "pam", "idp", combined: "api_key,jwt"
# threads = 0               # 0: every physical core
# idle_unload_seconds = 600
# retention_days = 0
# hf_token = ""
CONF
    chown "root:$user" "$config"
    chmod 0640 "$config"
    echo "wrote $config"
fi

# The unit, with the devices the backend needs and nothing more.
case "$backend" in
    cuda) devices="# CUDA: the NVIDIA device nodes (PrivateDevices would hide them).
PrivateDevices=no
DevicePolicy=closed
DeviceAllow=char-nvidiactl rw
DeviceAllow=char-nvidia-frontend rw
DeviceAllow=char-nvidia-uvm rw
DeviceAllow=char-nvidia-caps rw" ;;
    vulkan) devices="# Vulkan: the GPU's render node (PrivateDevices would hide it).
PrivateDevices=no
DevicePolicy=closed
DeviceAllow=char-drm rw" ;;
    rocm) devices="# ROCm: the render node and the kernel fusion driver (PrivateDevices would hide them).
PrivateDevices=no
DevicePolicy=closed
DeviceAllow=char-drm rw
DeviceAllow=/dev/kfd rw" ;;
    *) devices="PrivateDevices=yes
DevicePolicy=closed" ;;
esac
install -d -m 0755 "$unitdir"
awk -v devices="$devices" '{ if ($0 == "@DEVICES@") print devices; else print }' "$src/systemd/sdrest.service.in" |
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@USER@#$user#g" -e "s#@CONFIG@#$config#g" -e "s#@STATE@#$state#g" \
    > "$unitdir/sdrest.service"
chmod 0644 "$unitdir/sdrest.service"

# PAM logins: a service file, and the shadow group so pam_unix may check other accounts' passwords.
if grep -Eq '^[[:space:]]*auth[[:space:]]*=.*pam' "$config"; then
    if [ ! -e "$pamdir/sdrest" ]; then
        install -d -m 0755 "$pamdir"
        printf '#%%PAM-1.0\n@include common-auth\n@include common-account\n' > "$pamdir/sdrest"
        echo "wrote $pamdir/sdrest"
    fi
    if getent group shadow >/dev/null; then
        usermod -aG shadow "$user"
        echo "added $user to the shadow group (pam_unix needs it to check other accounts' passwords)"
    fi
fi

host=$(sed -n 's/^[[:space:]]*host[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' "$config" | tail -1)
port=$(sed -n 's/^[[:space:]]*port[[:space:]]*=[[:space:]]*\([0-9]*\).*/\1/p' "$config" | tail -1)
url="http://${host:-127.0.0.1}:${port:-7860}/"
if [ -z "$root" ] && [ "$start" = yes ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --quiet sdrest
    if [ "$upgrade" = yes ]; then systemctl restart sdrest; else systemctl start sdrest; fi
    echo "sdrest is running: $url  (status: systemctl status sdrest; logs: journalctl -u sdrest)"
else
    echo "installed; start it with: systemctl daemon-reload && systemctl enable --now sdrest   then open $url"
fi
if grep -Eq '^[[:space:]]*auth[[:space:]]*=.*(jwt|pam)' "$config"; then
    echo "log in with a local user (sudo -u $user $prefix/venv/bin/sdrest users add NAME) or a system account"
else
    echo "no login needed on 127.0.0.1; set auth in $config before serving other addresses"
fi
