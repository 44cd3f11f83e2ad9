"""The docs' examples, run as a reader runs them: the README's quick tour, the
tutorial and the how-to guides, each a bash script against real `shoal`
processes, whose output is compared with what the page says it prints.

A page marks what runs with HTML comments, which Markdown does not show:

- ``<!-- tour -->`` (or ``<!-- tour: any words -->``) before a ```` ```sh ````
  block: its commands run, in order, in one bash script (``set -euo pipefail``)
  for the whole page. A command ends where bash can parse it (a line ending in
  ``\\`` or ``|``, an open quote or a function body go on). Lines marked
  ``# →`` (alone, or after a command) are what the command prints.
- ``<!-- tour: prints -->`` before a ```` ```text ```` or ```` ```json ````
  block: what the last command of the tour block before it prints.
- ``<!-- tour: file PATH -->`` before any block: the reader saves the block as
  PATH (relative to the checkout); the run writes it there at that point.

What the run substitutes is only what a reader substitutes: the server's
address (``127.0.0.1:8000`` → a free port, in commands and in the checkout's
``hypercorn.toml``), the passwords typed at a prompt (the command runs on a
terminal, answered from ``passwords`` by the user name it creates), the other
``replacements`` the test gives (a MongoDB or Redis URL of the reader's own),
and an assignment of a printed value (``ID=6b04…  # yours``: a 24-digit id, a
40-digit ETag or a ``shoal_`` key), which takes the last such value printed so
far. A command that starts a server (``scripts/serve-example``, ``shoal
serve``, ``hypercorn``) runs in the background in a process group of its own
until the next one starts or the page ends, when it gets Ctrl-C (SIGINT to the
group), as the reader presses it; what it printed by the time it answers on
the address is its output, compared in any order (its stdout and stderr
interleave).

Printed and promised lines are compared after ids, keys, dates, times, ETags,
ports, pids and request ids are made alike; ``…`` stands for anything. A JSON
block (or a ``# →`` line) is compared as JSON when it parses, so the order of
an object's keys is no promise: a ``"…"`` value (or list item) stands
for any value (any number of items), an object with a ``"…"`` key may have
more keys. The headers a page says it leaves out of ``curl -i`` output (those
every answer carries) are left out of the printed output too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.utils.processes import ProcessInfo, alive, clean_env, descendants, process_info

PROMISE = "# → "
ADDRESS = "127.0.0.1:8000"
TERMINAL = Path(__file__).with_name("terminal.py")
#: Headers every answer carries, which the pages leave out of `curl -i` output.
HIDDEN_HEADERS = frozenset(
    {
        "date",
        "server",
        "x-request-id",
        "x-shoal-instance",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    }
)
_SERVER = re.compile(r"(^|\s|/)(scripts/serve-example|\S*shoal serve|\S*hypercorn) ")
_ASSIGNED = re.compile(r"^([A-Z_][A-Z0-9_]*)=(\S+)\s*(?:#.*)?$")
_PROMPTS = re.compile(r"\busers (create|set-password) (\S+)")


@dataclass
class Step:
    """One command of a page and what the page says it prints."""

    lines: list[str]
    promised: list[str] = field(default_factory=list)
    #: The promised output is a block of its own (``<!-- tour: prints -->``).
    block: str | None = None
    language: str = "text"
    #: A file the reader saves: (path, text), instead of a command.
    file: tuple[str, str] | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def server(self) -> bool:
        return self.file is None and _SERVER.search(self.text + " ") is not None


# --- the page ---------------------------------------------------------------------

_MARKED = re.compile(
    r"<!-- tour(?::\s*(?P<words>[^>]*?))?\s*-->\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


def steps_of(page: str) -> list[Step]:
    """Every step of a page, in order."""
    steps: list[Step] = []
    for marked in _MARKED.finditer(page):
        words = (marked["words"] or "").strip()
        body, language = marked["body"], marked["lang"] or "text"
        if words.startswith("file "):
            steps.append(Step([], file=(words.removeprefix("file ").strip(), body)))
        elif words == "prints":
            commands = [step for step in steps if step.file is None]
            assert commands, "a printed block before any command"
            commands[-1].block, commands[-1].language = body, language
        else:
            assert language == "sh", f"a tour block that is not sh: {body[:60]}"
            steps.extend(commands_of(body))
    return steps


def _complete(text: str) -> bool:
    """Whether bash can parse ``text`` as it is (no open quote, pipe or body)."""
    result = subprocess.run(
        ["bash", "-n"], input=(text + "\n").encode(), capture_output=True, check=False
    )
    return result.returncode == 0


def commands_of(block: str) -> list[Step]:
    """A sh block's commands, each with the ``# →`` lines after it or on its last line."""
    steps: list[Step] = []
    pending: list[str] = []
    promised: list[str] = []
    for line in block.splitlines():
        stripped = line.strip()
        if not pending:
            if stripped.startswith(PROMISE):
                steps[-1].promised.append(stripped.removeprefix(PROMISE))
                continue
            if not stripped or stripped.startswith("#"):
                continue
        code, mark, trailing = line.partition(f"  {PROMISE}")
        pending.append(code.rstrip() if mark else line)
        if mark:
            promised.append(trailing.strip())
        text = "\n".join(pending)
        if not text.endswith("\\") and _complete(text):
            steps.append(Step(pending, promised))
            pending, promised = [], []
    assert not pending, f"a command bash cannot parse: {pending}"
    return steps


# --- the script -------------------------------------------------------------------

_PRELUDE = r"""
set -euo pipefail
TOUR_SERVER=""
tour_stop() {
    if [[ -n $TOUR_SERVER ]]; then
        kill -INT -- "-$TOUR_SERVER" 2>/dev/null || true   # Ctrl-C
        for _ in $(seq 300); do kill -0 "$TOUR_SERVER" 2>/dev/null || break; sleep 0.1; done
        kill -KILL -- "-$TOUR_SERVER" 2>/dev/null || true
        wait "$TOUR_SERVER" 2>/dev/null || true
        TOUR_SERVER=""
    fi
}
tour_serve() {   # COMMAND LOG WAIT_FOR LINES: ready once it answers, has said WAIT_FOR
                 # and has printed LINES lines (what the page shows)
    tour_stop
    # A process group of its own (setsid), as a terminal's foreground job: Ctrl-C
    # reaches the server and its workers.
    setsid bash -c "$1" >"$2" 2>&1 &
    TOUR_SERVER=$!
    echo "$TOUR_SERVER" >>"$TOUR_PIDS"
    for _ in $(seq 600); do
        if ! kill -0 "$TOUR_SERVER" 2>/dev/null; then
            echo "the server exited:"; cat "$2"; exit 1
        fi
        if curl -s -o /dev/null "http://$TOUR_ADDRESS/healthz"; then
            if { [[ -z $3 ]] || grep -q -- "$3" "$2"; } && (($(wc -l <"$2") >= $4)); then
                cat "$2"; return 0
            fi
        fi
        sleep 0.1
    done
    echo "the server did not answer within 60 s:"; cat "$2"; exit 1
}
trap tour_stop EXIT
"""

_TOKENS = {
    "id": r"\b[0-9a-f]{24}\b",
    "etag": r"\b[0-9a-f]{40}\b",
    "key": r"shoal_[A-Za-z0-9_-]{20,}",
}


@dataclass
class Tour:
    """A page's steps as one bash script, and what it takes to run it."""

    steps: list[Step]
    address: str
    replacements: dict[str, str] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)

    def substitute(self, text: str) -> str:
        text = text.replace(ADDRESS, self.address)
        for before, after in self.replacements.items():
            text = text.replace(before, after)
        return text

    def script(self, root: Path) -> str:
        out = [_PRELUDE]
        for number, step in enumerate(self.steps):
            # On a line of its own, whether or not the output before ended one.
            out.append(f"printf '\\n@@@ step {number}\\n'")
            if step.file is not None:
                path, text = step.file
                target = root / path
                out.append(f"mkdir -p {shlex.quote(str(target.parent))}")
                out.append(
                    f"cat > {shlex.quote(str(target))} <<'TOUR_FILE_END'\n{text}TOUR_FILE_END"
                )
                continue
            text = self.substitute(step.text)
            assigned = _ASSIGNED.match(text)
            kind = next(
                (
                    name
                    for name, pattern in _TOKENS.items()
                    if assigned and re.fullmatch(pattern, assigned[2])
                ),
                None,
            )
            if assigned and kind:
                # A reader pastes the value the command before printed.
                pattern = shlex.quote(_TOKENS[kind])
                text = f'{assigned[1]}=$(grep -oP {pattern} "$TOUR_OUTPUT" | tail -n 1)'
            elif step.server:
                wait_for = "Shoal is serving" if "Shoal is serving" in (step.block or "") else ""
                log = f'"$TOUR_SCRATCH/server-{number}.log"'
                lines = len((step.block or "").strip("\n").splitlines())
                text = f"tour_serve {shlex.quote(text)} {log} {shlex.quote(wait_for)} {lines}"
            elif (prompt := _PROMPTS.search(text)) and "--password-stdin" not in text:
                password = self.passwords[prompt[2]]
                text = (
                    f"{shlex.quote(sys.executable)} {shlex.quote(str(TERMINAL))} "
                    f"--answer {shlex.quote(password)} -- bash -c {shlex.quote(text)}"
                )
            out.append(text)
        out.append("tour_stop")
        return "\n".join(out) + "\n"


def run(
    tour: Tour, root: Path, scratch: Path, *, env: dict[str, str] | None = None, stdin: str = ""
) -> list[str]:
    """Run the tour in ``root`` (a copy of the checkout); each step's output.

    Every process it started is gone afterwards, whatever happened."""
    output = scratch / "tour.out"
    pids = scratch / "tour.pids"
    pids.touch()
    # curl shows no progress meter on a terminal, where the reader runs it.
    (scratch / ".curlrc").write_text("no-progress-meter\n", encoding="utf-8")
    variables = clean_env(
        {
            "TMPDIR": str(scratch),
            "TOUR_OUTPUT": str(output),
            "TOUR_PIDS": str(pids),
            "TOUR_SCRATCH": str(scratch),
            "TOUR_ADDRESS": tour.address,
            "CURL_HOME": str(scratch),
            "PATH": f"{root / '.venv' / 'bin'}:{os.environ['PATH']}",
            **(env or {}),
        }
    )
    script = scratch / "tour.sh"
    script.write_text(tour.script(root), encoding="utf-8")
    seen: dict[tuple[int, int], ProcessInfo] = {}
    with output.open("w") as sink:
        process = subprocess.Popen(
            ["bash", str(script)],
            cwd=root,
            env=variables,
            stdin=subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert process.stdin is not None
            process.stdin.write(stdin)
            process.stdin.close()
            try:
                status = process.wait(timeout=600)
            except subprocess.TimeoutExpired:
                status = -1
        finally:
            for info in [*descendants(process.pid), *_servers(pids)]:
                seen[(info.pid, info.start_time)] = info
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            for info in seen.values():
                info.kill()
            process.wait(10)
    printed = output.read_text(errors="replace")
    assert status == 0, f"the tour failed (status {status}):\n{printed[-6000:]}"
    assert not alive(list(seen.values())), "the tour left processes running"
    outputs = re.split(r"\n@@@ step \d+\n", printed)[1:]
    assert len(outputs) == len(tour.steps), printed[-4000:]
    return outputs


def _servers(pids: Path) -> list[ProcessInfo]:
    found = []
    for line in pids.read_text().split():
        info = process_info(int(line))
        if info is not None:
            found.extend([info, *descendants(info.pid)])
    return found


# --- comparing --------------------------------------------------------------------

_VARYING = [
    (re.compile(r"\b[0-9a-f]{40}\b"), "<etag>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<request id>"),
    (re.compile(r"\b[0-9a-f]{24}\b"), "<id>"),
    (re.compile(r"shoal_[A-Za-z0-9_-]{20,}"), "<key>"),
    (re.compile(r"\b\d+\.\d+ s\b"), "<seconds>"),
    (re.compile(r"\b[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\b"), "<date>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"), "<time>"),
    (re.compile(r"\b(127\.0\.0\.1|localhost):\d{2,5}\b"), r"\1:<port>"),
    (re.compile(r"\bpid \d+\b"), "pid <pid>"),
]


def normal(text: str) -> str:
    for pattern, name in _VARYING:
        text = pattern.sub(name, text)
    return text


def matches(promised: str, printed: str) -> bool:
    """Whether a printed line is the promised one (``…`` stands for anything)."""
    pattern = ".*".join(re.escape(part) for part in normal(promised).split("…"))
    return re.fullmatch(pattern, normal(printed)) is not None


def json_matches(promised: Any, printed: Any) -> bool:
    """Whether a printed JSON value is the promised one (see the module's docstring)."""
    if promised == "…":
        return True
    if isinstance(promised, str):
        return isinstance(printed, str) and matches(promised, printed)
    if isinstance(promised, dict):
        if not isinstance(printed, dict):
            return False
        keys = set(promised) - {"…"}
        if "…" not in promised and set(printed) != keys:
            return False
        return keys <= set(printed) and all(json_matches(promised[k], printed[k]) for k in keys)
    if isinstance(promised, list):
        return isinstance(printed, list) and _items_match(promised, printed)
    return bool(promised == printed and type(promised) is type(printed))


def _items_match(promised: list[Any], printed: list[Any]) -> bool:
    if not promised:
        return not printed
    head, rest = promised[0], promised[1:]
    if head == "…":  # any number of items
        return any(_items_match(rest, printed[skip:]) for skip in range(len(printed) + 1))
    return bool(printed) and json_matches(head, printed[0]) and _items_match(rest, printed[1:])


def shown(printed: str) -> list[str]:
    """The printed lines as a page shows them: no trailing blanks or CRs, and no
    header every answer carries."""
    lines, headers = [], False
    for line in printed.replace("\r\n", "\n").rstrip("\n").split("\n"):
        line = line.rstrip()
        if re.match(r"HTTP/[\d.]+ \d{3}", line):
            headers = True
            line = " ".join(line.split()[:2])  # no reason phrase: hypercorn sends none
        elif headers and not line:
            headers = False
        elif headers and line.split(":", 1)[0].lower() in HIDDEN_HEADERS:
            continue
        lines.append(line)
    return lines


def _line_matches(promised: str, printed: str) -> bool:
    """A promised line as JSON when both parse (the order of keys is no promise),
    else as text."""
    promised_value, printed_value = _json(promised), _json(printed)
    if promised_value is not None and printed_value is not None:
        return json_matches(promised_value, printed_value)
    return matches(promised, printed)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def check(step: Step, printed: str) -> None:
    """Assert that ``printed`` is what the page says ``step`` prints."""
    if step.file is not None or (not step.promised and step.block is None):
        return
    lines = shown(printed)
    where = f"{step.text}\nprinted:\n{printed}"
    if step.block is None:
        assert len(lines) == len(step.promised), where
        for promised, line in zip(step.promised, lines, strict=True):
            assert _line_matches(promised, line), f"{where}\npromised: {promised}\nprinted:  {line}"
        return
    if step.language == "json" and (promised_value := _json(step.block)) is not None:
        printed_value = _json(printed)
        assert printed_value is not None, f"{where}\nnot JSON"
        assert json_matches(promised_value, printed_value), f"{where}\npromised: {step.block}"
        return
    block = step.block.rstrip("\n").split("\n")
    if step.server:  # stdout and stderr interleave: in any order
        left = list(lines)
        for line in block:
            found = next((seen for seen in left if matches(line, seen)), None)
            assert found is not None, f"{where}\npromised, not printed: {line}"
            left.remove(found)
        assert not left, f"{where}\nprinted, not promised: {left}"
        return
    assert len(lines) == len(block), f"{where}\npromised:\n{step.block}"
    for line, seen in zip(block, lines, strict=True):
        assert matches(line, seen), f"{where}\npromised: {line}\nprinted:  {seen}"
