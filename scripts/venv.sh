# Sourced by scripts/run-bot, scripts/run-tests and .ci/run: finds a Python >= 3.12,
# creates .venv beside the project and (re)installs the project whenever pyproject.toml changes.
# shellcheck shell=bash

project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${NOTIFIER_VENV:-$project_root/.venv}"

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

ensure_venv() {
    local python stamp want
    if [ ! -x "$venv_dir/bin/python" ] || ! _is_py312 "$venv_dir/bin/python"; then
        python="$(find_python)" || {
            echo "error: no Python >= 3.12 found (tried python3.12, python3.13, python3 and pyenv's versions)" >&2
            return 1
        }
        echo "creating $venv_dir with $python ($("$python" --version 2>&1))" >&2
        rm -rf "$venv_dir"
        "$python" -m venv "$venv_dir" || return 1
    fi
    stamp="$venv_dir/.installed"
    want="$(cat "$project_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "installing the project and its dependencies into $venv_dir" >&2
        local log="$venv_dir/install.log"
        if ! { "$venv_dir/bin/python" -m pip install --upgrade pip &&
            "$venv_dir/bin/python" -m pip install -e "$project_root[dev]"; } >"$log" 2>&1; then
            tail -n 40 "$log" >&2
            echo "error: installing into $venv_dir failed (full log: $log)" >&2
            return 1
        fi
        echo "$want" >"$stamp"
    fi
}
