#!/bin/sh
# install.sh: install DataKitchen's DataOps TestGen with dk-installer.
#
#   curl -fsSL https://raw.githubusercontent.com/DataKitchen/dk-installer/main/install.sh | sh
#   curl -fsSL .../install.sh | sh -s -- --no-analytics --port 8601
#   sh install.sh [install options]                        (from a clone)
#
# What it does, in order (one small function each):
#   find_python      DK_PYTHON, else the first of python3.13 ... python3.9, python3 that actually runs
#                    and is Python 3.9 or newer (TestGen's own Python is the installer's business).
#   check_venv       the venv/ensurepip modules the installer needs once, to build its runtime.
#   local_installer  beside a dk_installer.py (a clone, or both files saved by hand)? Use that file,
#                    with no download, only if it can be trusted: a regular file that you own and
#                    nobody else can write, in folders (up to /) owned by you or root that nobody
#                    else can write (unless sticky, like /tmp), and matching the
#                    dk_installer.py.sha256 beside it. Otherwise say why in one line and download.
#   fetch            otherwise download dk_installer.py and dk_installer.py.sha256 from
#                    DK_INSTALLER_BASE_URL with curl (or GNU wget): https only (plain http only for
#                    127.0.0.1 and localhost), TLS 1.2 or newer, timeouts, 3 retries.
#   verify_checksum  the SHA-256 must match, or nothing runs (a missing checksum or a missing hashing
#                    tool is a failure too).
#   install_copy     copy the installer, downloaded or from a clone alike, to
#                    DK_INSTALLER_HOME/dk_installer.py, so that `start`, `stop`, `status` and
#                    `uninstall` stay one command away and never depend on a clone or a temp file.
#   run_installer    run that copy: `<python> -I dk_installer.py install "$@"`, with
#                    DK_INSTALLER_LAUNCHED_BY=install.sh and stdin detached from the pipe unless it is
#                    a terminal. Its exit code is this script's exit code. The closing hint names
#                    `dk-installer` when the installer's launcher is what that command runs on PATH.
#
# The current folder is never trusted: every Python this script starts is isolated (-I; the probe
# of a candidate, which may be older than 3.4, uses -E -s), and all but the installer itself start
# in a private empty folder. The installer runs in the current folder (relative paths in its
# options mean what you typed), where -I keeps Python from importing anything.
#
# Environment: DK_PYTHON, DK_INSTALLER_BASE_URL, DK_INSTALLER_HOME (default
# ${XDG_DATA_HOME:-$HOME/.local/share}/dk-installer), NO_COLOR. Analytics opt-outs (DO_NOT_TRACK,
# DK_INSTALLER_ANALYTICS, --no-analytics) are the installer's and reach it unchanged; this script
# sends nothing itself. It never uses sudo and never edits shell start-up files.
#
# POSIX sh (dash, bash, busybox ash). The whole script is one { ... } group that closes on the
# last line: the shell reads a group whole before it runs any of it, so a download cut short at
# any byte (even right after the word `main`) is a syntax error and runs nothing at all.

{
set -u

default_base_url() {
    printf '%s\n' "https://raw.githubusercontent.com/DataKitchen/dk-installer/main"
}

# --- Output ---------------------------------------------------------------------------------------

# Colour only when stdout is a terminal and NO_COLOR is unset (and, for errors, stderr is one too).
setup_colours() {
    BOLD="" RESET="" RED="" YELLOW="" ERR_RESET=""
    [ -t 1 ] && [ -z "${NO_COLOR+set}" ] || return 0
    BOLD=$(printf '\033[1m') RESET=$(printf '\033[0m')
    [ -t 2 ] || return 0
    RED=$(printf '\033[31m') YELLOW=$(printf '\033[33m') ERR_RESET=$RESET
}

say() {
    printf '%s\n' "$*"
}

warn() {
    printf '%swarning:%s %s\n' "$YELLOW" "$ERR_RESET" "$*" >&2
}

err() {
    printf '%serror:%s %s\n' "$RED" "$ERR_RESET" "$*" >&2
}

# An indented follow-up line under an error (how to fix it).
hint() {
    printf '  %s\n' "$*" >&2
}

# Quote a word for a command line the user may copy, only when it needs quoting.
shell_quote() {
    case $1 in
        "" | *[!A-Za-z0-9_./:=+,@%-]*)
            printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")" ;;
        *) printf '%s' "$1" ;;
    esac
}

# --- Platform -------------------------------------------------------------------------------------

# apt, dnf, brew, apk or unknown; $1 is the os-release file.
os_family() {
    if [ "$(uname -s 2>/dev/null)" = Darwin ]; then
        echo brew
        return
    fi
    os_ids=$(sed -n 's/^ID\(_LIKE\)\{0,1\}=//p' "$1" 2>/dev/null | tr -d '"' | tr '\n' ' ')
    for os_id in $os_ids; do
        case $os_id in
            debian | ubuntu | linuxmint | pop | raspbian) echo apt; return ;;
            fedora | rhel | centos | rocky | almalinux | amzn | ol) echo dnf; return ;;
            alpine) echo apk; return ;;
        esac
    done
    echo unknown
}

python_install_hint() {
    case $(os_family /etc/os-release) in
        apt) hint "Install it with: sudo apt-get install python3 python3-venv" ;;
        dnf) hint "Install it with: sudo dnf install python3" ;;
        brew) hint "Install it with: brew install python@3.12" ;;
        apk) hint "Install it with: apk add python3 (as root)" ;;
        *) hint "Install Python 3.9 or newer with your package manager or from https://www.python.org/downloads/" ;;
    esac
    hint "Or point DK_PYTHON at one: ... | env DK_PYTHON=/path/to/python3 sh"
}

# --- Python ---------------------------------------------------------------------------------------

# in_private_dir COMMAND [ARG...]: run COMMAND from PRIVATE_DIR (an empty folder of ours), stdin
# /dev/null, so that a Python it starts finds nothing of the current folder's to import.
in_private_dir() {
    (cd "$PRIVATE_DIR" && exec "$@") </dev/null
}

# absolute_command NAME: NAME as an absolute path (a bare name looked up on PATH), so that it
# still names the same program from PRIVATE_DIR.
absolute_command() {
    case $1 in
        /*) printf '%s\n' "$1" ;;
        */*) printf '%s\n' "$(pwd -P)/$1" ;;
        *)
            ac_path=$(command -v "$1" 2>/dev/null) || return 1
            case $ac_path in
                /*) printf '%s\n' "$ac_path" ;;
                *) printf '%s\n' "$(pwd -P)/$ac_path" ;; # a relative PATH entry
            esac ;;
    esac
}

# Prints "3.11.7" for a Python that actually runs (pyenv shims for absent versions exit 127).
# $1 is absolute. -E -s rather than -I: this probe also meets Pythons older than 3.4.
python_version() {
    pv_out=$(in_private_dir "$1" -E -s -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) || return 1
    case $pv_out in
        [0-9]*.[0-9]*.[0-9]*) printf '%s\n' "$pv_out" ;;
        *) return 1 ;;
    esac
}

# True for 3.9 or newer.
version_ok() {
    vo_major=${1%%.*}
    vo_rest=${1#*.}
    vo_minor=${vo_rest%%.*}
    case $vo_major$vo_minor in *[!0-9]*) return 1 ;; esac
    [ "$vo_major" -gt 3 ] || { [ "$vo_major" -eq 3 ] && [ "$vo_minor" -ge 9 ]; }
}

# Sets PYTHON (as the user would type it), PYTHON_PATH (the absolute path this script runs) and
# PYTHON_VERSION.
find_python() {
    if [ -n "${DK_PYTHON:-}" ]; then
        if ! PYTHON_PATH=$(absolute_command "$DK_PYTHON") \
            || ! PYTHON_VERSION=$(python_version "$PYTHON_PATH"); then
            err "DK_PYTHON=$DK_PYTHON does not run as a Python interpreter."
            python_install_hint
            return 1
        fi
        if ! version_ok "$PYTHON_VERSION"; then
            err "dk-installer needs Python 3.9 or newer; DK_PYTHON=$DK_PYTHON is Python $PYTHON_VERSION."
            python_install_hint
            return 1
        fi
        PYTHON=$DK_PYTHON
        return 0
    fi
    fp_too_old=""
    for fp_candidate in python3.13 python3.12 python3.11 python3.10 python3.9 python3; do
        fp_path=$(absolute_command "$fp_candidate") || continue
        fp_version=$(python_version "$fp_path") || continue
        if version_ok "$fp_version"; then
            PYTHON=$fp_candidate
            PYTHON_PATH=$fp_path
            PYTHON_VERSION=$fp_version
            return 0
        fi
        fp_too_old="$fp_too_old, $fp_candidate is Python $fp_version"
    done
    if [ -n "$fp_too_old" ]; then
        err "dk-installer needs Python 3.9 or newer; ${fp_too_old#, }."
    else
        err "dk-installer needs Python 3.9 or newer, and none was found (looked for python3.13 ... python3.9 and python3 on PATH)."
    fi
    python_install_hint
    return 1
}

# The installer builds its own small runtime venv on first use, which needs venv and ensurepip
# (Debian and Ubuntu ship them separately). Not needed when the runtime's packages are already
# importable or the runtime (DK_INSTALLER_HOME/runtime, see Paths.runtime) already exists.
check_venv() {
    if in_private_dir "$PYTHON_PATH" -I -c 'import venv, ensurepip' >/dev/null 2>&1 \
        || in_private_dir "$PYTHON_PATH" -I -c 'import click, requests, distro' >/dev/null 2>&1 \
        || [ -x "$1/runtime/bin/python" ]; then
        return 0
    fi
    cv_minor=$(printf '%s' "$PYTHON_VERSION" | cut -d. -f1,2)
    err "Python's venv module is not usable with $PYTHON (Python $PYTHON_VERSION); dk-installer needs it once, to prepare its runtime."
    case $(os_family /etc/os-release) in
        apt) hint "Install it with: sudo apt-get install python3-venv    (or: sudo apt-get install python$cv_minor-venv)" ;;
        dnf) hint "Install it with: sudo dnf install python3" ;;
        *) hint "Install the venv and ensurepip modules for Python $cv_minor, or use another Python with DK_PYTHON." ;;
    esac
    return 1
}

# --- Getting dk_installer.py ----------------------------------------------------------------------

# Same rule as installer_home() in dk_installer.py, made absolute.
installer_home() {
    if [ -n "${DK_INSTALLER_HOME:-}" ]; then
        ih_home=$DK_INSTALLER_HOME
    elif [ -n "${XDG_DATA_HOME:-}" ]; then
        ih_home=$XDG_DATA_HOME/dk-installer
    elif [ -n "${HOME:-}" ]; then
        ih_home=$HOME/.local/share/dk-installer
    else
        err "HOME is not set; set DK_INSTALLER_HOME to the directory dk-installer should use."
        return 1
    fi
    case $ih_home in
        /*) ;;
        *) ih_home=$(pwd -P)/$ih_home ;; # as the installer's os.path.abspath sees it
    esac
    printf '%s\n' "$ih_home"
}

# path_owner_mode PATH: sets PO_MODE (ls's mode string, drwxr-xr-x) and PO_UID, for PATH itself
# (a symbolic link is not followed).
path_owner_mode() {
    po_line=$(ls -ldn "$1" 2>/dev/null) || return 1
    read -r PO_MODE po_links PO_UID po_rest <<EOF
$po_line
EOF
    case $PO_UID in "" | *[!0-9]*) return 1 ;; esac
    [ -n "$po_links$po_rest" ]
}

# True when PO_MODE lets a user other than the owner write: group or other write permission. A
# folder's sticky bit (/tmp) keeps others from renaming or deleting what they do not own, so a
# sticky folder only counts if its owner is not trusted (checked by the caller).
writable_by_others() {
    case $PO_MODE in
        d????????[tT]*) return 1 ;;
        ?????w* | ????????w*) return 0 ;;
    esac
    return 1
}

# local_installer_problem DIR: prints why DIR/dk_installer.py cannot be trusted, or nothing (and
# fails) when it can: a regular file (no symbolic link) owned by the invoking user and writable by
# nobody else; DIR and each folder above it owned by that user or root and writable by nobody else
# (or sticky), so no other user can swap the file between this check and its use; and a
# dk_installer.py.sha256 beside it that it matches.
local_installer_problem() {
    lp_file=$1/dk_installer.py
    if [ -L "$lp_file" ]; then
        echo "it is a symbolic link"
        return 0
    fi
    if [ ! -f "$lp_file" ]; then
        echo "it is not a regular file"
        return 0
    fi
    if ! lp_uid=$(id -u 2>/dev/null) || ! path_owner_mode "$lp_file"; then
        echo "could not tell who owns it (id or ls failed)"
        return 0
    fi
    if [ "$PO_UID" != "$lp_uid" ]; then
        echo "it belongs to another user (uid $PO_UID), not to you (uid $lp_uid)"
        return 0
    fi
    if writable_by_others; then
        echo "other users can write to it (mode $PO_MODE)"
        return 0
    fi
    lp_dir=$1
    while :; do
        if ! path_owner_mode "$lp_dir"; then
            echo "could not tell who owns the folder $lp_dir"
            return 0
        fi
        if [ "$PO_UID" != "$lp_uid" ] && [ "$PO_UID" != 0 ]; then
            echo "its folder $lp_dir belongs to another user (uid $PO_UID), who could replace it"
            return 0
        fi
        if writable_by_others; then
            echo "other users can write to its folder $lp_dir (mode $PO_MODE) and replace it"
            return 0
        fi
        [ "$lp_dir" = / ] && break
        lp_dir=${lp_dir%/*}
        lp_dir=${lp_dir:-/}
    done
    if [ ! -f "$1/dk_installer.py.sha256" ]; then
        echo "there is no dk_installer.py.sha256 beside it to check it against"
        return 0
    fi
    check_sha256 "$lp_file" "$1/dk_installer.py.sha256"
    case $? in
        0) return 1 ;;
        2) echo "dk_installer.py.sha256 beside it is not a SHA-256 value" ;;
        3) echo "dk_installer.py.sha256 beside it is for '$vc_name', not dk_installer.py" ;;
        4) echo "no SHA-256 tool (sha256sum, shasum or openssl) was found to check it" ;;
        *) echo "it does not match dk_installer.py.sha256 beside it (expected $vc_expected, got $vc_actual)" ;;
    esac
    return 0
}

# The dk_installer.py beside this script when it runs from a file (sh install.sh) and passes
# local_installer_problem; prints its path. A file that is there but fails is named in one warning
# line and not used: the installer is downloaded instead. Piped into sh, $0 is the shell's name
# (sh, /bin/sh, dash...), which never ends in .sh.
local_installer() {
    case $0 in *.sh) ;; *) return 1 ;; esac
    [ -f "$0" ] || return 1
    case $0 in
        */*) li_dir=${0%/*} ;;
        *) li_dir=. ;;
    esac
    [ -e "$li_dir/dk_installer.py" ] || [ -L "$li_dir/dk_installer.py" ] || return 1
    li_dir=$(cd "$li_dir" && pwd -P) || return 1
    if li_problem=$(local_installer_problem "$li_dir"); then
        warn "Not using $li_dir/dk_installer.py beside install.sh: $li_problem; downloading it instead."
        return 1
    fi
    printf '%s\n' "$li_dir/dk_installer.py"
}

# https:// anywhere; http:// only for 127.0.0.1, localhost and [::1] (a local mirror, the tests).
check_url() {
    case $1 in
        https://*) return 0 ;;
        http://*)
            cu_authority=${1#http://}
            cu_authority=${cu_authority%%/*}
            case $cu_authority in
                127.0.0.1 | 127.0.0.1:* | localhost | localhost:* | "[::1]" | "[::1]:"*)
                    cu_port=${cu_authority#127.0.0.1}
                    cu_port=${cu_port#localhost}
                    cu_port=${cu_port#"[::1]"}
                    case ${cu_port#:} in *[!0-9]*) ;; *) return 0 ;; esac ;;
            esac ;;
    esac
    err "Refusing to download from $1: only https:// URLs are allowed (plain http only for 127.0.0.1 and localhost)."
    return 1
}

# Sets DOWNLOADER to curl or wget. BusyBox wget cannot be told to require TLS 1.2, so it does not count.
find_downloader() {
    if command -v curl >/dev/null 2>&1; then
        DOWNLOADER=curl
    elif command -v wget >/dev/null 2>&1 && wget --version 2>/dev/null | grep -q 'GNU Wget'; then
        DOWNLOADER=wget
    else
        err "Neither curl nor GNU wget was found; one is needed to download dk_installer.py."
        case $(os_family /etc/os-release) in
            apt) hint "Install curl with: sudo apt-get install curl" ;;
            dnf) hint "Install curl with: sudo dnf install curl" ;;
            brew) hint "Install curl with: brew install curl" ;;
            apk) hint "Install curl with: apk add curl (as root)" ;;
            *) hint "Install curl with your package manager." ;;
        esac
        hint "Or clone https://github.com/DataKitchen/dk-installer and run: sh install.sh"
        return 1
    fi
}

# fetch URL FILE
fetch() {
    case $1 in
        https://*) fe_proto="=https" ;;
        *) fe_proto="=http,https" ;; # check_url allowed it: a local mirror
    esac
    if [ "$DOWNLOADER" = curl ]; then
        curl --fail --silent --show-error --location --proto "$fe_proto" --proto-redir =https \
            --tlsv1.2 --connect-timeout 15 --max-time 300 --retry 3 --output "$2" "$1"
    else
        # GNU wget cannot keep a redirect on https (--https-only only applies to recursive
        # downloads), so it follows none. A total time limit comes from timeout(1) when present.
        fe_timeout=""
        command -v timeout >/dev/null 2>&1 && fe_timeout="timeout 300"
        # shellcheck disable=SC2086 # fe_timeout is empty or two words
        $fe_timeout wget --quiet --https-only --secure-protocol=TLSv1_2 --max-redirect=0 \
            --connect-timeout=15 --read-timeout=60 --tries=4 --waitretry=1 \
            --output-document="$2" "$1"
    fi
}

# Prints the SHA-256 of a file with whichever tool exists; fails without one.
sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then
        so_out=$(sha256sum "$1") || return 1
        so_out=${so_out%% *}
    elif command -v shasum >/dev/null 2>&1; then
        so_out=$(shasum -a 256 "$1") || return 1
        so_out=${so_out%% *}
    elif command -v openssl >/dev/null 2>&1; then
        so_out=$(openssl dgst -sha256 "$1") || return 1 # "SHA2-256(file)= <hex>"
        so_out=${so_out##* }
    else
        return 1
    fi
    printf '%s\n' "$so_out" | tr 'A-F' 'a-f'
}

# check_sha256 FILE CHECKSUM_FILE: CHECKSUM_FILE is "<hex>  dk_installer.py" (sha256sum's format)
# or a bare hex. Returns 0 when FILE matches; 2 when CHECKSUM_FILE holds no SHA-256 value, 3 when it
# names another file, 4 without a hashing tool, 5 on a mismatch. Sets vc_expected, vc_name, vc_actual.
check_sha256() {
    vc_actual=""
    vc_line=$(tr -d '\r' 2>/dev/null <"$2" | sed -n '/[^[:space:]]/{p;q;}')
    read -r vc_expected vc_name <<EOF
$vc_line
EOF
    vc_expected=$(printf '%s' "$vc_expected" | tr 'A-F' 'a-f')
    vc_name=${vc_name:-dk_installer.py}
    if [ ${#vc_expected} -ne 64 ] || [ -n "$(printf '%s' "$vc_expected" | tr -d '0-9a-f')" ]; then
        return 2
    fi
    case $vc_name in
        dk_installer.py | "*dk_installer.py" | ./dk_installer.py) ;;
        *) return 3 ;;
    esac
    vc_actual=$(sha256_of "$1") || return 4
    [ "$vc_actual" = "$vc_expected" ] || return 5
}

# verify_checksum FILE CHECKSUM_FILE: check_sha256 for a download, each failure explained.
verify_checksum() {
    check_sha256 "$1" "$2"
    case $? in
        0) return 0 ;;
        2) err "The published checksum is not a SHA-256 value; refusing to run the download." ;;
        3) err "The published checksum is for '$vc_name', not dk_installer.py; refusing to run the download." ;;
        4) err "No SHA-256 tool (sha256sum, shasum or openssl) was found to verify the download; refusing to run it." ;;
        *) err "Checksum mismatch for dk_installer.py (expected $vc_expected, got $vc_actual); refusing to run it."
           hint "The download may be incomplete or tampered with. Nothing was installed; try again later." ;;
    esac
    return 1
}

# download_installer DIR: DIR/dk_installer.py, downloaded and verified.
download_installer() {
    dl_base=${DK_INSTALLER_BASE_URL:-$(default_base_url)}
    dl_base=${dl_base%/}
    check_url "$dl_base" || return 1
    find_downloader || return 1
    say "Downloading dk_installer.py from $dl_base"
    if ! fetch "$dl_base/dk_installer.py" "$1/dk_installer.py"; then
        err "Could not download $dl_base/dk_installer.py ($DOWNLOADER failed)."
        hint "Behind a proxy? Set HTTPS_PROXY. Offline? Clone the repository and run: sh install.sh"
        return 1
    fi
    if ! fetch "$dl_base/dk_installer.py.sha256" "$1/dk_installer.py.sha256"; then
        err "Could not download the checksum $dl_base/dk_installer.py.sha256 ($DOWNLOADER failed); refusing to run an unverified installer."
        return 1
    fi
    verify_checksum "$1/dk_installer.py" "$1/dk_installer.py.sha256" || return 1
    say "Checksum verified (SHA-256 $vc_actual)."
}

# install_copy FILE HOME: HOME/dk_installer.py becomes FILE (written beside it, then renamed).
install_copy() {
    ic_target=$2/dk_installer.py
    COPY_TMP=$2/.dk_installer.py.$$.tmp
    mkdir -p "$2" 2>/dev/null && cp "$1" "$COPY_TMP" 2>/dev/null && chmod 644 "$COPY_TMP" \
        && mv -f "$COPY_TMP" "$ic_target" 2>/dev/null
    ic_status=$?
    rm -f "$COPY_TMP"
    COPY_TMP=""
    return $ic_status
}

# --- Running it -----------------------------------------------------------------------------------

# run_installer FILE [install options]: stdin stays a terminal (the installer may ask questions)
# but never the pipe this script may be arriving through. It runs in the current folder, which its
# options' relative paths refer to; -I keeps that folder (and PYTHONPATH) out of its imports.
run_installer() {
    ri_file=$1
    shift
    DK_INSTALLER_LAUNCHED_BY=install.sh
    export DK_INSTALLER_LAUNCHED_BY
    if [ -t 0 ]; then
        "$PYTHON_PATH" -I "$ri_file" install "$@"
    else
        "$PYTHON_PATH" -I "$ri_file" install "$@" </dev/null
    fi
}

# our_launcher_on_path HOME: true when `dk-installer` on PATH is the launcher the installer wrote
# for HOME, the installer's own rule for naming it in hints (our_launcher_on_path, launcher_is_ours):
# it resolves to ${XDG_BIN_HOME:-$HOME/.local/bin}/dk-installer, whose first 512 characters hold
# the launcher's marker and this HOME.
our_launcher_on_path() {
    if [ -n "${XDG_BIN_HOME:-}" ]; then
        ol_launcher=$XDG_BIN_HOME/dk-installer
    elif [ -n "${HOME:-}" ]; then
        ol_launcher=$HOME/.local/bin/dk-installer
    else
        return 1
    fi
    ol_found=$(absolute_command dk-installer) || return 1
    ol_launcher=$(absolute_command "$ol_launcher") || return 1
    in_private_dir "$PYTHON_PATH" -I -c '
import os, shlex, sys
found, launcher, home = sys.argv[1:]
try:
    with open(launcher, errors="replace") as handle:
        head = handle.read(512)
except OSError:
    sys.exit(1)
ours = "# dk-installer launcher:" in head
ours = ours and "export DK_INSTALLER_HOME=%s\n" % shlex.quote(os.path.abspath(home)) in head
sys.exit(0 if ours and os.path.realpath(found) == os.path.realpath(launcher) else 1)
' "$ol_found" "$ol_launcher" "$1" >/dev/null 2>&1
}

cleanup() {
    [ -n "${TMP_DIR:-}" ] && rm -rf "$TMP_DIR"
    [ -n "${COPY_TMP:-}" ] && rm -f "$COPY_TMP"
    return 0
}

main() {
    TMP_DIR="" COPY_TMP="" PRIVATE_DIR=""
    trap cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    setup_colours
    home=$(installer_home) || return 1
    # Ours alone (mktemp -d makes it 0700): the downloads, and an empty folder for Python to start in.
    if ! TMP_DIR=$(mktemp -d "${TMPDIR:-/tmp}/dk-installer.XXXXXX") || ! mkdir "$TMP_DIR/cwd"; then
        err "Could not create a temporary directory."
        return 1
    fi
    PRIVATE_DIR=$TMP_DIR/cwd
    find_python || return 1
    check_venv "$home" || return 1
    say "Using Python $PYTHON_VERSION ($PYTHON)."

    if source_file=$(local_installer); then
        say "Using $source_file (beside install.sh): its checksum matches, nothing to download."
    else
        download_installer "$TMP_DIR" || return 1
        source_file=$TMP_DIR/dk_installer.py
    fi

    installer=$home/dk_installer.py
    if ! install_copy "$source_file" "$home"; then
        warn "Could not save dk_installer.py in $home; running it from where it is."
        installer=$source_file
    fi

    run_installer "$installer" "$@"
    status=$?
    # The same form as the installer's own hints: `dk-installer` when that command is its launcher.
    command_line=""
    if [ "$status" -ne 0 ]; then
        :
    elif our_launcher_on_path "$home"; then
        command_line=dk-installer
    elif [ "$installer" = "$home/dk_installer.py" ]; then
        command_line="$(shell_quote "$PYTHON") $(shell_quote "$installer")"
    fi
    if [ -n "$command_line" ]; then
        say ""
        if [ "$installer" = "$home/dk_installer.py" ]; then
            say "dk-installer is saved in $(shell_quote "$home"). Manage TestGen with:"
        else
            say "Manage TestGen with:"
        fi
        say "  ${BOLD}$command_line status${RESET}    (also: start, stop, upgrade, logs, doctor, uninstall)"
    fi
    exit "$status"
}

main "$@" || exit 1
}
