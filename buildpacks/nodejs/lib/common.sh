# shellcheck shell=bash
# Output and file helpers shared by the Node.js buildpack's scripts (sourced, not run).
# Output follows the buildpack convention: "-----> Step", 7-space detail lines, " !     " errors.

topic() { printf -- '-----> %s\n' "$*"; }
info() { printf '       %s\n' "$*"; }
# Indents a command's output as detail lines. npm >= 11 warns about npm_config_nodedir, which
# the build sets for node-gyp's sake, on every run: that line is noise.
indent() { sed -u -e '/Unknown env config "nodedir"/d' -e 's/^/       /'; }
warn() { printf ' !     Warning: %s\n' "$*" >&2; }
# Prints an error (several lines allowed) and stops the build.
fail() {
  local first=1 line
  while IFS= read -r line; do
    if [[ $first == 1 ]]; then printf '\n !     %s\n' "$line" >&2; first=0; else printf ' !     %s\n' "$line" >&2; fi
  done <<<"$*"
  printf '\n' >&2
  exit 1
}

# Sets variable NAME to the time in milliseconds, from bash's own clock: no `date` process (a
# process start costs milliseconds, and a build looks at the time a dozen times).
mark() {
  local us="${EPOCHREALTIME//[!0-9]/}"
  printf -v "$1" '%s' "$((10#$us / 1000))"
}
# Sets variable NAME to the seconds elapsed since a mark, e.g. "1.234s" (no subshell: `$(...)`
# forks one).
elapsed_to() {
  local now
  mark now
  local ms=$((now - $2))
  printf -v "$1" '%d.%03ds' "$((ms / 1000))" "$((ms % 1000))"
}

# Copies the directory tree SRC into DEST (which must not exist) with hard links when SRC and
# DEST share a mount, and a plain copy otherwise (link(2) fails with EXDEV across bind mounts).
# Sets `how` to "linked" or "copied".
copy_tree() {
  local src="$1" dest="$2"
  how=linked
  if [[ ! -e $dest ]] && cp -al "$src" "$dest" 2>/dev/null; then
    :
  elif mkdir -p "$dest" && cp -al "$src/." "$dest/" 2>/dev/null; then
    :
  else
    rm -rf "$dest"
    mkdir -p "$dest"
    cp -a "$src/." "$dest/"
    how=copied
  fi
}

# Gives FILE an inode of its own, so that an in-place rewrite cannot reach a hard-linked twin:
# sed -i writes the same bytes to a new file and renames it over FILE (one process; the mode is
# kept, the modification time becomes now).
detach_file() {
  local f="$1"
  [[ -f $f && ! -L $f ]] || return 0
  sed -i -e '' "$f"
}

# Keeps the KEEP most recently used entries of DIR (by mtime) and removes the others.
keep_newest() {
  local dir="$1" keep="$2" entry n=0
  [[ -d $dir ]] || return 0
  while IFS= read -r entry; do
    n=$((n + 1))
    if ((n > keep)); then rm -rf "${dir:?}/$entry"; fi
  done < <(ls -1t "$dir")
}

# Exports the app's variables from ENV_DIR (one file per variable), except those that would
# break the build environment itself.
export_env_dir() {
  local env_dir="$1" file name
  [[ -d $env_dir ]] || return 0
  for file in "$env_dir"/*; do
    [[ -f $file ]] || continue
    name="${file##*/}"
    [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || continue
    case "$name" in
      PATH | HOME | GIT_DIR | CPATH | CPPATH | LD_PRELOAD | LD_LIBRARY_PATH | LIBRARY_PATH | BUILD_DIR | CACHE_DIR | ENV_DIR | QUAI_* | BASH_ENV | ENV | IFS | SHELLOPTS | BASHOPTS) continue ;;
    esac
    export "$name=$(cat "$file")"
  done
}
