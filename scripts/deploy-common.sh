# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the sourcing script
# Shared by scripts/install.sh and scripts/uninstall.sh (sourced, not run).
# Paths of an installation, output helpers and the --root normalisation.

SERVICE_USER=camera-service
SERVICE_GROUP=camera-service
PREFIX=/opt/camera-service
CONFIG_DIR=/etc/camera-service
DATA_DIR=/var/lib/camera-service
UNIT_DIR=/etc/systemd/system
SYSUSERS_FILE=/etc/sysusers.d/camera-service.conf
TMPFILES_FILE=/etc/tmpfiles.d/camera-service.conf
MODULES_FILE=/etc/modules-load.d/camera-service.conf

die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# A staging root is an absolute path without a trailing slash; empty means the live system.
normalise_root() {
    if [ -n "$ROOT" ]; then
        case $ROOT in /*) ;; *) ROOT=$(pwd)/$ROOT ;; esac
        ROOT=${ROOT%/}
    fi
    STAGING=0
    [ -n "$ROOT" ] && STAGING=1
    return 0
}

# --- output helpers -------------------------------------------------------------------------
# "+ cmd"          an action (only printed under --dry-run)
# "~ cmd  # why"   an action deliberately not done here
# "= text"         information
quote() {
    local out="" arg
    for arg in "$@"; do out+="$(printf '%q' "$arg") "; done
    printf '%s' "${out% }"
}
run() {
    echo "+ $(quote "$@")"
    [ "$DRY_RUN" = 1 ] || "$@"
}
run_ok() {  # like run, but a failure is reported and ignored
    echo "+ $(quote "$@")"
    [ "$DRY_RUN" = 1 ] || "$@" || echo "= (ignored failure of: $1)"
}
defer() {
    local why=$1; shift
    echo "~ $(quote "$@")  # not done: $why"
}
info() { echo "= $*"; }
