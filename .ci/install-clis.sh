#!/usr/bin/env bash
# Installs the pinned agent CLIs that tutti's adapter tests drive, from the npm registry only, into a cache
# folder (about 1.5 GB), and prints the folder holding their executables. Re-running it is quick: a package
# whose installed package.json already has the pinned version is not fetched again.
#
#   DIR=${TUTTI_CLI_CACHE:-$HOME/.cache/tutti/clis}   # the cache; the CLIs end up in $DIR/node_modules/.bin
set -euo pipefail

DIR="${TUTTI_CLI_CACHE:-$HOME/.cache/tutti/clis}"
PINNED=(
  "@anthropic-ai/claude-code@2.1.332"
  "@openai/codex@0.169.0"
  "@google/gemini-cli@0.61.0"
  "@mariozechner/pi-coding-agent@0.73.1"
  "opencode-ai@1.18.33"
)

# The version an installed package reports, or nothing.
installed_version() {
  local manifest="$DIR/node_modules/$1/package.json"
  [ -f "$manifest" ] || return 0
  node -e 'process.stdout.write(String(require(process.argv[1]).version || ""))' "$manifest"
}

missing=()
for spec in "${PINNED[@]}"; do
  name="${spec%@*}"
  want="${spec##*@}"
  have="$(installed_version "$name")"
  [ "$have" = "$want" ] || missing+=("$spec")
done

# Claude's postinstall links the native binary over a small stub; an install made with --ignore-scripts, or
# interrupted, leaves the stub, so treat that as missing too.
claude_exe="$DIR/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
if [ -f "$claude_exe" ] && [ "$(stat -c %s "$claude_exe")" -lt 1000000 ]; then
  missing+=("@anthropic-ai/claude-code@2.1.332")
fi

if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || printf '{"private":true}\n' >"$DIR/package.json"
  echo "installing into $DIR: ${missing[*]}" >&2
  # All pinned packages at once, so npm keeps every one of them in the tree it writes.
  npm i --prefix "$DIR" --no-audit --no-fund --loglevel=error "${PINNED[@]}" >&2
fi

echo "$DIR/node_modules/.bin"
