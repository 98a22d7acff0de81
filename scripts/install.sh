#!/usr/bin/env bash
# Install or upgrade camera-service on a systemd host (or into a staging root).
#
#   scripts/install.sh [--dry-run] [--root DIR] [--no-venv] [--reinstall] [--now]
#                      [--python PY] [--wheels DIR] [--config-src FILE]
#
# Creates the camera-service user (sysusers.d), the storage/state directories (tmpfiles.d modes),
# a virtualenv release under /opt/camera-service/releases/<version> with /opt/camera-service/venv
# pointing at it, /etc/camera-service/config.yaml from the repository's config.yaml (an existing
# config is never overwritten), and the systemd units; reloads systemd and enables the units when
# systemd is running. Safe to run again: every step is idempotent. See docs/deployment.md.
set -euo pipefail

# shellcheck source=scripts/deploy-common.sh
. "$(dirname "$0")/deploy-common.sh"
CONFIG_FILE=$CONFIG_DIR/config.yaml
MEDIAMTX_BIN=/usr/local/bin/mediamtx
KEEP_RELEASES=3
SOURCE_EXCLUDES=(--exclude=./.git --exclude=./build --exclude=./dist --exclude="'*.egg-info'"
                 --exclude=./.venv --exclude="'__pycache__'" --exclude="'.*_cache'"
                 --exclude=./state --exclude=./recordings --exclude=./snapshots)

REPO=$(cd "$(dirname "$0")/.." && pwd)
CLEANUP=""
trap '[ -z "$CLEANUP" ] || rm -rf "$CLEANUP"' EXIT
DRY_RUN=0
ROOT=""
NO_VENV=0
REINSTALL=0
START_NOW=0
PYTHON=python3
WHEELS=""
CONFIG_SRC=$REPO/config.yaml

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
    cat <<'EOF'
Options:
  --dry-run          print every action, change nothing
  --root DIR         install into a staging root: all paths prefixed with DIR; user creation,
                     ownership and systemctl are printed, not done (sysusers.d/tmpfiles.d apply
                     them on the target's first boot)
  --no-venv          skip the virtualenv (units, config, directories only)
  --reinstall        build a fresh release (<version>-<timestamp>) even if this version is
                     already installed
  --now              also (re)start the services (default: only enable them)
  --python PY        interpreter for the virtualenv (default python3, needs >= 3.11)
  --wheels DIR       install offline from a wheelhouse (pip --no-index --find-links DIR)
  --config-src FILE  initial config to copy (default: <repo>/config.yaml)
  -h, --help         this help
EOF
}


while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --no-venv) NO_VENV=1 ;;
        --reinstall) REINSTALL=1 ;;
        --now) START_NOW=1 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON=$2; shift ;;
        --wheels) [ $# -ge 2 ] || die "--wheels needs a directory"; WHEELS=$2; shift ;;
        --config-src) [ $# -ge 2 ] || die "--config-src needs a file"; CONFIG_SRC=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
    shift
done

normalise_root

write_line() {  # write_line MODE FILE LINE
    echo "+ echo $(quote "$3") > $(quote "$2") && chmod $1 $(quote "$2")"
    if [ "$DRY_RUN" = 0 ]; then
        printf '%s\n' "$3" >"$2"
        chmod "$1" "$2"
    fi
}

systemd_running() { [ "$STAGING" = 0 ] && [ -d /run/systemd/system ]; }
user_exists() { getent passwd "$SERVICE_USER" >/dev/null 2>&1; }

# install -d / install -m with ownership, or without it (deferred) in a staging root.
make_dir() {  # make_dir MODE OWNER GROUP DIR
    if [ "$STAGING" = 1 ]; then
        run install -d -m "$1" "$ROOT$4"
        [ "$2:$3" = "root:root" ] ||
            defer "staging root (tmpfiles.d sets it on first boot)" chown "$2:$3" "$4"
    else
        run install -d -m "$1" -o "$2" -g "$3" "$4"
    fi
}
put_file() {  # put_file MODE OWNER GROUP SRC DEST
    if [ "$STAGING" = 1 ]; then
        run install -m "$1" "$4" "$ROOT$5"
        [ "$2:$3" = "root:root" ] ||
            defer "staging root (tmpfiles.d sets it on first boot)" chown "$2:$3" "$5"
    else
        run install -m "$1" -o "$2" -g "$3" "$4" "$5"
    fi
}

# --- preflight ------------------------------------------------------------------------------
[ "$DRY_RUN" = 1 ] && info "dry run: printing actions only, nothing is changed"
[ "$STAGING" = 1 ] && info "staging root: $ROOT"
if [ "$STAGING" = 0 ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or use --root DIR / --dry-run)"
fi
for f in systemd/camera-service.service systemd/mediamtx.service \
         systemd/camera-service.sysusers.conf systemd/camera-service.tmpfiles.conf; do
    [ -f "$REPO/$f" ] || die "missing $REPO/$f"
done
[ -f "$CONFIG_SRC" ] || die "missing initial config $CONFIG_SRC (see --config-src)"

VERSION=$(sed -n 's/^__version__ *= *"\(.*\)".*/\1/p' "$REPO/camera_service/__init__.py")
[ -n "$VERSION" ] || die "cannot read __version__ from $REPO/camera_service/__init__.py"
info "camera-service $VERSION from $REPO"

if [ "$NO_VENV" = 0 ]; then
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        [ "$DRY_RUN" = 1 ] || die "$PYTHON missing or older than 3.11 (see --python)"
        info "warning: $PYTHON missing or older than 3.11"
    fi
    [ -z "$WHEELS" ] || [ -d "$WHEELS" ] || die "wheelhouse $WHEELS is not a directory"
fi

if [ "$STAGING" = 1 ] && [ "$DRY_RUN" = 0 ]; then
    mkdir -p "$ROOT"
fi

# --- 1. sysusers.d / tmpfiles.d / modules-load.d ---------------------------------------------
for d in "$(dirname "$SYSUSERS_FILE")" "$(dirname "$TMPFILES_FILE")" \
         "$(dirname "$MODULES_FILE")" "$UNIT_DIR"; do
    run install -d -m 0755 "$ROOT$d"
done
run install -m 0644 "$REPO/systemd/camera-service.sysusers.conf" "$ROOT$SYSUSERS_FILE"
run install -m 0644 "$REPO/systemd/camera-service.tmpfiles.conf" "$ROOT$TMPFILES_FILE"
# DeviceAllow=char-video4linux resolves the major from /proc/devices when the unit starts, so
# videodev must be loaded even when no camera is plugged in at boot.
write_line 0644 "$ROOT$MODULES_FILE" videodev

# --- 2. user --------------------------------------------------------------------------------
if [ "$STAGING" = 1 ]; then
    defer "staging root (systemd-sysusers creates it on first boot)" \
        systemd-sysusers "$SYSUSERS_FILE"
elif user_exists && id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx video; then
    info "user $SERVICE_USER exists (in group video)"
elif command -v systemd-sysusers >/dev/null 2>&1; then
    run systemd-sysusers "$SYSUSERS_FILE"
else
    user_exists || run useradd --system --user-group --no-create-home \
        --home-dir "$DATA_DIR" --shell /usr/sbin/nologin \
        --comment "camera-service daemon" "$SERVICE_USER"
    getent group video >/dev/null 2>&1 || run groupadd --system video
    run usermod -a -G video "$SERVICE_USER"
fi

# --- 3. directories (same owners and modes as the tmpfiles.d file) ---------------------------
make_dir 0750 root "$SERVICE_GROUP" "$CONFIG_DIR"
make_dir 0750 "$SERVICE_USER" "$SERVICE_GROUP" "$DATA_DIR"
for sub in recordings snapshots state; do
    make_dir 0750 "$SERVICE_USER" "$SERVICE_GROUP" "$DATA_DIR/$sub"
done
make_dir 0755 root root "$PREFIX"

# --- 4. config (never overwritten) ----------------------------------------------------------
if [ -e "$ROOT$CONFIG_FILE" ]; then
    info "keeping existing $CONFIG_FILE (new defaults: $CONFIG_SRC)"
else
    put_file 0640 root "$SERVICE_GROUP" "$CONFIG_SRC" "$CONFIG_FILE"
fi

# --- 5. virtualenv release --------------------------------------------------------------------
if [ "$NO_VENV" = 1 ]; then
    info "skipping the virtualenv (--no-venv)"
else
    RELEASE=$VERSION
    if [ "$REINSTALL" = 1 ]; then
        RELEASE=$VERSION-$(date +%Y%m%d%H%M%S)
        n=1
        while [ -e "$ROOT$PREFIX/releases/$RELEASE" ]; do
            RELEASE=$VERSION-$(date +%Y%m%d%H%M%S)-$n
            n=$((n + 1))
        done
    fi
    REL_DIR=$PREFIX/releases/$RELEASE
    if [ -f "$ROOT$REL_DIR/.installed" ]; then
        info "release $RELEASE already installed (use --reinstall to rebuild)"
    else
        if [ -e "$ROOT$REL_DIR" ]; then
            run rm -rf "$ROOT$REL_DIR"  # left over by a failed run
        fi
        run install -d -m 0755 "$ROOT$PREFIX/releases"
        run "$PYTHON" -m venv "$ROOT$REL_DIR"
        pip_args=(--no-cache-dir --disable-pip-version-check --quiet)
        [ -n "$WHEELS" ] && pip_args+=(--no-index --find-links "$WHEELS")
        # Build from a clean copy: an in-tree build would leave build/ in the checkout, and a
        # stale build/lib can put deleted modules into the wheel.
        src=${TMPDIR:-/tmp}/camera-service-src.XXXXXX
        if [ "$DRY_RUN" = 0 ]; then
            src=$(mktemp -d "$src")
            CLEANUP=$src
        fi
        copy="tar -C $(quote "$REPO") ${SOURCE_EXCLUDES[*]} -cf - . | tar -C $(quote "$src") -xf -"
        echo "+ $copy"
        [ "$DRY_RUN" = 1 ] || eval "$copy"
        run "$ROOT$REL_DIR/bin/pip" install "${pip_args[@]}" "$src"
        run rm -rf "$src"
        if [ "$STAGING" = 1 ]; then
            # Scripts carry the staging path in their #! lines; point them at the final path.
            info "relocating scripts in $ROOT$REL_DIR/bin to $REL_DIR"
            if [ "$DRY_RUN" = 0 ]; then
                grep -rlIF -- "$ROOT$REL_DIR" "$ROOT$REL_DIR/bin" | while IFS= read -r f; do
                    sed -i "s|$ROOT$REL_DIR|$REL_DIR|g" "$f"
                done
            fi
        fi
        run touch "$ROOT$REL_DIR/.installed"
    fi
    # Switch atomically: a new symlink renamed over the old one.
    run ln -sfn "releases/$RELEASE" "$ROOT$PREFIX/venv.new"
    run mv -T "$ROOT$PREFIX/venv.new" "$ROOT$PREFIX/venv"
    # Keep the newest $KEEP_RELEASES releases (the current one always) for rollback.
    if [ -d "$ROOT$PREFIX/releases" ]; then
        find "$ROOT$PREFIX/releases" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %f\n' |
            sort -rn | cut -d' ' -f2- | tail -n +$((KEEP_RELEASES + 1)) |
            while IFS= read -r old; do
                [ "$old" = "$RELEASE" ] || run rm -rf "$ROOT$PREFIX/releases/$old"
            done
    fi
fi
run install -d -m 0755 "$ROOT$PREFIX/docs"
if [ -f "$REPO/docs/deployment.md" ]; then
    run install -m 0644 "$REPO/docs/deployment.md" "$ROOT$PREFIX/docs/deployment.md"
fi

# --- 6. units -------------------------------------------------------------------------------
run install -m 0644 "$REPO/systemd/camera-service.service" "$ROOT$UNIT_DIR/camera-service.service"
run install -m 0644 "$REPO/systemd/mediamtx.service" "$ROOT$UNIT_DIR/mediamtx.service"
[ -x "$ROOT$MEDIAMTX_BIN" ] ||
    info "warning: $MEDIAMTX_BIN not found; mediamtx.service stays inactive until it is installed"

# --- 7. systemd -----------------------------------------------------------------------------
units=(camera-service.service mediamtx.service)
if systemd_running; then
    if command -v modprobe >/dev/null 2>&1; then
        run modprobe -q videodev || info "warning: could not load videodev"
    fi
    run systemctl daemon-reload
    run systemctl enable "${units[@]}"
    if [ "$START_NOW" = 1 ]; then
        run systemctl restart "${units[@]}"
    else
        info "enabled; start or restart with: systemctl restart ${units[*]}"
    fi
else
    why="systemd is not running here"
    [ "$STAGING" = 1 ] && why="staging root"
    defer "$why" systemctl daemon-reload
    defer "$why" systemctl enable "${units[@]}"
    [ "$START_NOW" = 1 ] && defer "$why" systemctl restart "${units[@]}"
fi
info "done"
