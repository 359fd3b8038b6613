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
