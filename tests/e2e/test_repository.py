"""The repository stands alone: a clone with nothing beside it builds, tests and demos. Every
file git tracks is checked for paths that reach outside it."""

import re
import subprocess

from conftest import ROOT, SAMPLES

# A relative path that climbs (resolved from the file's folder, or from the folder a shell line
# `cd`s into), an absolute path into a home or work directory, or the variable that once pointed
# at samples outside the repository.
RELATIVE = re.compile(r"(?<![\w./])((?:\.\./)+[\w.$()-]*)")
CD = re.compile(r"\bcd ([\w./-]+) &&")
ABSOLUTE = re.compile(r"(?<![\w.])/(?:work|home|Users)/\w|\bSHARED_DATA\b")


def outside(name, line):
    base = ROOT / name
    base = ROOT / CD.search(line).group(1) if CD.search(line) else base.parent
    for climb in RELATIVE.findall(line):
        if not (base / climb).resolve().is_relative_to(ROOT.resolve()):
            return True
    return bool(ABSOLUTE.search(line))


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file() or name.startswith("tests/data/"):
            continue
        try:
            yield name, path.read_text()
        except UnicodeDecodeError:
            continue


def test_nothing_names_a_path_outside_the_repository():
    found = []
    for name, text in tracked_text_files():
        # A shell line continued with a backslash is one line (its `cd` applies to the rest).
        for number, line in enumerate(text.replace("\\\n", " ").splitlines(), 1):
            if outside(name, line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)


def test_the_samples_are_in_the_repository_with_their_provenance():
    assert SAMPLES.resolve().is_relative_to(ROOT.resolve())
    sources = (SAMPLES / "SOURCES.md").read_text()
    assert "CC BY 4.0" in sources
    csvs = sorted(p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*.csv"))
    assert len(csvs) == 3
    for csv in csvs:
        assert csv in sources, f"{csv} has no provenance in SOURCES.md"


def consumer_imports():
    """{module: modules it names through `crate::`}, for every file of consumer/src (comments
    left out: a doc link is not an import)."""
    src = ROOT / "consumer" / "src"
    files = {}
    for path in sorted(src.rglob("*.rs")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "mod":
            parts = parts[:-1]
        if parts in (("lib",), ("main",)) or parts[0] == "bin":
            continue
        files["::".join(parts)] = path
    imports = {}
    for module, path in files.items():
        code = "\n".join(line for line in path.read_text().splitlines() if not line.strip().startswith("//"))
        named = set()
        for target in re.findall(r"crate::([a-z_0-9]+(?:::[a-z_0-9]+)*)", code):
            parts = target.split("::")
            # The longest prefix that is a module: `crate::commit::Checkpoint` names `commit`.
            found = next(("::".join(parts[:i]) for i in range(len(parts), 0, -1) if "::".join(parts[:i]) in files), None)
            if found and found != module and not module.startswith(found + "::"):
                named.add(found)
        imports[module] = named
    return imports


def cycles(graph):
    def reaches(start, goal):
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False
    return sorted((a, b) for a in graph for b in graph[a] if reaches(b, a))


def test_the_consumers_imports_point_one_way():
    imports = consumer_imports()
    assert len(imports) > 30 and "core::batch" in imports
    assert cycles(imports) == [], "files that import each other, directly or through others"
    folders = {}
    for module, named in imports.items():
        for target in named:
            if target.split("::")[0] != module.split("::")[0]:
                folders.setdefault(module.split("::")[0], set()).add(target.split("::")[0])
    assert cycles(folders) == [], f"folders that import each other: {folders}"
    # The pure core imports no other layer; the commit protocol none above it.
    assert folders.get("core", set()) == set(), folders.get("core")
    assert folders.get("commit", set()) <= {"core", "lake", "progress"}, folders.get("commit")
