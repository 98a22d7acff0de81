#!/usr/bin/env bash
# Remove camera-service installed by scripts/install.sh.
#
#   scripts/uninstall.sh [--dry-run] [--root DIR] [--purge]
#
# Stops and disables the units, removes them, the sysusers.d/tmpfiles.d/modules-load.d files and
# /opt/camera-service. Recordings, snapshots, state (API keys, JWT secret, retention policy), the
# config in /etc/camera-service, unit drop-ins and the camera-service user are kept unless --purge
# is given.
# MediaMTX itself (/usr/local/bin/mediamtx, /etc/mediamtx) is never touched.
set -euo pipefail

# shellcheck source=scripts/deploy-common.sh
. "$(dirname "$0")/deploy-common.sh"
UNITS=(camera-service.service mediamtx.service)

DRY_RUN=0
ROOT=""
PURGE=0

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    cat <<'EOF'
Options:
  --dry-run   print every action, change nothing
  --root DIR  act on a staging root (paths prefixed with DIR; userdel and systemctl are printed,
              not done)
  --purge     also delete recordings, snapshots, state, config and the user
  -h, --help  this help
EOF
}


while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --purge) PURGE=1 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

normalise_root

remove() {  # remove PATH: rm -rf when it exists
    if [ -e "$ROOT$1" ] || [ -L "$ROOT$1" ]; then
        run rm -rf "$ROOT$1"
    fi
}

[ "$DRY_RUN" = 1 ] && info "dry run: printing actions only, nothing is changed"
if [ "$STAGING" = 1 ]; then
    [ -d "$ROOT" ] || die "staging root $ROOT does not exist"
    info "staging root: $ROOT"
elif [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or use --root DIR / --dry-run)"
fi

why="systemd is not running here"
[ "$STAGING" = 1 ] && why="staging root"
systemd_up=0
[ "$STAGING" = 0 ] && [ -d /run/systemd/system ] && systemd_up=1

# --- 1. stop and disable --------------------------------------------------------------------
if [ "$systemd_up" = 1 ]; then
    run_ok systemctl disable --now "${UNITS[@]}"
else
    defer "$why" systemctl disable --now "${UNITS[@]}"
fi

# --- 2. program, units, system configuration snippets ----------------------------------------
for unit in "${UNITS[@]}"; do
    remove "$UNIT_DIR/$unit"
done
remove "$SYSUSERS_FILE"
remove "$TMPFILES_FILE"
remove "$MODULES_FILE"
remove "$PREFIX"

if [ "$systemd_up" = 1 ]; then
    run systemctl daemon-reload
    run_ok systemctl reset-failed "${UNITS[@]}"
else
    defer "$why" systemctl daemon-reload
fi

# --- 3. data, config, user -------------------------------------------------------------------
if [ "$PURGE" = 0 ]; then
    info "kept $DATA_DIR (recordings, snapshots, state) and $CONFIG_DIR; --purge deletes them"
    info "kept user $SERVICE_USER; --purge deletes it"
    info "done"
    exit 0
fi

remove "$DATA_DIR"
remove "$CONFIG_DIR"
for unit in "${UNITS[@]}"; do
    remove "$UNIT_DIR/$unit.d"  # drop-ins from `systemctl edit`
done
if [ "$STAGING" = 1 ]; then
    defer "$why" userdel "$SERVICE_USER"
elif getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    run userdel "$SERVICE_USER"
    if [ "$DRY_RUN" = 0 ] && getent group "$SERVICE_GROUP" >/dev/null 2>&1; then
        run groupdel "$SERVICE_GROUP"
    fi
else
    info "user $SERVICE_USER does not exist"
fi
info "done"
