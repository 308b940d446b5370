"""`panda-spark sql`: one query (or `;`-separated statements) from the command line, or the SQL shell.

The shell reads statements ending in `;` (several on a line, or one over several lines) and prints
each result; a failing statement prints one `error: ...` line (Spark's message with its error class)
and the shell goes on. On a terminal it has line editing and history (GNU readline; the history
file is `<paths.root>/sql_history`, or `~/.panda_sql_history` when paths.root is not a local
directory). Ctrl-C during a statement cancels its Spark jobs and returns to the prompt; Ctrl-C at the
prompt drops the line being typed; Ctrl-D, `exit` or `quit` leaves. `.tables`, `.schema NAME` and
`.help` are shell commands (no `;`). Both the query and the shell run in the configured schema
(`USE <catalog.schema>`), so the pipeline's tables are reachable without a schema prefix, and
Spark logs errors only (its warnings would land between the results).

The pure parts (:func:`split_statements`, :func:`display_value`, :func:`error_line`) need no Spark.
"""
from __future__ import annotations

import itertools
import json
import logging
import signal
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, TextIO

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException

from panda_spark.config import Config
from panda_spark.spark import quote_name
from panda_spark.tabular import write_rows

PROMPT = "panda-sql> "
CONTINUATION = "        -> "
# A table cell longer than this is cut (with "…"): one caption fits, an embedding array does not.
MAX_CELL_CHARS = 200
HISTORY_LINES = 1000
# What a failing statement raises: Spark's errors PySpark converts, and the JVM errors it does not.
_STATEMENT_ERRORS = (PySparkException, Py4JJavaError)
Query = Callable[[], "tuple[list[str], list[dict]]"]  # runs on the shell's worker thread: (columns, rows)
HELP = """\
Statements end with ';' (several per line, or one over several lines).
  .tables          tables and views of the configured schema
  .schema NAME     columns and types of a table or view
  .help            this text
  exit, quit, Ctrl-D   leave;  Ctrl-C   cancel the running statement, or drop the line being typed
"""

# (magic bytes, offset, label) of the binary contents worth naming in a result cell
_MAGIC = ((b"\xff\xd8\xff", 0, "jpeg"), (b"\x89PNG\r\n\x1a\n", 0, "png"), (b"GIF8", 0, "gif"),
          (b"ftyp", 4, "mp4"))


def split_statements(text: str) -> tuple[list[str], str]:
    """Split `text` at each `;` outside string literals ('…', "…", with backslash escapes; r'…'
    raw), backtick identifiers and comments (`-- …` to the end of the line, nested `/* … */`).

    Returns the complete statements, stripped, without their `;` (empty ones and those holding only
    comments dropped), and the unfinished rest after the last `;`: "" when it holds nothing but
    whitespace and comments, else the rest as is (also inside an open literal or comment)."""
    statements: list[str] = []
    start, i, has_code = 0, 0, False
    while i < len(text):
        char = text[i]
        if char in "'\"`":
            end = _literal_end(text, i)
            if end is None:
                return statements, text[start:]
            i, has_code = end, True
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = len(text) if newline < 0 else newline + 1
        elif text.startswith("/*", i):
            end = _comment_end(text, i)
            if end is None:
                return statements, text[start:]
            i = end
        else:
            if char == ";":
                if has_code:
                    statements.append(text[start:i].strip())
                start, has_code = i + 1, False
            elif not char.isspace():
                has_code = True
            i += 1
    return statements, text[start:] if has_code else ""


def _literal_end(text: str, i: int) -> int | None:
    """Index after the literal or identifier opened by the quote at `i`; None while it is open.
    A doubled quote ('' or ``) reads as a close and a new open, which splits the same way."""
    quote = text[i]
    raw = i > 0 and text[i - 1] in "rR" and not (i > 1 and (text[i - 2].isalnum() or text[i - 2] == "_"))
    escapes = quote != "`" and not raw
    j = i + 1
    while j < len(text):
        if escapes and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    return None


def _comment_end(text: str, i: int) -> int | None:
    """Index after the `/* … */` comment opening at `i` (Spark nests them); None while it is open."""
    depth, j = 0, i
    while j < len(text) - 1:
        pair = text[j:j + 2]
        if pair in ("/*", "*/"):
            depth += 1 if pair == "/*" else -1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return None


def display_value(value: object, max_chars: int | None = None) -> object:
    """A result cell as printed: binary as `<jpeg 16.8 KB>`, `<png 1.2 MB>` or `<binary 300 B>` (also
    inside arrays and structs). With `max_chars` (the table format) strings, arrays and structs
    become text of at most `max_chars` characters, cut with "…"."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return binary_label(bytes(value))
    if isinstance(value, dict):
        value = {k: display_value(v) for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        value = [display_value(v) for v in value]
    if max_chars is None:
        return value
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and len(value) > max_chars:
        return value[:max_chars - 1] + "…"
    return value


def binary_label(data: bytes) -> str:
    kind = next((label for magic, at, label in _MAGIC if data[at:at + len(magic)] == magic), "binary")
    return f"<{kind} {_size(len(data))}>"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def error_line(exc: BaseException) -> str:
    """One line for a failed statement: Spark's message with its error class and SQLSTATE, without
    the plan, the SQL excerpt or a stack trace, e.g.
    `error: [PARSE_SYNTAX_ERROR] Syntax error at or near 'SELEC'. SQLSTATE: 42601`."""
    java = getattr(exc, "java_exception", None)  # py4j's Py4JJavaError: a JVM error PySpark does not convert
    if hasattr(exc, "getMessage"):  # PySparkException
        text = exc.getMessage()
    elif java is not None:
        message = java.getMessage() or ""
        text = message if message.startswith("[") else java.toString()
    else:
        text = f"{type(exc).__name__}: {exc}"
    lines = [line.strip() for line in str(text).splitlines() if line.strip()] or [type(exc).__name__]
    state = next((line[line.rindex("SQLSTATE"):] for line in lines[1:] if "SQLSTATE" in line), "")
    return f"error: {lines[0]}" + (f" {state}" if state and "SQLSTATE" not in lines[0] else "")


def history_path(cfg: Config) -> Path:
    if "://" in cfg.paths.root:
        return Path.home() / ".panda_sql_history"
    return Path(cfg.paths.root) / "sql_history"


def run_sql(spark, cfg: Config, query: str | None, fmt: str) -> int:
    """`panda-spark sql`: the statements of `query` (stdout: results; stderr: one line on failure;
    status 1 at the first failing statement, 130 when cancelled with Ctrl-C), else the shell on
    stdin (see :func:`sql_shell`)."""
    from pyspark.logger import PySparkLogger

    # PySpark logs every SQL error with its JVM stack trace on stderr; the shell reports it in one line.
    PySparkLogger.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    spark.sparkContext.setLogLevel("ERROR")
    spark.sql(f"USE {quote_name(_schema(cfg))}")
    if query is None:
        return sql_shell(spark, cfg, sys.stdout, fmt, lines=None if sys.stdin.isatty() else sys.stdin)
    statements, rest = split_statements(query)
    with _Runner(spark) as runner:
        for statement in [*statements, *([rest] if rest else [])]:
            try:
                runner.print(partial(_query, spark, statement), fmt, sys.stdout)
            except KeyboardInterrupt:
                print("cancelled", file=sys.stderr)
                return 130
            except _STATEMENT_ERRORS as exc:
                print(error_line(exc), file=sys.stderr)
                return 1
    return 0


def sql_shell(spark, cfg: Config, out: TextIO, fmt: str = "table", lines: TextIO | None = None) -> int:
    """Run statements until Ctrl-D, `exit` or `quit` (see the module doc). `lines` None: the terminal,
    with prompts, readline editing and history; exit status 0. Else statements come from `lines`,
    without prompts; exit status 1 when any failed."""
    terminal = lines is None
    read = _TerminalReader(history_path(cfg)) if terminal else _LinesReader(lines)
    failed, buffer = 0, ""
    with _Runner(spark) as runner, read:
        while True:
            try:
                line = read.line(CONTINUATION if buffer else PROMPT)
            except KeyboardInterrupt:
                out.write("\n")
                buffer = ""
                continue
            except EOFError:
                out.write("\n" if terminal else "")
                break
            command = line.strip()
            if not buffer and command.rstrip(";") in ("exit", "quit"):
                break
            if not buffer and command.startswith("."):
                query = _dot_command(spark, cfg, command)
                if query is None:
                    out.write(HELP if command == ".help" else f"error: unknown command {command!r} (.help)\n")
                    failed += command != ".help"
                    continue
                queries = [query]
            else:
                statements, buffer = split_statements(buffer + line + "\n")
                queries = [partial(_query, spark, statement) for statement in statements]
            for query in queries:
                failed += not _print_or_report(runner, query, fmt, out, terminal)
    return 0 if terminal else min(failed, 1)


def _query(spark, statement: str) -> tuple[list[str], list[dict]]:
    df = spark.sql(statement)
    return df.columns, [row.asDict(recursive=True) for row in df.collect()]


def _dot_command(spark, cfg: Config, command: str) -> Query | None:
    """The query behind `.tables` or `.schema NAME`; None for any other command."""
    name, _, argument = command.partition(" ")
    argument = argument.strip().rstrip(";").strip()
    if name == ".tables":
        return lambda: (["name", "type"], [
            {"name": t.name, "type": "view" if t.tableType in ("VIEW", "TEMPORARY") else "table"}
            for t in sorted(spark.catalog.listTables(_schema(cfg)), key=lambda t: t.name)])
    if name == ".schema" and argument:
        return lambda: (["column", "type", "nullable"], [
            {"column": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable}
            for f in spark.table(argument).schema.fields])
    return None


def _print_or_report(runner: _Runner, query: Query, fmt: str, out: TextIO, terminal: bool) -> bool:
    """Print the result of `query`, or one line when it fails or is cancelled; whether it ran."""
    try:
        runner.print(query, fmt, out)
        return True
    except KeyboardInterrupt:
        out.write("\ncancelled\n" if terminal else "cancelled\n")  # on a terminal after its "^C"
    except _STATEMENT_ERRORS as exc:
        out.write(error_line(exc) + "\n")
    return False


def _schema(cfg: Config) -> str:
    return f"{cfg.catalog.catalog}.{cfg.catalog.schema}" if cfg.catalog.catalog else cfg.catalog.schema


class _Runner:
    """Runs each query on one worker thread under its own Spark job group, so that Ctrl-C in the
    main thread (KeyboardInterrupt) can cancel its jobs and wait for it to end."""

    def __init__(self, spark) -> None:
        self.spark = spark
        self._groups = (f"panda-sql-{n}" for n in itertools.count())
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panda-sql")
        self._previous_handler = None

    def __enter__(self) -> _Runner:
        if threading.current_thread() is threading.main_thread():
            # PySpark's own SIGINT handler cancels every job of the context; ours cancels the statement's.
            self._previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc_info) -> None:
        self._pool.shutdown(wait=False)
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)

    def print(self, query: Query, fmt: str, out: TextIO) -> None:
        """Run `query` and print its result; KeyboardInterrupt once its jobs are cancelled."""
        group = next(self._groups)
        columns, rows = self._wait(self._pool.submit(self._in_group, group, query), group)
        if not columns:  # DDL and commands without a result
            out.write("OK\n" if fmt == "table" else "")
            return
        max_chars = MAX_CELL_CHARS if fmt == "table" else None
        write_rows(columns, [{c: display_value(v, max_chars) for c, v in row.items()} for row in rows], fmt, out)

    def _in_group(self, group: str, query: Query):
        self.spark.sparkContext.setJobGroup(group, "panda-spark sql")
        return query()

    def _wait(self, future: Future, group: str):
        try:
            return future.result()
        except KeyboardInterrupt:
            pass
        # A statement can start jobs after the first cancel (one job after another): cancel its
        # group until it ends. Spark's "job cancelled" error then ends it.
        while True:
            self.spark.sparkContext.cancelJobGroup(group)
            try:
                result = future.result(timeout=0.5)
            except (TimeoutError, KeyboardInterrupt):
                continue
            except Exception:
                raise KeyboardInterrupt from None
            return result  # it ended before Spark cancelled anything


class _LinesReader:
    def __init__(self, lines: TextIO) -> None:
        self._lines = lines

    def __enter__(self) -> _LinesReader:
        return self

    def __exit__(self, *exc_info) -> None:
        pass

    def line(self, prompt: str) -> str:
        line = self._lines.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")


class _TerminalReader(_LinesReader):
    """input() with GNU readline: line editing, and history kept in `path` between sessions."""

    def __init__(self, path: Path) -> None:
        import readline

        self._readline, self._path = readline, path

    def __enter__(self) -> _TerminalReader:
        self._readline.set_history_length(HISTORY_LINES)
        if self._path.exists():
            self._readline.read_history_file(self._path)
        return self

    def __exit__(self, *exc_info) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._readline.write_history_file(self._path)

    def line(self, prompt: str) -> str:
        return input(prompt)


