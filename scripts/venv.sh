# Sourced by scripts/run-bot, scripts/run-tests and .ci/run: finds a Python >= 3.12, creates the
# project's virtual environment and (re)installs the project whenever pyproject.toml changes.
#
# Two environments, so what a server runs holds nothing only the tests need:
#   .venv-bot  `ensure_venv bot`: the project and its dependencies (scripts/run-bot, systemd)
#   .venv      `ensure_venv dev`: the same plus the dev extras, pytest, hypothesis, ruff, mypy...
#              (scripts/run-tests, .ci/run, the benchmarks)
# NOTIFIER_VENV names another folder for either. A folder with the dev extras serves the bot too.
# shellcheck shell=bash

project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

_is_py312() {
    "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1
}

find_python() {
    local candidate root dir
    for candidate in python3.12 python3.13 python3.14 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && _is_py312 "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    # pyenv shims fail unless a version is selected, so look in pyenv's versions directly.
    root="$(pyenv root 2>/dev/null || true)"
    for root in "$root" "${PYENV_ROOT:-}" "$HOME/.pyenv"; do
        [ -n "$root" ] && [ -d "$root/versions" ] || continue
        for dir in $(ls -1 "$root/versions" 2>/dev/null | sort -V); do
            candidate="$root/versions/$dir/bin/python3"
            if [ -x "$candidate" ] && _is_py312 "$candidate"; then
                echo "$candidate"
                return 0
            fi
        done
    done
    return 1
}

# What `pip install` is given for each kind of environment.
install_target() {
    case "$1" in
        bot) echo "$project_root" ;;
        dev) echo "$project_root[dev]" ;;
        *) echo "error: unknown environment kind '$1' (bot or dev)" >&2; return 1 ;;
    esac
}

# ensure_venv bot|dev: sets venv_dir to a ready environment of that kind.
ensure_venv() {
    local kind="$1" python stamp hash target
    install_target "$kind" >/dev/null || return 1
    if [ "$kind" = bot ]; then
        venv_dir="${NOTIFIER_VENV:-$project_root/.venv-bot}"
    else
        venv_dir="${NOTIFIER_VENV:-$project_root/.venv}"
    fi
    if [ ! -x "$venv_dir/bin/python" ] || ! _is_py312 "$venv_dir/bin/python"; then
        python="$(find_python)" || {
            echo "error: no Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv's versions)" >&2
            return 1
        }
        echo "creating $venv_dir with $python ($("$python" --version 2>&1))" >&2
        rm -rf "$venv_dir"
        "$python" -m venv "$venv_dir" || return 1
    fi
    # The stamp is the kind installed and pyproject.toml's hash: a change of either reinstalls.
    stamp="$venv_dir/.installed"
    hash="$(sha256sum <"$project_root/pyproject.toml" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$kind $hash" ] ||
        [ "$(cat "$stamp")" = "dev $hash" ]; }; then
        return 0
    fi
    if [ -f "$stamp" ] && [ "$(cut -d' ' -f1 "$stamp")" = dev ]; then
        kind=dev # a development environment stays one when the bot is run from it
    fi
    target="$(install_target "$kind")"
    echo "installing the project ($kind) and its dependencies into $venv_dir" >&2
    local log="$venv_dir/install.log"
    if ! {
        "$venv_dir/bin/python" -m pip install --upgrade pip &&
            _forget_old_name &&
            "$venv_dir/bin/python" -m pip install -e "$target"
    } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: installing into $venv_dir failed (full log: $log)" >&2
        return 1
    fi
    echo "$kind $hash" >"$stamp"
}

# The distribution was called `notifier` before it became `nextcord-notifier`; an environment made
# then still lists this checkout under the old name. Only that one is removed.
_forget_old_name() {
    if "$venv_dir/bin/python" -m pip show notifier 2>/dev/null |
        grep -qxF "Editable project location: $project_root"; then
        "$venv_dir/bin/python" -m pip uninstall -y notifier
    fi
    return 0
}
