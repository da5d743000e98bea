#!/usr/bin/env python3
"""The build's dependency direction, checked (make check-includes).

Every file under src/ belongs to one CMake target. A file may include a
project header "<module>/..." only if <module> is its own module or one its
target links:
  - a module's sources (silo_module): its own folder and the silo_* modules
    named in its DEPS, directly. DEPS is the only list of what a module may
    use (DESIGN section 8), so a module used but not named is an error even
    when another dependency happens to bring it in;
  - tests, the CLI and other executables: the modules their target links,
    with everything those modules link in turn (a test sees what it links).
A file under src/ that no target lists is an error too. Exit status 1 and one
line per violation, or 0 and a summary.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def commands(text):
    """(name, [args]) for every CMake command call, comments removed."""
    text = re.sub(r"#[^\n]*", "", text)
    for m in re.finditer(r"\b([A-Za-z_]+)\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        yield m.group(1), text[m.end():i - 1].split()


def section(args, name, names=("SOURCES", "DEPS", "PRIVATE", "PUBLIC", "STATIC")):
    out, on = [], False
    for a in args:
        if a in names:
            on = a == name
        elif on:
            out.append(a)
    return out


def load_targets(cmake_text):
    """target -> {"sources": [...], "links": [...], "module": name or None}."""
    targets = {}
    for cmd, args in commands(cmake_text):
        if not args:
            continue
        if cmd == "silo_module":
            targets["silo_" + args[0]] = {"sources": section(args, "SOURCES"),
                                          "links": section(args, "DEPS"), "module": args[0]}
        elif cmd == "silo_test":
            targets[args[0]] = {"sources": section(args, "SOURCES"),
                                "links": section(args, "DEPS"), "module": None}
        elif cmd in ("add_executable", "add_library"):
            sources = [a for a in args[1:] if a not in ("STATIC",) and "/" in a]
            targets.setdefault(args[0], {"sources": [], "links": [], "module": None})
            targets[args[0]]["sources"] += sources
        elif cmd == "target_link_libraries" and args[0] in targets:
            targets[args[0]]["links"] += [a for a in args[1:] if a not in ("PRIVATE", "PUBLIC")]
    return targets


def closure(targets, start):
    seen, todo = set(), list(start)
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        todo += targets.get(t, {}).get("links", [])
    return seen


def module_of(target_name):
    return target_name[len("silo_"):] if target_name.startswith("silo_") else None


def main():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        targets = load_targets(f.read())
    owner = {}
    for name, t in targets.items():
        for s in t["sources"]:
            owner[s] = name
    problems, checked = [], 0
    for dirpath, _, files in os.walk(os.path.join(ROOT, "src")):
        for fn in sorted(files):
            if not fn.endswith((".cc", ".h")):
                continue
            path = os.path.relpath(os.path.join(dirpath, fn), ROOT)
            folder = path.split("/")[1]
            source = path if fn.endswith(".cc") else None
            if source is not None and source not in owner:
                problems.append("%s: no target in CMakeLists.txt lists this file" % path)
                continue
            target = owner.get(source) if source else "silo_" + folder
            t = targets.get(target)
            if t is None:
                # A header of a folder with no module (cli): checked with its sources.
                continue
            if t["module"] is not None:
                allowed = {t["module"]} | {module_of(d) for d in t["links"] if module_of(d)}
                rule = "%s's DEPS" % target
            else:
                allowed = {module_of(d) for d in closure(targets, t["links"]) if module_of(d)}
                allowed.add(folder)
                rule = "what %s links" % target
            # A header is held to the rule of its folder's module.
            with open(os.path.join(ROOT, path)) as f:
                text = f.read()
            for m in INCLUDE.finditer(text):
                checked += 1
                used = m.group(1)
                if used not in allowed and os.path.isdir(os.path.join(ROOT, "src", used)):
                    line = text.count("\n", 0, m.start()) + 1
                    problems.append("%s:%d: includes %s/, which is not in %s" %
                                    (path, line, used, rule))
    for p in problems:
        print(p)
    if problems:
        print("check-includes: %d violation(s)" % len(problems))
        return 1
    print("check-includes: %d project includes agree with CMakeLists.txt" % checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
