"""gwctl key hash and gwctl key check, no master needed: the printed entry
is the SHA-256 of the key (checked against Python's hashlib) and loads with
the gateway's own keys-file loader (gwctl key check); the key comes from an
argument or from standard input (one line; not echoed on a terminal);
keys the gateway would refuse are refused; etc/gen-keys.sh writes the
demo's key and its entry in the same format."""

import hashlib
import os
import pty
import re
import select
import shutil
import subprocess
import time

from conftest import GWCTL, REPO, need_binary

ENTRY_RE = re.compile(r'^\{ sha256 = "([0-9a-f]{64})"; consumer = "(.*?)";'
                      r'(?: tier = "(.*?)";)?(?: scopes = \[(.*)\];)? \}$')


def gwctl(*args, stdin=None, timeout=15):
    need_binary(GWCTL)
    return subprocess.run([GWCTL] + list(args), capture_output=True,
                          timeout=timeout, input=stdin,
                          stdin=None if stdin is not None
                          else subprocess.DEVNULL)


def entry(*args, stdin=None):
    r = gwctl("key", "hash", *args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.count("\n") == 1 and out.endswith("\n"), out
    return out[:-1]


def refused(r, text):
    assert r.returncode != 0, r.stdout
    assert r.stdout == b""
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and text in lines[0], r.stderr
    return lines[0]


def keys_file(tmp, *entries, name="keys.conf"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write("keys = (\n  " + ",\n  ".join(entries) + "\n);\n")
    return path


def check(path):
    return gwctl("key", "check", path)


def sha(key):
    return hashlib.sha256(key).hexdigest()


def test_hash_from_argument_and_stdin_agree_with_sha256(tmp):
    key = "k3y_-.~!" + "x" * 40
    by_arg = entry(key)
    by_stdin = entry(stdin=(key + "\n").encode())
    assert by_arg == by_stdin
    assert by_arg == ('{ sha256 = "%s"; consumer = "CHANGE-ME"; }'
                      % sha(key.encode()))
    # No trailing newline, and a CRLF line, read the same key.
    assert entry(stdin=key.encode()) == by_arg
    assert entry(stdin=(key + "\r\n").encode()) == by_arg
    # The key itself is never printed.
    assert key not in by_arg


def test_printed_entries_load_and_keep_their_fields(tmp):
    e1 = entry("--consumer", "acme", "--tier", "paid",
               "--scope", "orders:read", "--scope", "orders:write",
               stdin=b"first-key\n")
    e2 = entry("second-key", "--consumer", 'Big "Q" \\ Co')
    e3 = entry(stdin=b"third-key\n")
    m = ENTRY_RE.match(e1)
    assert m and m.group(1) == sha(b"first-key")
    assert m.group(2) == "acme" and m.group(3) == "paid"
    assert m.group(4) == '"orders:read", "orders:write"'
    path = keys_file(tmp, e1, e2, e3)
    r = check(path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "%s: ok (3 keys)\n" % path
    # A key hashed twice makes a file the loader refuses.
    path = keys_file(tmp, e1, e3, entry("first-key", "--consumer", "b"))
    refused(check(path), "%s:4: keys #3: sha256 is already the key of "
            "line 2" % path)


def test_stdin_refusals():
    refused(gwctl("key", "hash", stdin=b""), "no key on standard input")
    refused(gwctl("key", "hash", stdin=b"\n"), "the key is empty")
    refused(gwctl("key", "hash", stdin=b"one\ntwo\n"), "more than one line")
    refused(gwctl("key", "hash", stdin=b"a b\n"), "outside visible ASCII")
    refused(gwctl("key", "hash", stdin=b"caf\xc3\xa9\n"),
            "outside visible ASCII")
    refused(gwctl("key", "hash", stdin=b"k" * 4097 + b"\n"),
            "longer than 4096 bytes")
    refused(gwctl("key", "hash", stdin=b"k" * 10000), "longer than 4096")
    longest = entry(stdin=b"k" * 4096 + b"\n")
    assert sha(b"k" * 4096) in longest


def test_argument_refusals():
    refused(gwctl("key", "hash", ""), "the key is empty")
    refused(gwctl("key", "hash", "a\tb"), "outside visible ASCII")
    refused(gwctl("key", "hash", "k" * 4097), "longer than 4096 bytes")
    refused(gwctl("key", "hash", "a", "b"), "takes one KEY")
    refused(gwctl("key", "hash", "--", "-starts-with-dash"),
            "goes on standard input")
    refused(gwctl("key", "hash", "k", "--consumer"), "needs a value")
    refused(gwctl("key", "hash", "k", "--consumer", ""), "is empty")
    refused(gwctl("key", "hash", "k", "--consumer", "x" * 65),
            "longer than 64 bytes")
    refused(gwctl("key", "hash", "k", "--consumer", " x"), "space")
    refused(gwctl("key", "hash", "k", "--tier", "a\nb"),
            "outside printable ASCII")
    refused(gwctl("key", "hash", "k", "--scope", "a b"), "scope token")
    refused(gwctl("key", "hash", "k", "--scope", "a", "--scope", "a"),
            "given twice")
    refused(gwctl("key"), "key needs 'hash' or 'check'")
    refused(gwctl("key", "hash", "k", "--secret", "x"), "unknown option")


def test_check_reports_the_loader_errors(tmp):
    path = os.path.join(tmp, "bad.conf")
    with open(path, "w") as f:
        f.write('keys = (\n  { sha256 = "%s"; consumer = "a"; },\n'
                '  { sha256 = "abc"; consumer = "b"; }\n);\n'
                % sha(b"one"))
    refused(check(path), "%s:3: keys #2: sha256 must be 64 hex digits"
            % path)
    refused(check(os.path.join(tmp, "none.conf")), "cannot open")
    refused(gwctl("key", "check"), "takes one FILE")
    path = keys_file(tmp)
    with open(path, "w") as f:
        f.write("keys = ();\n")
    assert check(path).stdout.decode() == "%s: ok (0 keys)\n" % path


def test_key_from_a_terminal_is_not_echoed():
    """On a terminal gwctl prompts on stderr and turns echo off, so the
    key does not appear on screen."""
    need_binary(GWCTL)
    master, slave = pty.openpty()
    p = subprocess.Popen([GWCTL, "key", "hash"], stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    try:
        # Echo goes off before the prompt; input typed earlier would be
        # flushed, so wait for the prompt first.
        err = b""
        deadline = time.monotonic() + 10
        while b"API key: " not in err and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stderr], [], [], 0.5)
            if ready:
                chunk = os.read(p.stderr.fileno(), 256)
                if not chunk:
                    break
                err += chunk
        assert b"API key: " in err, err
        os.write(master, b"tty-secret-key\n")
        out, _ = p.communicate(timeout=10)
        assert p.returncode == 0
        assert out.decode() == ('{ sha256 = "%s"; consumer = "CHANGE-ME"; }\n'
                                % sha(b"tty-secret-key"))
        echoed = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 1024)
            except OSError:         # the slave side closed
                break
            if not chunk:
                break
            echoed += chunk
        assert b"tty-secret-key" not in echoed, echoed
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
        os.close(master)


def run_gen_keys(d):
    r = subprocess.run(["bash", os.path.join(d, "gen-keys.sh")],
                       capture_output=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_gen_keys_writes_the_demo_key_and_its_entry(tmp):
    """The demo's api_keys.conf holds the line gwctl key hash prints for
    the demo key (consumer demo-partner, tier paid, scope payments:read),
    loads, survives a re-run unchanged, and is rewritten (the key kept)
    when it is from an older format."""
    shutil.copy(os.path.join(REPO, "etc", "gen-keys.sh"), tmp)
    run_gen_keys(tmp)
    txt = os.path.join(tmp, "keys", "demo-api-key.txt")
    conf = os.path.join(tmp, "keys", "api_keys.conf")
    key = read(txt)
    assert key.endswith(b"\n") and key.count(b"\n") == 1
    want = entry("--consumer", "demo-partner", "--tier", "paid",
                 "--scope", "payments:read", stdin=key)
    assert sha(key[:-1]) in want
    assert "  %s\n" % want in read(conf).decode()
    assert check(conf).returncode == 0

    before = read(conf)
    assert "api_keys" not in run_gen_keys(tmp)
    assert read(conf) == before and read(txt) == key

    old = ('keys = (\n  { sha256 = "%s"; consumer = "acme"; tier = "paid"; '
           '}\n);\n' % sha(key[:-1]))
    with open(conf, "w") as f:
        f.write(old)
    assert "api_keys.conf.old" in run_gen_keys(tmp)
    assert read(conf) == before and read(txt) == key
    assert read(conf + ".old").decode() == old

    # A lost key file: a new key, and an entry for it.
    os.unlink(txt)
    run_gen_keys(tmp)
    key2 = read(txt)
    assert key2 != key
    assert sha(key2[:-1]) in read(conf).decode()
    assert sha(key[:-1]) not in read(conf).decode()
