#!/usr/bin/env python3
"""Clang's thread-safety analysis over every C++ source of a build.

Reads <build>/compile_commands.json (the release build's, written by CMake),
compiles each translation unit again with clang++ -fsyntax-only and only
-Wthread-safety, as errors, and fails when any member marked GUARDED_BY is
touched without its mutex held, a REQUIRES function is called without it, or
a lock is leaked (src/base/thread_annotations.h, src/base/mutex.h). Nothing is
written but the report.

Only translation units that read src/base/thread_annotations.h when the build
compiled them (ninja's deps log) are checked, and those the log does not know
(not built yet): the analysis has nothing to check in code without the
attributes, and every attribute comes through that header's macros (this
script fails if a source spells one out itself). A unit whose includes
changed since the build is rebuilt, and its deps with it, before this runs
(the target depends on the build). Unit tests (*_test.cc) are not checked:
they cannot reach a class's guarded members, and the headers they include
are checked through the module sources that include them too.

Usage: check_thread_safety.py [build-dir] [jobs]
"""
import json
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

CHECK_FLAGS = ["-fsyntax-only", "-Wno-everything", "-Wthread-safety", "-Werror=thread-safety"]


def clang_command(entry):
    """The entry's compile command for clang++, without outputs or warnings."""
    args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out = ["clang++"]
    skip = False
    for a in args[1:]:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MT", "-MF"):
            skip = True
            continue
        if a in ("-c", "-MD") or a.startswith("-W"):
            continue
        out.append(a)
    return out + CHECK_FLAGS


ANNOTATIONS = "base/thread_annotations.h"
RAW_ATTRIBUTE = re.compile(r"__attribute__\s*\(\(\s*(guarded_by|pt_guarded_by|capability|"
                           r"(requires|acquire|release|try_acquire|assert)_(shared_)?capability|"
                           r"locks_excluded|scoped_lockable|lockable)")


def raw_attributes(root):
    """Sources that spell a thread-safety attribute out, not through the
    header's macros (they would escape the selection below)."""
    found = []
    for top in ("src", "tests", "bench"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in files:
                path = os.path.join(dirpath, name)
                if not name.endswith((".h", ".cc")) or path.endswith(ANNOTATIONS):
                    continue
                with open(path, errors="replace") as f:
                    if RAW_ATTRIBUTE.search(f.read()):
                        found.append(path)
    return found


def units_without_annotations(build):
    """The sources ninja's deps log shows compiled without reading
    thread_annotations.h (absolute paths)."""
    r = subprocess.run(["ninja", "-C", build, "-t", "deps"], capture_output=True, text=True)
    if r.returncode != 0:
        return set()
    without = set()
    for block in r.stdout.split("\n\n"):
        lines = [l.strip() for l in block.strip().splitlines()]
        if len(lines) < 2 or "(VALID)" not in lines[0]:
            continue
        deps = lines[1:]
        source = os.path.normpath(os.path.join(build, deps[0]))
        if source.endswith(".cc") and not any(d.endswith(ANNOTATIONS) for d in deps):
            without.add(source)
    return without


def check(entry):
    cmd = clang_command(entry)
    r = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    raw = raw_attributes(root)
    if raw:
        for path in raw:
            print(f"check-thread-safety: FAILED {os.path.relpath(path)} spells out a thread-safety "
                  f"attribute; use the macros of src/{ANNOTATIONS}")
        return 1
    with open(os.path.join(build, "compile_commands.json")) as f:
        everything = [e for e in json.load(f) if e["file"].endswith(".cc")]
    without = units_without_annotations(build)
    entries = [e for e in everything
               if os.path.normpath(os.path.join(e["directory"], e["file"])) not in without and
               not e["file"].endswith("_test.cc")]
    failed = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, rc, err in pool.map(check, entries):
            if rc != 0:
                failed += 1
                sys.stderr.write(err)
                print(f"check-thread-safety: FAILED {os.path.relpath(path)}")
    if failed:
        print(f"check-thread-safety: {failed} of {len(entries)} files failed")
        return 1
    print(f"check-thread-safety: {len(entries)} files checked, no violation "
          f"(of {len(everything)}: {len(without)} never read the annotations, the rest are unit "
          f"tests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
