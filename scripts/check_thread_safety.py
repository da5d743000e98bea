#!/usr/bin/env python3
"""Clang's thread-safety analysis over every C++ source of a build.

Reads <build>/compile_commands.json (the release build's, written by CMake),
compiles each translation unit again with clang++ -fsyntax-only and only
-Wthread-safety, as errors, and fails when any member marked GUARDED_BY is
touched without its mutex held, a REQUIRES function is called without it, or
a lock is leaked (src/base/thread_annotations.h, src/base/mutex.h). Nothing is
written but the report.

Usage: check_thread_safety.py [build-dir] [jobs]
"""
import json
import os
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


def check(entry):
    cmd = clang_command(entry)
    r = subprocess.run(cmd, cwd=entry["directory"], capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if e["file"].endswith(".cc")]
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
    print(f"check-thread-safety: {len(entries)} files checked, no violation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
