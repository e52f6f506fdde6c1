#!/bin/sh
# Install (or upgrade) the enmon gateway on a Raspberry Pi-class box running Debian /
# Raspberry Pi OS with systemd. Idempotent: run it again to upgrade or add an instance.
#
#   sudo sh install.sh --source 'enmon[gateway]==0.1.0' \
#        --instance gw-01 --config gw-01.yaml --credentials secrets/clients/hosp-a.gw-01
#
# --source       what pip installs (a wheel, a checkout path, or a version spec); the
#                [gateway] extra is added when missing, so no server libraries come along
# --instance     systemd instance name: the service is enmon-gateway@NAME and reads
#                /etc/enmon/NAME.yaml; its state_dir must be /var/lib/enmon/NAME
# --config       the gateway YAML to install as /etc/enmon/NAME.yaml
# --credentials  a clients/SITE.GATEWAY folder from `enmon deploy credentials`, copied to
#                /etc/enmon/mqtt/SITE.GATEWAY (0600, owned by the service user)
# --dry-run      print what would be done, change nothing
set -eu

PREFIX=/opt/enmon
ETC=/etc/enmon
SERVICE_USER=enmon
HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=""
INSTANCE=""
CONFIG=""
CREDENTIALS=""
DRY_RUN=0

die() { echo "install.sh: $*" >&2; exit 2; }
run() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then "$@"; fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --source) SOURCE=$2; shift 2 ;;
        --instance) INSTANCE=$2; shift 2 ;;
        --config) CONFIG=$2; shift 2 ;;
        --credentials) CREDENTIALS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

[ -n "$SOURCE" ] || die "--source is required (e.g. --source 'enmon[gateway]' or a wheel)"
case "$SOURCE" in
    *"[gateway"*) ;;
    *.whl|*/*|.) SOURCE="${SOURCE}[gateway]" ;;
    *) SOURCE=$(echo "$SOURCE" | sed 's/^\([A-Za-z0-9_.-]*\)/\1[gateway]/') ;;
esac
if [ -n "$INSTANCE" ]; then
    echo "$INSTANCE" | grep -Eq '^[A-Za-z0-9_-]{1,64}$' || die "--instance must match [A-Za-z0-9_-]{1,64}"
fi
if [ -n "$CONFIG" ] && [ -z "$INSTANCE" ]; then die "--config needs --instance"; fi
if [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then die "run as root (sudo)"; fi

# 1. the service user: no login, no home of its own beyond the state dir, may open serial ports
if ! id "$SERVICE_USER" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir /var/lib/enmon --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi
run usermod -a -G dialout "$SERVICE_USER"

# 2. Python venv with only the gateway extra
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    run apt-get install -y --no-install-recommends python3-venv
fi
[ -x "$PREFIX/venv/bin/python" ] || run python3 -m venv "$PREFIX/venv"
run "$PREFIX/venv/bin/pip" install --no-cache-dir --upgrade "$SOURCE"

# 3. systemd unit, journald limits, logrotate, docs
run install -d -m 0755 "$PREFIX/deploy/pi"
run install -m 0644 "$HERE/README.md" "$PREFIX/deploy/pi/README.md"
run install -m 0644 "$HERE/systemd/enmon-gateway@.service" /etc/systemd/system/enmon-gateway@.service
run install -d -m 0755 /etc/systemd/journald.conf.d
run install -m 0644 "$HERE/journald-enmon.conf" /etc/systemd/journald.conf.d/enmon.conf
run install -m 0644 "$HERE/logrotate-enmon" /etc/logrotate.d/enmon
run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"

# 4. this instance's config and MQTT credentials
if [ -n "$CREDENTIALS" ]; then
    user=$(basename "$CREDENTIALS")
    run install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC/mqtt"
    run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$ETC/mqtt/$user"
    for f in password client.key; do
        if [ -f "$CREDENTIALS/$f" ]; then
            run install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_USER" "$CREDENTIALS/$f" "$ETC/mqtt/$user/$f"
        fi
    done
    for f in ca.crt client.crt mqtt.yaml; do
        if [ -f "$CREDENTIALS/$f" ]; then
            run install -m 0644 "$CREDENTIALS/$f" "$ETC/mqtt/$user/$f"
        fi
    done
fi
if [ -n "$CONFIG" ]; then
    run install -m 0640 -o root -g "$SERVICE_USER" "$CONFIG" "$ETC/$INSTANCE.yaml"
    # fail here, with the file/key/fix message, rather than in a restart loop
    run runuser -u "$SERVICE_USER" -- "$PREFIX/venv/bin/enmon" gateway check -c "$ETC/$INSTANCE.yaml"
fi

# 5. start
run systemctl daemon-reload
run systemctl restart systemd-journald
if [ -n "$INSTANCE" ]; then
    run systemctl enable --now "enmon-gateway@$INSTANCE"
    echo "installed: journalctl -u enmon-gateway@$INSTANCE -f   to watch it"
fi
