"""tools/check-layers.py: it passes a tree whose includes follow the layers
and fails, naming FILE:LINE and the rule, on each include that does not.

Each test writes a small tree (or a copy of this repository's sources) in
a temporary directory and runs the script on it.
"""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SCRIPT = os.path.join(REPO, "tools", "check-layers.py")
LAYERS = ("master", "worker", "policies", "shm", "tools")


def run(root):
    p = subprocess.run([sys.executable, SCRIPT, str(root)],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout


def write(root, rel, text):
    path = os.path.join(str(root), rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# A tree with one include of every allowed kind.
GOOD = {
    "master/config.h": "#include <stdint.h>\n#include <pcre2.h>\n",
    "master/log.h": '#include "config.h"\n',
    "master/msg.h": "#include <msgpack.h>\n",
    "master/master.h": '#include "config.h"\n#include "../shm/counters.h"\n',
    "master/control.h": "#include <stddef.h>\n",
    "master/upgrade.h": "#include <sys/types.h>\n",
    "master/master.c": ('#include "master.h"\n#include "control.h"\n'
                        '#include "upgrade.h"\n#include "../worker/worker.h"\n'
                        '#include "../policies/ratelimit.h"\n'),
    "worker/http1.h": "#include <stddef.h>\n",
    "worker/worker.h": ('#include "../master/config.h"\n'
                        '#include "../master/log.h"\n'
                        '#include "../master/msg.h"\n'
                        '#include "../policies/policy.h"\n'
                        '#include "../shm/counters.h"\n#include "http1.h"\n'),
    "policies/policy.h": ('#include "../master/config.h"\n'
                          '#include "../worker/http1.h"\n'),
    "policies/ratelimit.h": ('#include "policy.h"\n'
                             '#include "../shm/bucket.h"\n'),
    "shm/counters.h": "#include <stdint.h>\n",
    "shm/bucket.h": '#include "counters.h"\n#include "../master/log.h"\n',
    "tools/gwctl.c": ('#include "master/config.h"\n#include "master/msg.h"\n'
                      '#include "demo.h"\n'),
    "tools/demo.h": "#include <stdio.h>\n",
}


@pytest.fixture
def tree(tmp_path):
    for rel, text in GOOD.items():
        write(tmp_path, rel, text)
    return tmp_path


def test_a_tree_that_follows_the_layers_passes(tree):
    rc, out = run(tree)
    assert rc == 0, out
    assert out == ""


# (file, include line appended to it, words the rule must contain)
BAD = [
    ("worker/worker.h", '#include "../master/master.h"',
     "supervisor internal"),
    ("worker/worker.h", "#include <master/master.h>", "supervisor internal"),
    ("policies/policy.h", '#include "../master/control.h"',
     "supervisor internal"),
    ("shm/bucket.h", '#include "../master/upgrade.h"',
     "supervisor internal"),
    ("tools/gwctl.c", '#include "master/master.h"', "supervisor internal"),
    ("policies/ratelimit.h", '#include "../worker/worker.h"',
     "policies/ may include policies/, shm/, the vocabulary, not worker/"),
    ("shm/bucket.h", '#include "../policies/policy.h"',
     "shm/ may include shm/, the vocabulary, not policies/"),
    ("shm/counters.h", '#include "../worker/worker.h"',
     "shm/ may include shm/, the vocabulary, not worker/"),
    ("tools/demo.h", '#include "../shm/counters.h"',
     "tools/ may include tools/, policies/, the vocabulary, not shm/"),
    ("shm/bucket.h", '#include "../master/config.h"',
     "shm/ takes plain parameters"),
    ("policies/ratelimit.h", '#include "../master/msg.h"',
     "policies do not pack msgpack"),
    ("master/log.h", '#include "master.h"', "shared vocabulary"),
    ("master/msg.h", '#include "../shm/counters.h"', "shared vocabulary"),
    ("worker/http1.h", '#include "worker.h"', "shared vocabulary"),
    ("worker/worker.h", '#include "../../outside.h"', "no such file"),
]


@pytest.mark.parametrize("rel,line,rule", BAD)
def test_an_include_against_the_layers_fails_naming_its_line(tree, rel,
                                                             line, rule):
    path = os.path.join(str(tree), rel)
    with open(path) as f:
        n = sum(1 for _ in f)
    with open(path, "a") as f:
        f.write(line + "\n")
    rc, out = run(tree)
    assert rc == 1, out
    lines = out.splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("%s:%d: includes " % (rel, n + 1)), out
    assert rule in lines[0], out


def test_a_bad_include_in_a_copy_of_this_tree_is_named(tmp_path):
    """The repository's own sources, with one include injected: the
    script reports that line on top of whatever it reported before."""
    for d in LAYERS:
        shutil.copytree(os.path.join(REPO, d), os.path.join(str(tmp_path), d),
                        ignore=shutil.ignore_patterns("*.o", "*.d"))
    _, before = run(tmp_path)
    target = os.path.join(str(tmp_path), "worker", "loop.c")
    with open(target) as f:
        n = sum(1 for _ in f)
    # At the end, so that no line reported before moves.
    with open(target, "a") as f:
        f.write('#include "../master/supervise.h"\n')
    rc, after = run(tmp_path)
    assert rc == 1, after
    new = set(after.splitlines()) - set(before.splitlines())
    assert new == {"worker/loop.c:%d: includes master/supervise.h: a "
                   "supervisor internal: only master/ includes it (worker/ "
                   "may include worker/, policies/, shm/, the vocabulary)"
                   % (n + 1)}, after


def test_an_unknown_argument_is_a_usage_error(tmp_path):
    p = subprocess.run([sys.executable, SCRIPT, "--bogus"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert "usage" in p.stderr
    rc, _ = run(tmp_path)   # no master/ there
    assert rc == 2
