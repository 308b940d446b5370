"""`panda-spark sql`: the statement splitter, result cells and error lines without Spark; a one-shot
bad query in this process; the interactive shell driven through a pseudo-terminal in its own process."""
import os
import pty
import re
import select
import signal
import struct
import sys
import time
from pathlib import Path

import pytest

from panda_spark.config import load_config
from panda_spark.sql_shell import CONTINUATION, PROMPT, display_value, error_line, history_path, run_sql, split_statements
from tests.conftest import overrides_for


@pytest.mark.parametrize("text, statements, rest", [
    ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"], ""),
    ("SELECT 1;\nSELECT 2", ["SELECT 1"], "\nSELECT 2"),
    ("SELECT ';' AS a, \"x;y\", `we;ird` FROM t;", ["SELECT ';' AS a, \"x;y\", `we;ird` FROM t"], ""),
    ("SELECT 'it\\'s; fine', 'a''; b', `a``;b`;", ["SELECT 'it\\'s; fine', 'a''; b', `a``;b`"], ""),
    ("SELECT r'C:\\'; SELECT 2;", ["SELECT r'C:\\'", "SELECT 2"], ""),
    ("SELECT 1 -- not; here\n; /* a; /* nested; */ still; */ SELECT 2;",
     ["SELECT 1 -- not; here", "/* a; /* nested; */ still; */ SELECT 2"], ""),
    ("-- only a comment;\n ;; /* and; another */\n", [], ""),
    ("SELECT 1; SELECT 'open;\nstill open", ["SELECT 1"], " SELECT 'open;\nstill open"),
    ("SELECT 1; /* open; comment", ["SELECT 1"], " /* open; comment"),
])
def test_split_statements_cuts_at_semicolons_outside_literals_and_comments(text, statements, rest):
    assert split_statements(text) == (statements, rest)


def test_binary_cells_are_named_by_their_content_and_size():
    assert display_value(bytearray(b"\xff\xd8\xff\xe0" + bytes(17_199))) == "<jpeg 16.8 KB>"
    assert display_value(b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 ** 2)) == "<png 3.0 MB>"
    assert display_value(bytearray(b"\x00\x01\x02")) == "<binary 3 B>"
    assert display_value(bytes(4) + b"ftypisom") == "<mp4 12 B>"
    assert display_value({"frames": [bytearray(b"\xff\xd8\xff\x00")], "n": 1}) == {"frames": ["<jpeg 4 B>"], "n": 1}
    assert display_value("x" * 500) == "x" * 500  # csv and json keep text whole


def test_table_cells_are_cut_and_nested_values_shown_as_json():
    cut = display_value("a" * 500, max_chars=200)
    assert len(cut) == 200 and cut == "a" * 199 + "…"
    assert display_value([0.5, bytearray(b"\x01")], max_chars=200) == '[0.5, "<binary 1 B>"]'
    assert display_value(list(range(1000)), max_chars=20) == "[0, 1, 2, 3, 4, 5, …"
    assert display_value(7, max_chars=200) == 7 and display_value(None, max_chars=200) is None


class _SparkError(Exception):  # what PySparkException offers: its full message, error class first
    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def getMessage(self):
        return self.message


class _JavaException:
    def __init__(self, message, text):
        self.message, self.text = message, text

    def getMessage(self):
        return self.message

    def toString(self):
        return self.text


class _Py4JJavaError(Exception):
    def __init__(self, java_exception):
        super().__init__("An error occurred while calling o54.sql.\n: trace")
        self.java_exception = java_exception


def test_error_line_is_sparks_message_with_its_error_class_on_one_line():
    parse = _SparkError("[PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601")
    assert error_line(parse) == "error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601"
    missing = _SparkError("\n[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found. Verify the "
                          "spelling.\nIf you did not qualify the name ...\nTo tolerate ... SQLSTATE: 42P01")
    assert error_line(missing) == ("error: [TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found. "
                                   "Verify the spelling. SQLSTATE: 42P01")
    cancelled = _Py4JJavaError(_JavaException("[SPARK_JOB_CANCELLED] Job 8 cancelled SQLSTATE: XXKDA", "x"))
    assert error_line(cancelled) == "error: [SPARK_JOB_CANCELLED] Job 8 cancelled SQLSTATE: XXKDA"
    plain = _Py4JJavaError(_JavaException(None, "java.lang.IllegalStateException\n\tat Foo.bar(Foo.java:1)"))
    assert error_line(plain) == "error: java.lang.IllegalStateException"
    assert error_line(ValueError("bad value\nmore")) == "error: ValueError: bad value"


def test_history_lives_under_a_local_root_else_in_home(tmp_path):
    assert history_path(load_config(None, [f"paths.root={tmp_path}"])) == tmp_path / "sql_history"
    cluster = load_config(None, ["paths.root=s3://bucket/panda", "spark.mode=cluster"])
    assert history_path(cluster) == Path.home() / ".panda_sql_history"


def test_one_shot_query_stops_at_a_failing_statement_with_one_line_on_stderr(spark, state_root, capsys):
    from panda_spark.spark import get_spark

    cfg = load_config(None, overrides_for(state_root, "sql_one_shot"))
    try:
        status = run_sql(get_spark(cfg), cfg, "SELECT 1 AS one; SELEC 2; SELECT 3 AS three", "csv")
    finally:
        spark.catalog.setCurrentDatabase("default")  # run_sql moved this shared session into the schema
    out, err = capsys.readouterr()
    assert status == 1
    assert out == "one\n1\n"  # the third statement did not run
    assert err == "error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601\n"


class _Terminal:
    """A process on the slave side of a pseudo-terminal (its controlling terminal, so that Ctrl-C
    there is SIGINT to it); `expect` reads its output, CR LF read as LF."""

    def __init__(self, argv, env, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: only exec
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        import fcntl
        import termios

        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.output, self.mark = "", 0

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, needle: str, timeout: float = 60) -> str:
        """The output since the last expect, up to and including `needle`."""
        deadline = time.monotonic() + timeout
        while (found := self.output.find(needle, self.mark)) < 0:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {needle!r} within {timeout} s; output:\n{self.output[self.mark:][-3000:]}"
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                assert chunk, f"the shell ended before {needle!r}; output:\n{self.output[self.mark:][-3000:]}"
                self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        end = found + len(needle)
        text, self.mark = self.output[self.mark:end], end
        return text

    def command(self, line: str, timeout: float = 60) -> str:
        """Send `line` and return what it printed up to the next prompt."""
        self.send(line + "\n")
        return self.expect(PROMPT, timeout)

    def exit_status(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = None
                return os.waitstatus_to_exitcode(status)
            try:  # keep the terminal drained
                if select.select([self.fd], [], [], 0.2)[0]:
                    os.read(self.fd, 65536)
            except OSError:
                time.sleep(0.2)
        return None

    def close(self) -> None:
        if self.pid:  # still running: its process group holds the shell and its JVM
            os.killpg(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_shell_on_a_terminal(tmp_path):
    """Two statements on a line, a syntax error, binary cells, Up-arrow recall, Ctrl-C cancelling a
    running query, .tables / .schema, and Ctrl-D; one Spark start."""
    root = tmp_path / "root"
    flags = [x for o in overrides_for(root, "shell") for x in ("--set", o)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TERM": "dumb", "INPUTRC": "/dev/null",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    shell = _Terminal([sys.executable, "-m", "panda_spark.cli", "sql", *flags], env, tmp_path)
    try:
        shell.expect(PROMPT, timeout=240)  # Spark starts

        both = shell.command("SELECT 41 + 1 AS answer; SELECT concat('fla', 'mingo') AS bird;")
        assert "answer\n------\n42\n(1 row)\n" in both and "bird\n--------\nflamingo\n(1 row)\n" in both

        recalled = shell.command("\x1b[A")  # Up: the line above again
        assert "answer\n------\n42\n(1 row)\n" in recalled and "flamingo\n(1 row)\n" in recalled

        bad = shell.command("SELEC 1;")
        assert "\nerror: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601\n" in bad
        assert "Traceback" not in bad and "== SQL ==" not in bad

        created = shell.command("CREATE TABLE blobs (b BINARY) USING delta; "
                                "INSERT INTO blobs VALUES (X'FFD8FF00'), (X'0102');", timeout=120)
        assert "error" not in created
        blobs = shell.command("SELECT b FROM blobs ORDER BY length(b);")
        assert re.search(r"\nb\s*\n-+\n<binary 2 B>\n<jpeg 4 B>\n\(2 rows\)\n", blobs), blobs

        shell.send("SELECT count(*) FROM range(100000000000);\n")
        time.sleep(3)  # the job runs (alone it takes minutes)
        started = time.monotonic()
        shell.send("\x03")
        shell.expect("^C\ncancelled\n", timeout=60)
        print(f"cancelled {time.monotonic() - started:.1f} s after Ctrl-C")
        assert time.monotonic() - started < 30
        shell.expect(PROMPT)
        shell.send("SELECT 'an open string;\n")
        shell.expect(CONTINUATION)
        time.sleep(0.5)  # readline waits for keys (a signal before that wait is seen at the next key)
        shell.send("\x03")  # at the prompt: drops the statement being typed
        shell.expect(PROMPT)
        assert "stillhere" in shell.command("SELECT concat('still', 'here') AS alive;")

        assert re.search(r"\nblobs\s*\|\s*table\n", shell.command(".tables"))
        assert re.search(r"\nb\s*\|\s*binary\s*\|\s*True\n", shell.command(".schema blobs"))

        shell.send("\x04")  # Ctrl-D on an empty line
        assert shell.exit_status(timeout=60) == 0
        history = (root / "sql_history").read_text()
        assert "SELECT 41 + 1 AS answer; SELECT concat('fla', 'mingo') AS bird;" in history
        assert ".schema blobs" in history
    finally:
        shell.close()
