#!/usr/bin/env python3
"""check-layers: check every #include of the tree against the layers.

    python3 tools/check-layers.py [ROOT]

Reads the #include lines of the .c and .h files under master/, worker/,
policies/, shm/ and tools/ of ROOT (default: this repository) and reports
each one that runs the wrong way as

    FILE:LINE: includes TARGET: RULE

Exits 0 when every include follows the rules, 1 when one does not, 2 on a
usage error. The rules are README.md's "Design" section, as tables below:
edit the tables, not the code, when a layer changes.
"""

import os
import re
import sys

# The shared vocabulary: leaf headers any layer may include. Each may
# include only system headers and other vocabulary headers.
VOCABULARY = {
    "master/config.h": "the typed config, method names, CIDR matching",
    "master/log.h": "logging",
    "master/msg.h": "msgpack framing",
    "worker/http1.h": "the HTTP/1.1 parser's types",
}

# What each directory may include besides the vocabulary. "*" = anything.
# Everything else under master/ is a supervisor internal (master state,
# listeners, supervision, reload, upgrade, control, notify): only master/
# includes it.
MAY_INCLUDE = {
    "master":   "*",
    "tools":    ("tools", "policies"),   # gwctl key, gwctl token: the gateway's own key code
    "worker":   ("worker", "policies", "shm"),
    "policies": ("policies", "shm"),
    "shm":      ("shm",),
}

# Vocabulary headers a layer must not use all the same, and why.
NOT_EVEN = {
    ("shm", "master/config.h"):
        "shm/ takes plain parameters (path, size, workers), not the config",
    ("policies", "master/msg.h"):
        "the control server builds gwctl replies from what policies "
        "expose; policies do not pack msgpack",
}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def layer_of(rel):
    """The top directory of a tree-relative path."""
    return rel.split("/", 1)[0]


def allowed_text(layer):
    may = MAY_INCLUDE[layer]
    if may == "*":
        return "anything"
    return ", ".join(d + "/" for d in may) + ", the vocabulary"


def resolve(root, src_rel, quote, name):
    """The tree-relative path an include names, or None for a system
    header. Quoted names are looked up beside the including file, then
    from the root (the build's -I.); <...> names only from the root."""
    candidates = []
    if quote == '"':
        candidates.append(os.path.join(os.path.dirname(src_rel), name))
    candidates.append(name)
    for c in candidates:
        rel = os.path.normpath(c)
        if os.path.isfile(os.path.join(root, rel)):
            return rel.replace(os.sep, "/")
    if quote == '"':
        # Not in the tree: say where it would have been.
        return os.path.normpath(candidates[0]).replace(os.sep, "/")
    return None


def check_include(root, src_rel, quote, name):
    """The rule an include breaks, or None."""
    src_layer = layer_of(src_rel)
    target = resolve(root, src_rel, quote, name)
    if target is None:
        return None, None
    if target.startswith("../") or not os.path.isfile(
            os.path.join(root, target)):
        return target, "no such file in the tree"
    if src_rel in VOCABULARY and target not in VOCABULARY:
        return target, ("%s is shared vocabulary: it may include only "
                        "system headers and other vocabulary headers "
                        "(%s)" % (src_rel, ", ".join(sorted(VOCABULARY))))
    key = (src_layer, target)
    if key in NOT_EVEN:
        return target, NOT_EVEN[key]
    may = MAY_INCLUDE[src_layer]
    if may == "*" or target in VOCABULARY:
        return target, None
    tlayer = layer_of(target)
    if tlayer in may:
        return target, None
    if tlayer == "master":
        return target, ("a supervisor internal: only master/ includes it "
                        "(%s/ may include %s)"
                        % (src_layer, allowed_text(src_layer)))
    return target, ("%s/ may include %s, not %s/"
                    % (src_layer, allowed_text(src_layer), tlayer))


def sources(root):
    for layer in sorted(MAY_INCLUDE):
        top = os.path.join(root, layer)
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            for f in sorted(filenames):
                if f.endswith((".c", ".h")):
                    full = os.path.join(dirpath, f)
                    yield os.path.relpath(full, root).replace(os.sep, "/")


def check(root):
    """Every violation as "FILE:LINE: includes TARGET: RULE", and how many
    includes were read."""
    bad, n = [], 0
    for rel in sources(root):
        with open(os.path.join(root, rel), encoding="utf-8",
                  errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if m is None:
                    continue
                n += 1
                target, rule = check_include(root, rel, m.group(1),
                                             m.group(2))
                if rule is not None:
                    bad.append("%s:%d: includes %s: %s"
                               % (rel, lineno, target, rule))
    return bad, n


def main(argv):
    if len(argv) > 2 or (len(argv) == 2 and argv[1].startswith("-")):
        sys.stderr.write("usage: check-layers.py [ROOT]\n")
        return 2
    root = argv[1] if len(argv) == 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..")
    root = os.path.abspath(root)
    if not os.path.isdir(os.path.join(root, "master")):
        sys.stderr.write("check-layers: %s has no master/ directory\n"
                         % root)
        return 2
    bad, n = check(root)
    for b in bad:
        print(b)
    print("check-layers: %d includes read, %d against the layers"
          % (n, len(bad)), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
