"""Runs every fenced code block of README.md and docs/*.md as written (see scripts/test-readme).

Usage: run.py [--list] [-v] [--only [FILE:]LINE[,...]] FILE.md [FILE.md ...]
  --list   print each block's file, line, kind and how it would run; run nothing
  -v       also print what each command and program printed
  --only   run only the blocks whose opening fence is on these lines (of FILE, or of any file)

Environment (set by scripts/test-readme): RETENTION_MODULE, RETENTION_SERVER_BIN,
README_TEST_ROOT (the repository), README_TEST_NODE_MODULES.

How each kind of block runs
---------------------------
A private server on a free loopback port, in a scratch directory, started like `scripts/run`
(redis.conf.example, the module, examples/policy.json) and filled by tests/readme/fixture.py,
serves every block, file after file in the order given, each file in its own order.

- ```python: run with redis-py 8 twice, once with its default protocol (RESP3) and once with
  clients that do not choose one given RESP2 (what redis-py before 8 spoke); each must exit 0.
  tests/readme/py/sitecustomize.py points `redis.Redis()` at the private server.
- ```js: run with Node and ioredis (tests/compat/node_modules), wrapped in an async function so
  top-level `await` works as in the Node REPL (a block with `import` runs as an ES module); tests/readme/node/preload.js points `new Redis()`
  at the private server. It must not throw nor print `undefined`/`NaN` (a field that is not
  there).
- ```json: a policy (`{"rules": [...]}`), one rule object or several separated by commas; it must
  load with `CONFIG SET retention.policy-file` (then examples/policy.json is loaded back), and
  RETENTION.POLICY must then list its rules by name. An editor's settings naming JSON schemas
  (`{"json.schemas": [...]}`): every schema `url` must be a file of the repository.
- ```yaml: a Prometheus config (`rule_files`, `scrape_configs`, `global`, `alerting`) must pass
  `promtool check config`, a rules file (`groups`) `promtool check rules`.
- ```sh/bash/console/shell and unlabeled blocks with `redis-cli` lines: shell commands. With
  `$ ` prompts, prompt lines are commands and the lines after one are its output; without them,
  `redis-cli` lines are commands and other lines after one are its output (in a block without
  redis-cli every line is a command). Lines ending in `\\` continue. By program:
    redis-cli                  run with `-p <port> -e` (and `--no-raw` unless `--raw` is given,
                               as a terminal shows it): no error reply; shown output must have
                               the same shape (see below); `> file` writes the output to
                               a file of the scratch directory (a policy written so must load)
    cargo                      run in the repository (e.g. `cargo build --release`)
    prometheus-redis-exporter  started with `-web.listen-address` on a free port: its /metrics
                               must show redis_up 1, no scrape error and retention_up 1
  anything else fails: mark the block skipped if it must not run here.
- Unlabeled blocks otherwise, by their lines (`#` comment lines aside):
    lowercase directives (`loadmodule ...`, `retention.enabled yes`): redis.conf lines; a server
      must start from them (after a `loadmodule` of the module when they have none) and
      `CONFIG GET` must give each directive's value
    uppercase commands (`ACL SETUSER ...`): each must succeed on the private server (ACL users
      are put back afterwards); a line with `<placeholders>` is a synopsis: its shortest form
      (`[optional]` parts dropped, `<a|b>` -> a, other placeholders from PLACEHOLDERS below)
      must succeed
    server log lines (`# <retention> ...`): reproduced; a failed module load's policy error is
      reproduced by loading a policy built from the message, and the line must be in the log
      (the code of the policy error, `POLICY` or the older `ERR policy:`, as the line shows it)

Shown output ("runs as written" for a transcript). `...`/`…` lines are ignored. In redis-cli's
formatted replies (lines with `N)`, quotes, `(integer)`, `(nil)`) every quoted name (`"ttl_set"`,
`"passed_over"`) must be in the real reply, and the values are checked too: a name and the value
after it on the same shown line (`3) "dry_run"  4) (integer) 1`) must be a field of the real reply
(a map at any depth, RESP2 field/value pairs) with that value, and a reply shown as one value
(`(integer) 1`) must be that value. Integers must be equal, except for fields that measure time
or progress (names ending in `_ms`, `_us` or `_pct`, and `slices`), which need only be integers;
strings must be equal, except that a run of 10 or more digits in the shown string (a timestamp)
stands for any number and `…`/`...` inside it for any text; `(nil)` must be nil; a value shown
where the reply holds an array must be one of its elements. In text output
(`--raw`), a line made only of words (a heading: `GROUP KEYS NO TTL ...`, `warnings`) must be a
line of the real output, and a line starting with a plain word (`used_memory 30.27M ...`) needs a
real line starting with that word; lines starting with data (key names, `!`, numbers) are data.

Placeholders in shell and config blocks (so an example keeps the paths a user would write):
  /path/to/libredis_retention.so  -> the module under test
  /etc/redis/retention.json       -> examples/policy.json
  /usr/local/share/redis-retention/, /etc/prometheus/rules/ -> contrib/
  port 6379                       -> the private server's port

Skipping: `<!-- readme-test: skip (why) -->` as the last non-blank line before a block. A block
this runner cannot classify fails, so new blocks are always either run or deliberately skipped.
"""

import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

ROOT = os.environ.get("README_TEST_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(ROOT, "tests", "readme")
MODULE = os.environ.get("RETENTION_MODULE") or os.path.join(
    ROOT, "target", "release", "libredis_retention.so")
MODULE = os.path.abspath(MODULE)
SERVER_BIN = os.environ.get("RETENTION_SERVER_BIN") or "redis-server"
POLICY = os.path.join(ROOT, "examples", "policy.json")
CONF = os.path.join(ROOT, "redis.conf.example")
NODE_MODULES = os.environ.get("README_TEST_NODE_MODULES") or os.path.join(
    ROOT, "tests", "compat", "node_modules")

# Values for `<placeholders>` of command synopses: keys the fixture creates.
PLACEHOLDERS = {
    "prefix": "bull",
    "queue": "emails",
    "max_age": "24h",
    "max_count": "500",
    "key": "audit:2026",
    "base": "runs:active:{acme}:web",
    "id": "run-42",
    "json": '{"id":"run-42"}',
    "glob": "key:*",
    "n": "5",
    "us": "1000",
    "duration": "7d",
    "seconds": "3600",
}

SKIP_MARKER = re.compile(r"^\s*<!--\s*readme-test:\s*skip\s*(?:\((?P<why>.*)\))?\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+.-]*)[^`]*$")
SHELL_LANGS = {"sh", "bash", "shell", "console", "shell-session", "zsh"}


class BlockFailure(Exception):
    pass


class Block:
    def __init__(self, file, line, lang, lines, skip):
        self.file = file          # the Markdown file, relative to the repository
        self.line = line          # 1-based line of the opening fence
        self.lang = lang
        self.lines = lines        # content lines, fence indentation removed
        self.skip = skip          # None, or the reason given by the marker
        self.text = "\n".join(lines) + ("\n" if lines else "")
        # Names the block's scratch files (line numbers repeat across files).
        self.slug = re.sub(r"[^A-Za-z0-9]+", "-", file.removesuffix(".md")) + f"-{line}"


def parse_blocks(path):
    name = os.path.relpath(path, ROOT)
    blocks = []
    with open(path, encoding="utf-8") as f:
        md = f.read().split("\n")
    i = 0
    while i < len(md):
        m = FENCE.match(md[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = len(m.group("indent")), m.group("fence"), m.group("lang").lower()
        start = i
        content = []
        i += 1
        while i < len(md):
            close = md[i].strip()
            if close.startswith(fence[0] * len(fence)) and set(close) == {fence[0]}:
                break
            line = md[i]
            content.append(line[indent:] if line[:indent].strip() == "" else line.lstrip())
            i += 1
        else:
            raise SystemExit(f"{name}:{start + 1}: code block never closed")
        i += 1
        skip = None
        j = start - 1
        while j >= 0 and md[j].strip() == "":
            j -= 1
        if j >= 0:
            sm = SKIP_MARKER.match(md[j])
            if sm:
                skip = (sm.group("why") or "").strip()
                if not skip:
                    raise SystemExit(f"{name}:{j + 1}: a skip marker needs a reason: "
                                     "<!-- readme-test: skip (why) -->")
        blocks.append(Block(name, start + 1, lang, content, skip))
    return blocks


# ------------------------------------------------------------------------------------------
# Classification

def is_log_line(line):
    return re.match(r"^(\d+:[A-Z] .*?)?[#*.-] <[\w.-]+> ", line) is not None


def program_of(command):
    """The program a shell command runs, after leading VAR=value assignments."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    for w in words:
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            continue
        return w
    return None


def classify(block):
    """Returns (kind, description) or raises BlockFailure when the block cannot be run."""
    lang = block.lang
    body = [l for l in block.lines if l.strip()]
    if lang in ("python", "py", "python3"):
        return "python", "Python with redis-py 8 (RESP3, then RESP2)"
    if lang in ("js", "javascript", "node", "mjs", "cjs"):
        return "js", "Node with ioredis"
    if lang == "json":
        return "json", "policy: CONFIG SET retention.policy-file"
    if lang in ("yaml", "yml"):
        return "yaml", "promtool check"
    if not body:
        raise BlockFailure("empty block")
    has_redis_cli = any(re.match(r"^\s*(\$\s+)?redis-cli(\s|$)", l) for l in body)
    if lang in SHELL_LANGS or (lang in ("", "text") and has_redis_cli):
        return "shell", "shell commands"
    if lang in ("", "conf", "redis", "redis-conf"):
        meaningful = [l for l in body if not l.lstrip().startswith("#")]
        if all(is_log_line(l) for l in body):
            return "log", "server log lines: reproduced"
        if meaningful and all(re.match(r"^[a-z][a-z0-9.-]*(\s|$)", l) for l in meaningful):
            return "conf", "redis.conf lines: a server must start from them"
        if meaningful and all(re.match(r"^[A-Z][A-Z0-9._|-]*(\s|$)", l) for l in meaningful):
            if any("<" in l for l in meaningful):
                return "commands", "command synopsis: its shortest form must succeed"
            return "commands", "Redis commands: each must succeed"
    raise BlockFailure(
        f"don't know how to run a ```{lang} block starting {body[0]!r}: teach "
        "tests/readme/run.py this kind, or mark it <!-- readme-test: skip (why) -->")


# ------------------------------------------------------------------------------------------
# Servers and helpers

def free_port():
    """A free loopback port below the kernel's ephemeral range: a port the kernel may hand to
    any outgoing connection (a replica's, an exporter's) can be taken between pick and bind."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    low = low if low > 21000 else 32768
    for _ in range(200):
        port = random.randrange(20000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return True
        except Exception:
            pass
        time.sleep(step)
    return False


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Server:
    """A redis-server (or RETENTION_SERVER_BIN) on a free loopback port in its own directory."""

    def __init__(self, workdir, name, args):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, "server.log")
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                [SERVER_BIN] + args(self) + ["--port", str(self.port), "--dir", self.dir,
                                             "--logfile", self.log, "--daemonize", "no"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir)
            if wait_until(self._ready, 15):
                self.client = redis.Redis(port=self.port, protocol=2)
                return
            self.stop()
            if "Address already in use" not in tail(self.log):
                break
        raise RuntimeError(f"{name} server did not start:\n{tail(self.log)}")

    def _ready(self):
        if self.proc.poll() is not None:
            raise StopIteration
        with redis.Redis(port=self.port, protocol=2, socket_timeout=1) as r:
            return r.ping()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def substitute(text, port):
    """The placeholders of the documents' shell and config examples, made real."""
    text = text.replace("/path/to/libredis_retention.so", MODULE)
    text = text.replace("/etc/redis/retention.json", POLICY)
    text = text.replace("/usr/local/share/redis-retention/", os.path.join(ROOT, "contrib") + "/")
    text = text.replace("/etc/prometheus/rules/", os.path.join(ROOT, "contrib") + "/")
    return re.sub(r"(?<!\d)6379(?!\d)", str(port), text)


def run(cmd, timeout, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kw)
    except subprocess.TimeoutExpired:
        raise BlockFailure(f"{' '.join(cmd)!s:.200}: no end within {timeout} s")


def indent(text, n=4):
    return "\n".join(" " * n + l for l in text.rstrip("\n").split("\n"))


# ------------------------------------------------------------------------------------------
# Shape of shown output

QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
WORD = re.compile(r"^[A-Za-z][A-Za-z_-]*$")


def is_formatted(line):
    return bool(re.match(r"^\s*\d+\)", line) or '"' in line
                or re.search(r"\((integer|nil|error|empty array|double)\b", line))


def check_shape(expected_lines, actual, where):
    """Fails unless the real output `actual` has the shape of the shown `expected_lines`."""
    actual_lines = [" ".join(l.split()) for l in actual.split("\n")]
    actual_quoted = set(QUOTED.findall(actual))
    problems = []
    for exp in expected_lines:
        s = exp.strip()
        if not s or s in ("...", "…") or s.startswith("...") and not s.strip(". "):
            continue
        if is_formatted(s):
            for name in QUOTED.findall(s):
                if NAME.match(name) and name not in actual_quoted:
                    problems.append(f'field "{name}" is not in the reply')
            continue
        words = s.split()
        if all(WORD.match(w) for w in words):
            if " ".join(words) not in actual_lines:
                problems.append(f"no line {' '.join(words)!r}")
        elif WORD.match(words[0]):
            if not any(l.split(" ")[0] == words[0] for l in actual_lines):
                problems.append(f"no line starting with {words[0]!r}")
    if problems:
        raise BlockFailure(f"{where}: output shape differs from the shown one:\n"
                           + indent("\n".join(dict.fromkeys(problems)))
                           + "\n  real output:\n" + indent(actual.rstrip() or "(nothing)", 4))


# ------------------------------------------------------------------------------------------
# Values of shown redis-cli replies

MARKER = re.compile(r"(\s*)(\d+)\) ")
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\(integer\) -?\d+|\(nil\)|\(empty array\)'
                   r'|\(double\) \S+')
# Fields whose integer measures time or progress: only their type is checked.
VOLATILE = re.compile(r"(_ms|_us|_pct)$|^slices$")


def cli_scalar(text):
    """One value as redis-cli (RESP2, not --raw) prints it."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"') and len(text) >= 2:
        return cli_unquote(text[1:-1])
    m = re.match(r"^\(integer\) (-?\d+)$", text)
    if m:
        return int(m.group(1))
    if text == "(nil)":
        return None
    if text == "(empty array)":
        return []
    m = re.match(r"^\(double\) (\S+)$", text)
    if m:
        return float(m.group(1))
    return text  # a status reply (OK) or an error


def cli_unquote(body):
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            n = body[i + 1]
            if n == "x" and i + 3 < len(body):
                out.append(chr(int(body[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append({"n": "\n", "r": "\r", "t": "\t", "a": "\a", "b": "\b"}.get(n, n))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_cli_reply(text):
    """redis-cli's formatted RESP2 output as nested lists: `N)` markers at deeper columns open
    nested arrays (redis-cli prints a nested array's first element on its parent's line)."""
    root = []
    levels = []  # (column of the marker's `)`, list)
    for line in text.split("\n"):
        if not line.strip():
            continue
        pos, cols = 0, []
        while True:
            m = MARKER.match(line, pos)
            if not m:
                break
            cols.append(m.start(2) + len(m.group(2)))
            pos = m.end()
        value = cli_scalar(line[pos:])
        if not cols:
            root.append(value)
            continue
        while levels and levels[-1][0] > cols[0]:
            levels.pop()
        if not levels:
            levels.append((cols[0], root))
        for col in cols[1:]:
            nested = []
            levels[-1][1].append(nested)
            levels.append((col, nested))
        levels[-1][1].append(value)
    return root


def reply_fields(tree):
    """Every field/value pair of every map (RESP2: an even-length array whose even elements are
    strings) at any depth: {name: [values]}."""
    fields = {}

    def walk(v):
        if not isinstance(v, list):
            return
        if len(v) >= 2 and len(v) % 2 == 0 and all(isinstance(x, str) for x in v[::2]):
            for name, value in zip(v[::2], v[1::2]):
                fields.setdefault(name, []).append(value)
        for x in v:
            walk(x)
    walk(tree)
    return fields


def value_matches(name, shown, real):
    if isinstance(real, list) and not isinstance(shown, list):
        return any(value_matches(name, shown, x) for x in real)
    if isinstance(shown, int) and not isinstance(shown, bool):
        if not isinstance(real, int):
            return False
        return name is not None and VOLATILE.search(name) is not None or shown == real
    if isinstance(shown, str):
        if not isinstance(real, str):
            return False
        pattern = ""
        for part in re.split(r"(\d{10,}|…|\.\.\.)", shown):
            if re.fullmatch(r"\d{10,}", part):
                pattern += r"\d+"
            elif part in ("…", "..."):
                pattern += ".*"
            else:
                pattern += re.escape(part)
        return re.fullmatch(pattern, real, re.S) is not None
    return shown == real


def check_values(expected_lines, actual, where):
    """Fails unless the values shown in a formatted redis-cli reply are the real ones (see the
    module doc: which values count, and how they compare)."""
    tree = parse_cli_reply(actual)
    fields = reply_fields(tree)
    shown_values = []
    problems = []
    for exp in expected_lines:
        s = exp.strip()
        if not s or not is_formatted(s):
            continue
        tokens = [cli_scalar(t) for t in TOKEN.findall(s)]
        shown_values += tokens
        i = 0
        while i + 1 < len(tokens):
            name, value = tokens[i], tokens[i + 1]
            if isinstance(name, str) and NAME.match(name):
                real = fields.get(name)
                if real is not None and not any(value_matches(name, value, r) for r in real):
                    problems.append(f"{name}: shown {value!r}, the reply has "
                                    f"{real[0] if len(real) == 1 else real!r}")
                i += 2
            else:
                i += 1
    if len(shown_values) == 1 and len(tree) == 1 and not isinstance(tree[0], list):
        if not value_matches(None, shown_values[0], tree[0]):
            problems.append(f"shown {shown_values[0]!r}, the reply is {tree[0]!r}")
    if problems:
        raise BlockFailure(f"{where}: values differ from the shown ones:\n"
                           + indent("\n".join(dict.fromkeys(problems)))
                           + "\n  real output:\n" + indent(actual.rstrip() or "(nothing)", 4))


# ------------------------------------------------------------------------------------------
# Runners

class Runner:
    def __init__(self, workdir, server, verbose):
        self.work = workdir
        self.server = server
        self.port = server.port
        self.r = server.client
        self.verbose = verbose

    def show(self, what, out):
        if self.verbose:
            print(f"  {what}:\n" + indent(out.rstrip() or "(no output)", 6))

    # -- python ----------------------------------------------------------------------------
    def python(self, block):
        path = os.path.join(self.work, f"block-{block.slug}.py")
        with open(path, "w") as f:
            f.write(block.text)
        for protocol in (None, "2"):
            env = dict(os.environ, README_TEST_PORT=str(self.port),
                       PYTHONPATH=os.path.join(HERE, "py"), PYTHONDONTWRITEBYTECODE="1")
            env.pop("README_TEST_PROTOCOL", None)
            if protocol:
                env["README_TEST_PROTOCOL"] = protocol
            p = run([sys.executable, path], 60, env=env, cwd=self.work)
            label = "RESP2" if protocol else "redis-py default (RESP3)"
            if p.returncode != 0:
                raise BlockFailure(f"Python ({label}) exited {p.returncode}:\n"
                                   + indent((p.stderr or p.stdout)[-2000:]))
            self.show(f"Python ({label})", p.stdout)

    # -- js --------------------------------------------------------------------------------
    def js(self, block):
        if not os.path.isdir(os.path.join(NODE_MODULES, "ioredis")):
            raise BlockFailure(f"ioredis not installed in {NODE_MODULES} (npm ci there)")
        link = os.path.join(self.work, "node_modules")
        if not os.path.exists(link):
            os.symlink(NODE_MODULES, link)  # for `import` (ES modules ignore NODE_PATH)
        if re.search(r"^\s*import\s", block.text, re.M):
            # An ES module: top-level await works as written; end once it has run.
            path = os.path.join(self.work, f"block-{block.slug}.mjs")
            code = block.text + "\nprocess.exit(0);\n"
        else:
            # CommonJS with top-level await, as in the Node REPL: wrapped in an async function.
            path = os.path.join(self.work, f"block-{block.slug}.js")
            code = ("(async () => {\n" + block.text + "})().then(\n"
                    "  () => process.exit(0),\n"
                    "  (e) => { console.error(e); process.exit(1); });\n")
        with open(path, "w") as f:
            f.write(code)
        env = dict(os.environ, README_TEST_PORT=str(self.port), NODE_PATH=NODE_MODULES)
        p = run(["node", "-r", os.path.join(HERE, "node", "preload.js"), path], 60,
                env=env, cwd=self.work)
        if p.returncode != 0:
            raise BlockFailure(f"Node exited {p.returncode}:\n" + indent(
                (p.stderr or p.stdout)[-2000:]))
        self.show("Node", p.stdout)
        if re.search(r"\b(undefined|NaN)\b", p.stdout):
            raise BlockFailure("Node printed undefined/NaN (a field that is not there):\n"
                               + indent(p.stdout[-2000:]))

    # -- json policies ---------------------------------------------------------------------
    def json(self, block):
        try:
            doc = json.loads(block.text)
        except ValueError:
            try:
                doc = json.loads("[" + block.text + "]")
            except ValueError as e:
                raise BlockFailure(f"not JSON (nor rules separated by commas): {e}")
        if isinstance(doc, dict) and "json.schemas" in doc:
            return self._editor_schemas(doc)
        if isinstance(doc, dict) and "rules" in doc:
            policy = doc
        elif isinstance(doc, dict) and "name" in doc:
            policy = {"rules": [doc]}
        elif isinstance(doc, list) and doc and all(isinstance(d, dict) and "name" in d
                                                   for d in doc):
            policy = {"rules": doc}
        else:
            raise BlockFailure("don't know how to run this JSON: neither a policy nor rules "
                               "(teach tests/readme/run.py, or mark it skipped)")
        path = os.path.join(self.work, f"block-{block.slug}.json")
        with open(path, "w") as f:
            json.dump(policy, f)
        self._check_policy_loads(path, policy)

    def _check_policy_loads(self, path, policy):
        """The policy file at `path` loads (`CONFIG SET retention.policy-file`) and
        RETENTION.POLICY then lists its rules; examples/policy.json is loaded back."""
        try:
            self.r.config_set("retention.policy-file", path)
            reply = _decode(self.r.execute_command("RETENTION.POLICY"))
            in_force = json.loads(dict(zip(reply[::2], reply[1::2]))["policy"])
            names = [rule.get("name") for rule in in_force["rules"]]
            if names != [rule["name"] for rule in policy["rules"]]:
                raise BlockFailure(f"RETENTION.POLICY has the rules {names}")
        except redis.ResponseError as e:
            raise BlockFailure(f"the policy does not load: {e}")
        finally:
            self.r.config_set("retention.policy-file", POLICY)

    def _editor_schemas(self, doc):
        """An editor's settings mapping files to JSON schemas: each schema is in the repository."""
        for entry in doc["json.schemas"]:
            url = entry.get("url", "")
            path = os.path.normpath(os.path.join(ROOT, url))
            if re.match(r"^[a-z]+://", url) or not os.path.isfile(path):
                raise BlockFailure(f"the schema {url!r} is not a file of the repository")
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except ValueError as e:
                raise BlockFailure(f"the schema {url!r} is not JSON: {e}")
            if not entry.get("fileMatch"):
                raise BlockFailure(f"the schema {url!r} is mapped to no files (fileMatch)")

    # -- yaml ------------------------------------------------------------------------------
    def yaml(self, block):
        keys = {m.group(1) for m in re.finditer(r"^([A-Za-z_]+):", block.text, re.M)}
        if keys & {"rule_files", "scrape_configs", "global", "alerting"}:
            what = "config"
        elif "groups" in keys:
            what = "rules"
        else:
            raise BlockFailure("don't know how to run this YAML (neither a Prometheus config "
                               "nor rules): teach tests/readme/run.py, or mark it skipped")
        if not shutil.which("promtool"):
            raise BlockFailure("promtool is not installed (scripts/test-prometheus installs "
                               "the Debian package prometheus)")
        path = os.path.join(self.work, f"block-{block.slug}.yml")
        with open(path, "w") as f:
            f.write(substitute(block.text, self.port))
        p = run(["promtool", "check", what, path], 60, cwd=self.work)
        if p.returncode != 0:
            raise BlockFailure(f"promtool check {what}:\n" + indent(p.stdout + p.stderr))

    # -- redis.conf lines ------------------------------------------------------------------
    def conf(self, block):
        lines = [substitute(l, self.port) for l in block.lines
                 if l.strip() and not l.lstrip().startswith("#")]
        conf = os.path.join(self.work, f"block-{block.slug}.conf")
        with open(conf, "w") as f:
            if not any(l.split()[0] == "loadmodule" for l in lines):
                f.write(f"loadmodule {MODULE}\n")
            f.write("\n".join(lines) + "\n")
        try:
            srv = Server(self.work, f"conf-{block.slug}", lambda s: [conf])
        except RuntimeError as e:
            raise BlockFailure(f"no server starts from these lines: {e}")
        try:
            for l in lines:
                name, _, value = l.partition(" ")
                if name == "loadmodule":
                    continue
                got = srv.client.config_get(name).get(name)
                if got is None or got.strip('"') != value.strip().strip('"'):
                    raise BlockFailure(f"CONFIG GET {name} gives {got!r}, the line says "
                                       f"{value.strip()!r}")
        finally:
            srv.stop()

    # -- command lines ---------------------------------------------------------------------
    def commands(self, block):
        before = self._acl_list()
        try:
            for l in block.lines:
                if not l.strip() or l.lstrip().startswith("#"):
                    continue
                command = instantiate(l) if "<" in l else l
                try:
                    args = shlex.split(command)
                except ValueError as e:
                    raise BlockFailure(f"{l!r}: {e}")
                try:
                    self.r.execute_command(*args)
                except redis.ResponseError as e:
                    shown = f" (as {command!r})" if command != l else ""
                    raise BlockFailure(f"{l!r}{shown}: {e}")
        finally:
            self._acl_restore(before)

    def _acl_list(self):
        return {l.split(" ")[1]: l for l in
                (x.decode() for x in self.r.execute_command("ACL", "LIST"))}

    def _acl_restore(self, before):
        after = self._acl_list()
        for name, line in after.items():
            if name not in before:
                self.r.execute_command("ACL", "DELUSER", name)
            elif before[name] != line:
                self.r.execute_command("ACL", "SETUSER", name, "reset",
                                       *before[name].split(" ")[2:])

    # -- server log lines ------------------------------------------------------------------
    def log(self, block):
        for l in block.lines:
            if not l.strip():
                continue
            body = re.sub(r"^(\d+:[A-Z] .*?)?[#*.-] <[\w.-]+> ", "", l)
            m = re.match(r"^retention: module not loaded: (?:ERR policy:|POLICY) (?P<path>\S+): "
                         r"rules\[(?P<i>\d+)\] \(\"(?P<name>[^\"]*)\"\): (?P<field>[\w.]+): "
                         r"bad duration '(?P<value>[^']*)'", body)
            if not m:
                raise BlockFailure(f"don't know how to reproduce the log line {l!r}: teach "
                                   "tests/readme/run.py, or mark the block skipped")
            n = int(m.group("i"))
            rules = [{"name": f"rule-{k}", "match": f"k{k}:*", "ttl": "1d"} for k in range(n)]
            bad = {"name": m.group("name"), "match": "readme-test:*"}
            target = bad
            *parents, leaf = m.group("field").split(".")
            for p in parents:
                target = target.setdefault(p, {})
            target[leaf] = m.group("value")
            rules.append(bad)
            path = os.path.join(self.work, f"block-{block.slug}-policy.json")
            with open(path, "w") as f:
                json.dump({"rules": rules}, f)
            expect = l.replace(m.group("path"), path)
            expect = re.sub(r"^(\d+:[A-Z] .*?)?(?=[#*.-] <)", "", expect)
            logfile = os.path.join(self.work, f"block-{block.slug}.log")
            p = run([SERVER_BIN, "--port", str(free_port()), "--logfile", logfile,
                     "--dir", self.work, "--loadmodule", MODULE, "policy-file", path],
                    30, cwd=self.work)
            if p.returncode == 0:
                raise BlockFailure("the server started with the bad policy")
            if not any(expect in x for x in open(logfile, errors="replace")):
                raise BlockFailure(f"the log has no line {expect!r}:\n"
                                   + indent(tail(logfile, 10)))

    # -- shell -----------------------------------------------------------------------------
    def shell(self, block):
        for cmd, output, line in shell_commands(block):
            where = f"line {line}"
            prog = program_of(cmd)
            if prog == "redis-cli":
                self._redis_cli(cmd, output, where)
            elif prog == "cargo":
                if output:
                    raise BlockFailure(f"{where}: output shown after {cmd!r} cannot be checked")
                p = run(["bash", "-c", cmd], 900, cwd=ROOT)
                if p.returncode != 0:
                    raise BlockFailure(f"{where}: {cmd!r} exited {p.returncode}:\n"
                                       + indent((p.stderr + p.stdout)[-2000:]))
            elif prog == "prometheus-redis-exporter":
                self._exporter(cmd, where)
            else:
                raise BlockFailure(
                    f"{where}: don't know how to run {prog!r} here ({cmd!r}): teach "
                    "tests/readme/run.py, or mark the block <!-- readme-test: skip (why) -->")

    def _redis_cli(self, cmd, output, where):
        args = shlex.split(substitute(cmd, self.port), comments=True)
        i = args.index("redis-cli")
        env = dict(os.environ)
        for a in args[:i]:
            k, _, v = a.partition("=")
            env[k] = v
        rest = args[i + 1:]
        # `> file`: the output goes to a file of the scratch directory (never to the path shown,
        # which may be a placeholder for a file of the repository).
        target = None
        if ">" in rest:
            k = rest.index(">")
            if k + 2 != len(rest):
                raise BlockFailure(f"{where}: {cmd!r}: `>` must be followed by one file name, last")
            target = os.path.join(self.work, os.path.basename(rest[k + 1]))
            rest = rest[:k]
        extra = ["-e"]
        if "-p" not in rest and "-u" not in rest:
            extra += ["-p", str(self.port)]
        if "--raw" not in rest:
            extra.append("--no-raw")  # as a terminal shows it (redis-cli's default on a tty)
        p = run(["redis-cli"] + extra + rest, 60, env=env, cwd=self.work)
        out = p.stdout
        if p.returncode != 0 or out.startswith("(error)"):
            raise BlockFailure(f"{where}: {cmd!r} failed (exit {p.returncode}):\n"
                               + indent((out + p.stderr).strip() or "(no output)"))
        self.show(f"{where}: {cmd}", out)
        if target:
            if output:
                raise BlockFailure(f"{where}: output shown after {cmd!r}, which writes a file")
            with open(target, "w") as f:
                f.write(out)
            self._check_written(target, out, where)
            return
        if output:
            check_shape(output, out, f"{where}: {cmd}")
            if "--raw" not in rest and "-3" not in rest:
                check_values(output, out, f"{where}: {cmd}")

    def _check_written(self, path, text, where):
        """A file a redis-cli line wrote: a policy must load; anything else must not be empty."""
        if not text.strip():
            raise BlockFailure(f"{where}: wrote an empty file")
        if path.endswith(".json"):
            try:
                policy = json.loads(text)
            except ValueError as e:
                raise BlockFailure(f"{where}: wrote {os.path.basename(path)}, not JSON: {e}")
            if isinstance(policy, dict) and "rules" in policy:
                self._check_policy_loads(path, policy)

    def _exporter(self, cmd, where):
        exe = shutil.which("prometheus-redis-exporter")
        if not exe:
            raise BlockFailure(f"{where}: prometheus-redis-exporter is not installed "
                               "(scripts/test-prometheus installs the Debian package)")
        web = free_port()
        words = shlex.split(substitute(cmd, self.port), comments=True)
        env = dict(os.environ)
        while re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            k, _, v = words.pop(0).partition("=")
            env[k] = v
        argv = [exe] + words[1:] + ["-web.listen-address", f"127.0.0.1:{web}"]
        log = os.path.join(self.work, "exporter.log")
        with open(log, "w") as lf:
            proc = subprocess.Popen(argv, stdout=lf, stderr=lf, env=env,
                                    stdin=subprocess.DEVNULL, cwd=self.work)
        metrics = ""
        try:
            def scraped():
                nonlocal metrics
                if proc.poll() is not None:
                    raise StopIteration
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/metrics", timeout=5) as u:
                    metrics = u.read().decode()
                return True
            wait_until(scraped, 20, 0.1)
            if proc.poll() is not None:
                raise BlockFailure(f"{where}: the exporter exited {proc.returncode}:\n"
                                   + indent(tail(log)))
            want = [r"redis_up 1", r'redis_exporter_last_scrape_error(\{err=""\})? 0',
                    r'redis_script_values\{key="retention_up"\} 1']
            missing = [w for w in want if not re.search("^" + w + "$", metrics, re.M)]
            if missing:
                got = "\n".join(l for l in metrics.split("\n")
                                if l.startswith(("redis_up", "redis_exporter_last_scrape_error",
                                                 "redis_script_values")))[:3000]
                raise BlockFailure(f"{where}: /metrics lacks {missing}:\n" + indent(got)
                                   + "\n  exporter log:\n" + indent(tail(log, 10)))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def shell_commands(block):
    """(command, [output lines], line in the file) for each command of a shell block."""
    prompt = any(re.match(r"^\s*\$\s", l) for l in block.lines)
    has_cli = any(re.match(r"^\s*(\$\s+)?redis-cli(\s|$)", l) for l in block.lines)
    commands = []
    pending = None  # a command continued with a trailing backslash: [text, line]
    for n, raw in enumerate(block.lines):
        line_no = block.line + 1 + n
        s = raw.strip()
        if pending is not None:
            pending[0] += " " + s
        elif prompt:
            m = re.match(r"^\s*\$\s+(.*)$", raw)
            if m:
                pending = [m.group(1).strip(), line_no]
            elif s:
                output_of(commands, raw, line_no)
        elif has_cli:
            if program_of(s) == "redis-cli":
                pending = [s, line_no]
            elif s and not (s.startswith("#") and not commands):
                output_of(commands, raw, line_no)
        elif s and not s.startswith("#"):
            pending = [s, line_no]
        if pending is not None:
            if pending[0].endswith("\\"):
                pending[0] = pending[0][:-1].rstrip()
            else:
                commands.append((pending[0], [], pending[1]))
                pending = None
    if pending is not None:
        commands.append((pending[0], [], pending[1]))
    return commands


def output_of(commands, raw, line_no):
    if not commands:
        raise BlockFailure(f"line {line_no}: {raw.strip()!r} is neither a command nor the "
                           "output of one")
    commands[-1][1].append(raw)


def instantiate(synopsis):
    """The shortest form of a synopsis: `[optional]` parts dropped, `<a|b>` -> a, other
    `<placeholders>` from PLACEHOLDERS."""
    s = synopsis
    while True:
        t = re.sub(r"\[[^\[\]]*\]", "", s)
        if t == s:
            break
        s = t

    def fill(m):
        inner = m.group(1)
        if "|" in inner:
            return inner.split("|")[0]
        if inner not in PLACEHOLDERS:
            raise BlockFailure(f"no value for <{inner}> in {synopsis!r}: add one to "
                               "PLACEHOLDERS in tests/readme/run.py")
        return shlex.quote(PLACEHOLDERS[inner])

    s = re.sub(r"<([^<>]+)>", fill, s)
    return " ".join(w.split("|")[0] if "|" in w and not w.startswith("'") else w
                    for w in s.split())


def _decode(v):
    if isinstance(v, bytes):
        return v.decode(errors="replace")
    if isinstance(v, (list, tuple)):
        return [_decode(x) for x in v]
    if isinstance(v, dict):
        return {_decode(k): _decode(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------------------

def main(argv):
    only = None
    listing = False
    verbose = False
    args = []
    it = iter(argv)
    for a in it:
        if a == "--list":
            listing = True
        elif a in ("-v", "--verbose"):
            verbose = True
        elif a == "--only":
            only = set(next(it).split(","))
        else:
            args.append(a)
    files = args or [os.path.join(ROOT, "README.md")]
    blocks = [b for path in files for b in parse_blocks(path)]
    if only:
        blocks = [b for b in blocks if str(b.line) in only or f"{b.file}:{b.line}" in only]

    plan = []
    failures = []
    for b in blocks:
        if b.skip is not None:
            plan.append((b, "skip", b.skip))
            continue
        try:
            kind, desc = classify(b)
            plan.append((b, kind, desc))
        except BlockFailure as e:
            plan.append((b, "unknown", str(e)))
    if listing:
        for b, kind, desc in plan:
            print(f"{b.file + ':' + str(b.line):<24} ```{b.lang or '':<7} {kind:<9} {desc}")
        return 0

    work = tempfile.mkdtemp(prefix="retention-readme-")
    server = None
    t0 = time.monotonic()
    try:
        server = Server(work, "main", lambda s: [
            CONF, "--loadmodule", MODULE, "policy-file", POLICY])
        try:
            fixture.create(server.client)
        except Exception as e:
            print(f"FAIL setup (tests/readme/fixture.py): {e}\n{traceback.format_exc()}")
            return 1
        info = server.client.info("server")
        print(f"server: {SERVER_BIN} ({info.get('server_name', 'redis')} "
              f"{info.get('valkey_version', info.get('redis_version'))}) on port {server.port}, "
              f"module {MODULE}")
        runner = Runner(work, server, verbose)
        for b, kind, desc in plan:
            head = f"{b.file}:{b.line} ```{b.lang}"
            if kind == "skip":
                print(f"skip {head}: {desc}")
                continue
            if kind == "unknown":
                failures.append(b)
                print(f"FAIL {head}: {desc}")
                continue
            started = time.monotonic()
            try:
                getattr(runner, kind)(b)
                print(f"ok   {head} ({desc}; {time.monotonic() - started:.1f} s)")
            except BlockFailure as e:
                failures.append(b)
                print(f"FAIL {head} ({desc}): {e}")
            except Exception as e:  # a bug of the runner or a dead server: still name the block
                failures.append(b)
                print(f"FAIL {head} ({desc}): {type(e).__name__}: {e}\n"
                      + indent(traceback.format_exc()))
            sys.stdout.flush()
            if server.proc.poll() is not None:
                print(f"FAIL the server exited after {head}:\n{indent(tail(server.log))}")
                return 1
    finally:
        if server:
            server.stop()
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
    ran = sum(1 for _, k, _ in plan if k != "skip")
    if failures:
        print(f"{len(failures)} of {ran} code blocks failed "
              f"({', '.join(f'{b.file}:{b.line}' for b in failures)}); files kept in {work}")
        return 1
    print(f"all {ran} code blocks of {len(files)} files ran as written "
          f"({len(plan) - ran} skipped, {time.monotonic() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out
    sys.exit(main(sys.argv[1:]))
