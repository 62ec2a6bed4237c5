"""Reads an app's Python metadata for bin/compile and bin/release, so the shell parses nothing.

Usage: python3 -I inspect.py <command> ARGS...
  version BUILD_DIR              checks runtime.txt / .python-version / requires-python
  requirements BUILD_DIR OUT     prints what to install: a requirements file path, "." or nothing
  missing PIP_LOG                names the packages pip could not find
  web BUILD_DIR                  prints the default web command, or nothing
Results go to stdout, one a line. Problems are one line each on stdout with exit code 1 (compile
prefixes them with " !     "); exit code 2 means this helper itself failed.
"""

import json
import os
import re
import sys
import tomllib

SYSTEM = sys.version_info


def fail(*problems):
    for p in problems:
        print(p)
    sys.exit(1)


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_pyproject(build_dir):
    text = read_text(os.path.join(build_dir, "pyproject.toml"))
    if text is None:
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        fail(f"pyproject.toml is not valid TOML: {e}")


def system_version():
    return f"{SYSTEM.major}.{SYSTEM.minor}.{SYSTEM.micro}"


def requested_version(build_dir):
    """(file, wanted major, minor, micro or None), or None when the app does not ask."""
    runtime = read_text(os.path.join(build_dir, "runtime.txt"))
    if runtime is not None and runtime.strip():
        value = runtime.strip()
        m = re.fullmatch(r"(?:python-)?(\d+)\.(\d+)(?:\.(\d+))?", value)
        if not m:
            fail(f"runtime.txt: cannot read {value!r} (expected python-3.11 or python-3.11.2)")
        return ("runtime.txt", int(m[1]), int(m[2]), int(m[3]) if m[3] else None)
    pyver = read_text(os.path.join(build_dir, ".python-version"))
    if pyver is not None:
        lines = [line.strip() for line in pyver.splitlines() if line.strip() and not line.strip().startswith("#")]
        if lines and lines[0] != "system":
            m = re.fullmatch(r"(?:python-?)?(\d+)\.(\d+)(?:\.(\d+))?", lines[0])
            if not m:
                fail(f".python-version: cannot read {lines[0]!r} (expected 3.11 or 3.11.2)")
            return (".python-version", int(m[1]), int(m[2]), int(m[3]) if m[3] else None)
    return None


def cmd_version(build_dir):
    have = system_version()
    notes = []
    wanted = requested_version(build_dir)
    if wanted:
        source, major, minor, micro = wanted
        asked = f"{major}.{minor}" + (f".{micro}" if micro is not None else "")
        if (major, minor) != (SYSTEM.major, SYSTEM.minor):
            fail(f"{source} asks for Python {asked}, but the available Python is {have} "
                 f"(only the system's {sys.executable} is installed on Quai's hosts): "
                 f"ask for python-{SYSTEM.major}.{SYSTEM.minor} instead")
        if micro is not None and micro != SYSTEM.micro:
            notes.append(f"{source} asks for Python {asked}; using {have}, the system's (same minor version)")
    pyproject = read_pyproject(build_dir) or {}
    requires = pyproject.get("project", {}).get("requires-python")
    if isinstance(requires, str) and requires.strip():
        try:
            from pip._vendor.packaging.specifiers import InvalidSpecifier, SpecifierSet
        except ImportError:
            notes.append("requires-python not checked (pip's packaging module is not available)")
        else:
            try:
                ok = have in SpecifierSet(requires)
            except InvalidSpecifier:
                fail(f"pyproject.toml: requires-python {requires!r} is not a valid version specifier")
            if not ok:
                fail(f"pyproject.toml requires-python {requires!r}, but the available Python is {have} "
                     f"(only the system's {sys.executable} is installed on Quai's hosts)")
    print(f"Python {have} ({sys.executable})")
    for n in notes:
        print(f"note: {n}")


NETWORK_ONLY = re.compile(r"(^|\s|@\s*)(git|hg|svn|bzr)\+|(^|\s|@\s*)(https?|ftp)://", re.I)


def check_requirement_lines(path, seen):
    """Rejects requirements that only the network could satisfy (VCS and URL requirements)."""
    path = os.path.normpath(path)
    if path in seen:
        return
    seen.add(path)
    text = read_text(path)
    if text is None:
        fail(f"{os.path.basename(path)}: file not found")
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        nested = re.match(r"^(-r|--requirement|-c|--constraint)[\s=]+(\S+)", line)
        if nested:
            check_requirement_lines(os.path.join(os.path.dirname(path), nested[2]), seen)
            continue
        links = re.match(r"^(-f|--find-links)[\s=]+(\S+)", line)
        if links and re.match(r"(https?|ftp)://", links[2], re.I):
            fail(f"{os.path.basename(path)}: {line!r} needs the network, which Quai builds do not have: "
                 "put the wheels into vendor/wheels instead")
        if line.startswith("-"):
            continue  # other options are pip's business; indexes are off (--no-index)
        if NETWORK_ONLY.search(line):
            fail(f"{os.path.basename(path)}: {line!r} needs the network, which Quai builds do not have: "
                 "build it as a wheel into vendor/wheels (pip wheel -w vendor/wheels ...) and require it by name")


def pipfile_lock_requirements(build_dir):
    try:
        with open(os.path.join(build_dir, "Pipfile.lock"), encoding="utf-8") as f:
            lock = json.load(f)
    except json.JSONDecodeError as e:
        fail(f"Pipfile.lock is not valid JSON: {e}")
    lines = []
    for name, spec in sorted((lock.get("default") or {}).items()):
        if not isinstance(spec, dict):
            continue
        if any(k in spec for k in ("git", "hg", "svn", "bzr", "file")):
            fail(f"Pipfile.lock: {name} comes from a VCS or URL, which Quai builds cannot reach: vendor it as a wheel")
        if "path" in spec:
            line = ("-e " if spec.get("editable") else "") + spec["path"]
        else:
            line = name + spec.get("version", "")
            extras = spec.get("extras")
            if extras:
                line = f"{name}[{','.join(extras)}]{spec.get('version', '')}"
        if spec.get("markers"):
            line += f" ; {spec['markers']}"
        lines.append(line)
    return lines


def cmd_requirements(build_dir, out):
    req = os.path.join(build_dir, "requirements.txt")
    if os.path.isfile(req):
        check_requirement_lines(req, set())
        print(req)
        return
    lines = None
    if os.path.isfile(os.path.join(build_dir, "Pipfile.lock")):
        lines = pipfile_lock_requirements(build_dir)
    elif os.path.isfile(os.path.join(build_dir, "Pipfile")):
        fail("Pipfile found without Pipfile.lock: commit Pipfile.lock (pipenv lock) or a requirements.txt")
    else:
        pyproject = read_pyproject(build_dir)
        if pyproject is not None:
            deps = pyproject.get("project", {}).get("dependencies")
            if isinstance(deps, list):
                lines = [str(d) for d in deps]
            elif "poetry" in pyproject.get("tool", {}) and not os.path.isfile(os.path.join(build_dir, "setup.py")):
                fail("pyproject.toml declares its dependencies for Poetry only: commit a requirements.txt "
                     "(poetry export -f requirements.txt -o requirements.txt)")
    if lines is None:
        if os.path.isfile(os.path.join(build_dir, "setup.py")):
            print(".")
        return
    with open(out, "w", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
    check_requirement_lines(out, set())
    print(out)


def cmd_missing(log_file):
    text = read_text(log_file) or ""
    found = {}
    for m in re.finditer(r"Could not find a version that satisfies the requirement (\S+)(?: \(from versions: ([^)]*)\))?", text):
        found.setdefault(m[1], m[2] or "none")
    for m in re.finditer(r"No matching distribution found for (\S+)", text):
        found.setdefault(m[1], "none")
    if not found:
        fail("pip install failed (see its output above)")
    problems = []
    for requirement, versions in found.items():
        name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        label = name[0] if name else requirement
        problems.append(f"Package {label} ({requirement}) is not available offline; versions found: {versions}")
    fail(*problems)


IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def wsgi_callable(path):
    """'application' unless the file only defines 'app' (Flask style)."""
    text = read_text(path) or ""
    if re.search(r"^(application\s*[:=]|def\s+application\b)", text, re.M):
        return "application"
    if re.search(r"^(app\s*[:=]|def\s+app\b)", text, re.M):
        return "app"
    return "application"


def wsgi_target(build_dir):
    """module:callable of the app's WSGI entry point, or None."""
    for entry in sorted(os.listdir(build_dir)):
        wsgi = os.path.join(build_dir, entry, "wsgi.py")
        if re.fullmatch(IDENT, entry) and os.path.isfile(wsgi) and (
            os.path.isfile(os.path.join(build_dir, entry, "settings.py"))
            or os.path.isdir(os.path.join(build_dir, entry, "settings"))
        ):
            return f"{entry}.wsgi:{wsgi_callable(wsgi)}"  # Django project package
    for module in ("wsgi", "app"):
        path = os.path.join(build_dir, f"{module}.py")
        if os.path.isfile(path):
            return f"{module}:{wsgi_callable(path)}"
    return None


def cmd_web(build_dir):
    target = wsgi_target(build_dir)
    if target is None:
        return
    bin_dir = os.path.join(build_dir, ".venv", "bin")
    if os.path.exists(os.path.join(bin_dir, "gunicorn")):
        print(f"gunicorn {target} --bind 127.0.0.1:$PORT")
    elif os.path.exists(os.path.join(bin_dir, "waitress-serve")):
        print(f"waitress-serve --listen=127.0.0.1:$PORT {target}")


def main(argv):
    commands = {
        "version": (cmd_version, 1),
        "requirements": (cmd_requirements, 2),
        "missing": (cmd_missing, 1),
        "web": (cmd_web, 1),
    }
    if len(argv) < 2 or argv[1] not in commands or len(argv) - 2 != commands[argv[1]][1]:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    fn, _ = commands[argv[1]]
    try:
        fn(*argv[2:])
    except Exception as e:  # a bug here must not read as the app's fault
        print(f"inspect.py {argv[1]}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
