"""The agent over real pipes, on every installed Lua (5.1 and 5.4 at least)."""

import json
import math
import re
import subprocess

import pytest

from conftest import (
    AGENT_SOURCE,
    BOOTSTRAP,
    CANDIDATES,
    INTERPRETERS,
    REQUIRED,
    TIMEOUT,
    Agent,
    encode_frame,
    lua_version,
)

REPLACEMENT = "\ufffd"


def test_required_interpreters_are_installed():
    missing = [name for name in REQUIRED if name not in INTERPRETERS]
    assert not missing, (
        f"the agent tests need {', '.join(missing)} on PATH "
        f"(Debian packages {', '.join(missing)}); found: {INTERPRETERS or 'none of ' + str(CANDIDATES)}"
    )


def test_bootstrap_is_one_short_quotable_argument():
    # The agent's source travels on stdin; only the bootstrap is on the command line.
    assert len(BOOTSTRAP) < 256
    # lua5.4 takes an -e argument that starts with '-' for an option.
    assert not BOOTSTRAP.startswith("-")
    for c in "'\0\n":
        assert c not in BOOTSTRAP
    assert "\0" not in AGENT_SOURCE


def assert_clean_traceback(error):
    assert "\nstack traceback:\n" in error, error
    assert "bioxen_agent" not in error, error
    assert "xpcall" not in error, error
    assert "tail call" not in error, error
    assert not error.rstrip().endswith("[C]: in ?"), error


# ---------------------------------------------------------------- basics


def test_ready_frame(agent, lua):
    major, minor = lua_version(lua)
    assert agent.ready == ["ready", b"2", f"Lua {major}.{minor}".encode()]


def test_return_2_plus_2(agent):
    r = agent.exec("return 2+2")
    assert r.status == "ok"
    assert r.streams == [("out", b"4\n")]
    assert r.values == [4]
    assert r.values_json == "[4]"
    assert r.error == ""


def test_no_values_no_output(agent):
    r = agent.exec("local x = 1")
    assert r.frames == [["done", b"ok", b"[]", b"", b"0"]]
    r = agent.exec("")
    assert r.frames == [["done", b"ok", b"[]", b"", b"0"]]


def test_several_values_are_printed_like_the_repl(agent):
    r = agent.exec("return 1, 'two', nil, true, setmetatable({}, {__tostring = function() return 'T' end})")
    assert r.out == b"1\ttwo\tnil\ttrue\tT\n"
    assert r.values == [1, "two", None, True, {}]


def test_output_is_captured_frame_by_frame(agent):
    r = agent.exec(
        "print('a', 1, nil) io.write('w', 2, 'x') io.stdout:write('s'):write('t') "
        "io.stderr:write('e', 1) print() io.write() io.stdout:flush() "
        "print(setmetatable({}, {__tostring = function() return 'obj' end}))"
    )
    assert r.status == "ok", r.error
    assert r.streams == [
        ("out", b"a\t1\tnil\n"),
        ("out", b"w2x"),
        ("out", b"s"),
        ("out", b"t"),
        ("err", b"e1"),
        ("out", b"\n"),
        ("out", b"obj\n"),
    ]


def test_output_streams_before_the_code_ends(agent, tmp_path):
    # The first print arrives while the code is still running: the code waits for a
    # file that the test creates only after it has seen that output.
    agent.send(
        "exec",
        "print('started') local t0 = os.time() "
        "while not io.open('go') and os.time() - t0 < 15 do end return io.open('go') ~= nil",
        "",
        "=(bioxen_vm)",
    )
    assert agent.next_frame() == ["out", b"started\n"]
    (tmp_path / "go").touch()
    r = agent.response()
    assert r.values == [True]


def test_io_write_formats_numbers_like_file_write(agent, lua):
    code = "io.write(1, ' ', 2.5, ' ', 1e100, ' ', 3.0, ' ', -0.0, ' ', 2^63)"
    expected = subprocess.run([lua, "-e", code], capture_output=True, check=True, timeout=TIMEOUT).stdout
    assert agent.exec(code).out == expected


def test_write_of_a_bad_argument_is_an_error_at_the_callers_line(agent):
    r = agent.exec("\nio.write({})")
    assert r.status == "error"
    assert r.error.startswith("(bioxen_vm):2: bad argument #1 to 'write' (string expected, got table)")
    assert_clean_traceback(r.error)


# ---------------------------------------------------------------- errors


def test_runtime_error_has_message_and_clean_traceback(agent):
    r = agent.exec("local function inner() error('boom') end\ninner()")
    assert r.status == "error"
    assert r.values == []
    assert r.out == b""
    assert r.error.startswith("(bioxen_vm):1: boom\nstack traceback:\n")
    assert_clean_traceback(r.error)
    lines = r.error.split("\n")
    assert lines[2] == "\t[C]: in function 'error'"
    assert lines[-1] == "\t(bioxen_vm):2: in main chunk"


def test_runtime_error_with_arguments(agent):
    r = agent.exec("local a = ... error('got ' .. a)", [5])
    assert r.error.startswith("(bioxen_vm):1: got 5\nstack traceback:\n")
    assert_clean_traceback(r.error)
    assert r.error.split("\n")[-1] == "\t(bioxen_vm):1: in main chunk"


def test_error_objects_follow_the_lua_message_handler(agent):
    r = agent.exec("error({})")
    assert r.error.startswith("(error object is a table value)\nstack traceback:\n")
    assert_clean_traceback(r.error)
    r = agent.exec("error(nil)")
    assert r.error.startswith("(error object is a nil value)\nstack traceback:\n")
    r = agent.exec("error(setmetatable({}, {__tostring = function() return 'custom' end}))")
    assert r.error == "custom"
    r = agent.exec("error('no position', 0)")
    assert r.error.startswith("no position\nstack traceback:\n")
    r = agent.exec("error(42)")
    assert re.match(r"^(\(bioxen_vm\):1: )?42\nstack traceback:\n", r.error), r.error


def test_error_raised_inside_an_agent_wrapper_shows_no_agent_frame(agent):
    r = agent.exec("local function f() io.read() end\nf()")
    assert r.status == "error"
    assert r.error.startswith("(bioxen_vm):1: stdin is not available in a process VM\n")
    assert_clean_traceback(r.error)


def test_syntax_error(agent):
    r = agent.exec("x = = 1")
    assert r.status == "error"
    assert r.values == []
    assert r.error.startswith("(bioxen_vm):1:")
    assert "'='" in r.error
    assert "stack traceback" not in r.error


def test_binary_chunk_is_refused(agent, lua):
    dumped = subprocess.run(
        [lua, "-e", "io.write(string.dump(function() return 1 end))"],
        capture_output=True,
        check=True,
        timeout=TIMEOUT,
    ).stdout
    assert dumped.startswith(b"\x1bLua")
    r = agent.exec(dumped)
    assert r.status == "error"
    assert "attempt to load a binary chunk" in r.error
    r = agent.repl(dumped)
    assert r.status == "error"
    assert "binary chunk" in r.error


def test_file_chunk_name_and_shebang(agent):
    r = agent.exec("#!/usr/bin/env lua\nlocal x = nil\nreturn x.y", chunkname="@/srv/job.lua")
    assert r.status == "error"
    assert r.error.startswith("/srv/job.lua:3: attempt to index")
    assert r.error.split("\n")[-1] == "\t/srv/job.lua:3: in main chunk"
    r = agent.exec("\ufeffreturn 'bom'", chunkname="@/srv/bom.lua")
    assert r.values == ["bom"]


def test_tostring_failure_when_printing_values(agent):
    r = agent.exec("return setmetatable({}, {__tostring = function() error('nope', 0) end})")
    assert r.status == "ok"
    assert r.out == b"<tostring failed: nope>\n"
    assert r.values == [{}]


# ---------------------------------------------------------------- state and REPL


def test_globals_persist_between_exec_and_repl(agent):
    assert agent.exec("counter = 41").status == "ok"
    r = agent.repl("counter + 1")
    assert (r.out, r.values) == (b"42\n", [42])
    assert agent.repl("counter = counter + 10").values == []
    assert agent.exec("return counter").values == [51]
    agent.exec("function double(x) return 2 * x end")
    assert agent.repl("double(counter)").values == [102]


def test_repl_expression_statement_and_equals(agent):
    r = agent.repl("1 + 1")
    assert (r.status, r.out, r.values) == ("ok", b"2\n", [2])
    r = agent.repl("y = 5")
    assert r.frames == [["done", b"ok", b"[]", b"", b"0"]]
    r = agent.repl("=y")
    assert (r.out, r.values) == (b"5\n", [5])
    r = agent.repl("= y * 2")
    assert r.values == [10]
    r = agent.repl("print('side')")
    assert r.streams == [("out", b"side\n")]
    assert r.values == []
    r = agent.repl("return 'explicit'")
    assert r.values == ["explicit"]
    r = agent.repl("1, 'a', nil")
    assert (r.out, r.values) == (b"1\ta\tnil\n", [1, "a", None])


def test_repl_incomplete_input_then_completion(agent):
    r = agent.repl("function f()")
    assert r.frames == [["done", b"incomplete", b"[]", b"", b"0"]]
    r = agent.repl("function f()\n  return 7", first=False)
    assert r.status == "incomplete"
    r = agent.repl("function f()\n  return 7\nend", first=False)
    assert r.frames == [["done", b"ok", b"[]", b"", b"0"]]
    assert agent.repl("f()").values == [7]
    assert agent.repl("for i = 1, 2 do").status == "incomplete"
    assert agent.repl("x = [[long").status == "incomplete"
    assert agent.repl("=(1 +").status == "incomplete"
    assert agent.repl("=(1 +\n2)", first=False).values == [3]


def test_repl_errors(agent):
    r = agent.repl("x = = 2")
    assert r.status == "error"
    assert r.error.startswith("stdin:1:")
    r = agent.repl("x = )")
    assert r.status == "error"
    r = agent.repl("error('bad')")
    assert r.status == "error"
    assert r.error.startswith("stdin:1: bad\nstack traceback:\n")
    assert_clean_traceback(r.error)
    assert r.error.split("\n")[-1] == "\tstdin:1: in main chunk"
    assert agent.repl("1").values == [1]


# ---------------------------------------------------------------- JSON in


def test_json_arguments(agent, lua):
    args = [1, -2.5, "s", True, False, None, [1, 2, [3]], {"a": {"b": [], "c": None}}, {}, 1e300]
    r = agent.exec(
        "local n = select('#', ...) local a, b, c, d, e, f, g, h, i, j = ... "
        "return n, a, b, c, d, e, f == nil, g[3][1], #h.a.b, h.a.c == nil, next(i) == nil, j",
        args,
    )
    assert r.status == "ok", r.error
    assert r.values == [10, 1, -2.5, "s", True, False, True, 3, 0, True, True, 1e300]


def test_json_integers_and_floats(agent, lua):
    if lua_version(lua) < (5, 3):
        r = agent.exec("local a, b = ... return a + b", [2, 0.5])
        assert r.values == [2.5]
        return
    r = agent.exec("local r = {} for i = 1, select('#', ...) do r[i] = math.type((select(i, ...))) end return r",
                   "[3, 3.0, -7, 1e2, 9223372036854775807, 9223372036854775808, -0]")
    assert r.values == [["integer", "float", "integer", "float", "integer", "float", "integer"]]


def test_json_strings_unicode_escapes_and_nul(agent):
    raw = '["\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r", "a\\u0000b", "\\ud800x", "h\u00e9 raw"]'
    r = agent.exec(
        "local a, b, c, d = ... local bytes = {} for i = 1, #a do bytes[i] = a:byte(i) end "
        "return table.concat(bytes, ','), #b, b:byte(2), c, d",
        raw,
    )
    assert r.status == "ok", r.error
    expected = "é😀\n\t\"\\/\b\f\r".encode()
    assert r.values[0] == ",".join(str(b) for b in expected)
    assert r.values[1:3] == [3, 0]
    assert r.values[3] == "\ufffdx"
    assert r.values[4] == "hé raw"


@pytest.mark.parametrize(
    "bad",
    ["[1,", "[1 2]", "{}", "[01]", "[1.]", "[\"\\x\"]", "[tru]", "[1] x", "[\"a\nb\"]", "[{\"a\" 1}]",
     "[{1: 2}]", "[\"\\u12\"]", "nope", "[-]"],
)
def test_malformed_json_arguments_are_an_error_result(agent, bad):
    r = agent.exec("return ...", bad)
    assert r.status == "error"
    assert r.values == []
    assert r.error.startswith("invalid JSON arguments"), r.error
    assert agent.exec("return 1").values == [1]


def test_deeply_nested_arguments(agent):
    ok = "[" * 150 + "]" * 150
    assert agent.exec("return type(...)", f"[{ok}]").values == ["table"]
    too_deep = "[" * 5000 + "]" * 5000
    r = agent.exec("return ...", too_deep)
    assert r.status == "error"
    assert "nested too deeply" in r.error


# ---------------------------------------------------------------- JSON out


def test_values_nested_tables_and_unicode(agent):
    r = agent.exec("return {1, 2, {x = 'é', y = {true, false}}, {}}, 'a\\0b', '\\1\\31\"\\\\'")
    assert r.values == [[1, 2, {"x": "é", "y": [True, False]}, {}], "a\x00b", '\x01\x1f"\\']
    assert "\\u0000" in r.values_json
    assert "\\u0001" in r.values_json


def test_values_keys_become_strings(agent):
    r = agent.exec("return {[1] = 'a', [3] = 'c'}, {[1.5] = 1, [true] = 2, k = 3}, {[0] = 'z', 'a'}")
    assert r.values == [{"1": "a", "3": "c"}, {"1.5": 1, "true": 2, "k": 3}, {"0": "z", "1": "a"}]


def test_values_invalid_utf8_becomes_replacement_character(agent):
    r = agent.exec(r"return 'a\255b', '\226\130', '\226\130\172', '\237\160\128', '\192\175', 'ok\240\159\152\128'")
    assert r.values == [
        "a\ufffdb",
        "\ufffd",
        "€",
        "\ufffd\ufffd\ufffd",
        "\ufffd\ufffd",
        "ok😀",
    ]
    # The printed text keeps the raw bytes.
    assert r.out.startswith(b"a\xffb\t")


def test_values_cycles_and_depth(agent):
    r = agent.exec("local t = {name = 'loop'} t.self = t return t")
    inner = r.values[0]["self"]
    assert re.fullmatch(r"table: 0x[0-9a-f]+", inner), inner
    assert r.out.decode().strip() == inner
    # A table seen twice but not on its own path is written twice.
    r = agent.exec("local s = {1} return {a = s, b = s}")
    assert r.values == [{"a": [1], "b": [1]}]
    r = agent.exec("local t = {} local cur = t for i = 1, 100 do cur.n = {} cur = cur.n end return t")
    v = r.values[0]
    depth = 0
    while isinstance(v, dict):
        v = v["n"]
        depth += 1
    assert depth == 64
    assert re.fullmatch(r"table: 0x[0-9a-f]+", v)


def test_values_opaque_things_do_not_call_metamethods(agent):
    r = agent.exec(
        "local mt = {__tostring = function() error('called') end, __index = function() error('idx') end,"
        " __metatable = 'locked', __pairs = function() error('pairs') end}"
        " local t = setmetatable({}, mt) t.me = t"
        " return t, print, coroutine.create(print), getmetatable(t)"
    )
    assert r.status == "ok", r.error
    me = r.values[0]["me"]
    assert re.fullmatch(r"table: 0x[0-9a-f]+", me)
    assert re.fullmatch(r"function: (builtin: )?0x[0-9a-f]+", r.values[1])
    assert re.fullmatch(r"thread: 0x[0-9a-f]+", r.values[2])
    assert r.values[3] == "locked"
    assert agent.exec("return getmetatable(setmetatable({}, {__metatable = 'x'}))").values == ["x"]


def test_values_floats(agent, lua):
    r = agent.exec("return 0.5, 0.1, 1/3, 1e300, -2.5e-8, 2^53, 123456789.125, -0.0, 1.0")
    assert r.status == "ok", r.error
    assert r.values[:7] == [0.5, 0.1, 1 / 3, 1e300, -2.5e-8, 2.0**53, 123456789.125]
    assert math.copysign(1, r.values[7]) == -1
    assert r.values[8] == 1
    text = r.values_json
    assert "0.5," in text and "0.50" not in text
    assert ",0.1," in text
    if lua_version(lua) >= (5, 3):
        assert text.endswith(",1.0]")
        assert isinstance(r.values[5], float)
    else:
        assert text.endswith(",1]")


def test_values_nan_and_infinities_are_their_tostring(agent):
    r = agent.exec("return 0/0, -(0/0), 1/0, -1/0, {math.huge}")
    assert r.status == "ok", r.error
    assert r.values[0] in ("nan", "-nan")
    assert r.values[1] in ("nan", "-nan")
    assert r.values[2:] == ["inf", "-inf", ["inf"]]
    assert r.out.decode().split("\t")[2] == "inf"


def test_values_integers(agent):
    r = agent.exec("return 0, -1, 2^31, 1e15, 9007199254740993")
    assert r.values[:4] == [0, -1, 2**31, 10**15]


# ---------------------------------------------------------------- protecting the channel


def test_stdin_is_not_available(agent):
    for code in ("io.read()", "io.read('*l')", "io.lines()", "io.stdin:read()", "io.input()",
                 "for l in io.stdin:lines() do end", "debug.debug()", "dofile()"):
        r = agent.exec(code)
        assert r.status == "error", code
        assert "stdin is not available in a process VM" in r.error, (code, r.error)
    r = agent.exec("return loadfile()")
    assert r.values[0] is None
    assert agent.exec("return 'still here'").values == ["still here"]


def test_real_files_still_work(agent, tmp_path):
    path = str(tmp_path / "data.txt")
    r = agent.exec(
        "local path = ... "
        "local f = assert(io.open(path, 'w')) f:write('one\\ntwo\\n') f:close() "
        "io.input(path) local a = io.read('*l') local lines = {} "
        "for l in io.lines(path) do lines[#lines + 1] = l end "
        "io.output(path .. '.out') io.write('to file') io.close() io.output(io.stdout) "
        "io.write('back') "
        "return a, #lines, io.open(path .. '.out'):read('*a'), io.type(io.stdout), io.output() == io.stdout, "
        "io.type(io.input()), select(2, io.stdout:close())",
        [path],
    )
    assert r.status == "ok", r.error
    assert r.streams[0] == ("out", b"back")
    assert r.values == ["one", 2, "to file", "file", True, "file", "cannot close standard file"]


def test_child_processes_do_not_touch_the_channel(agent):
    r = agent.exec(
        "print('before') os.execute('echo from-shell; echo to-err >&2; cat') print('after') "
        "local p = io.popen('echo piped; cat') local s = p:read('*a') p:close() "
        "io.open('/dev/stdout', 'w'):write('done 2 3 0\\nok[4]') "
        "return s"
    )
    assert r.status == "ok", r.error
    # The shell's output goes to the real stdout and stderr, between two sync frames.
    kinds = [f[0] for f in r.frames]
    assert kinds == ["out", "sync", "sync", "out", "out", "done"], r.frames
    assert r.values == ["piped\n"]
    r = agent.exec("return os.execute('exit 3')")
    assert r.status == "ok"
    assert r.values in ([768], [None, "exit", 3])
    assert agent.exec("return 1").values == [1]
    agent.send("quit")
    assert agent.wait() == 0
    out, err = agent.raw_output()
    assert out == b"from-shell\ndone 2 3 0\nok[4]", out
    assert err == b"to-err\n", err


def test_os_exit_code(agent):
    agent.send("exec", "io.write('bye') os.exit(3)", "", "=(bioxen_vm)")
    assert agent.next_frame() == ["out", b"bye"]
    assert agent.next_frame() is None
    assert agent.wait() == 3


def test_require_socket(agent, lua):
    has_socket = subprocess.run([lua, "-e", "require('socket')"], capture_output=True, timeout=TIMEOUT).returncode == 0
    if lua in REQUIRED:
        assert has_socket, f"LuaSocket is not installed for {lua} (Debian package lua-socket)"
    if not has_socket:
        pytest.skip(f"no LuaSocket for {lua}")
    r = agent.exec("local socket = require('socket') return type(socket.gettime())")
    assert r.values == ["number"]


# ---------------------------------------------------------------- volume


def test_huge_output_streams_without_deadlock(agent):
    r = agent.exec("for i = 1, 10 do io.write(string.rep('x', 2^20)) end io.stderr:write(string.rep('e', 2^20))",
                   timeout=60)
    assert r.status == "ok"
    assert len(r.out) == 10 * 2**20
    assert len(r.err) == 2**20
    r = agent.exec("for i = 1, 20000 do print(i) end return string.rep('v', 10 * 2^20)", timeout=60)
    assert r.out.count(b"\n") == 20001
    assert len(r.values[0]) == 10 * 2**20


def test_huge_input(agent):
    code = "return " + " + ".join(["1"] * 200000)
    r = agent.exec(code, timeout=60)
    assert r.values == [200000]
    big = "y" * (5 * 2**20)
    r = agent.exec("return #(...)", [big], timeout=60)
    assert r.values == [len(big)]


def test_a_thousand_sequential_requests(agent):
    for i in range(1, 1001):
        r = agent.exec("n = (n or 0) + 1 return n")
        assert r.values == [i]
    # More distinct chunks than the compile cache holds.
    for i in range(200):
        assert agent.exec(f"return {i}").values == [i]
    assert agent.exec("return 7").values == [7]


# ---------------------------------------------------------------- control requests


def test_code_gives_bytecode_that_starts_the_same_agent(agent, lua, tmp_path):
    agent.send("code")
    kind, code = agent.next_frame()
    assert kind == "code" and code.startswith(b"\x1bLua"), (kind, code[:8])
    again = Agent(lua, cwd=tmp_path, body=code)
    try:
        assert again.ready == agent.ready
        r = again.exec("error('boom')")
        assert r.status == "error"
        assert_clean_traceback(r.error)
        assert again.exec("return 2 + 2").values == [4]
    finally:
        again.close()


def test_bytecode_the_interpreter_refuses_exits_72_and_says_so(lua, tmp_path):
    a = Agent(lua, cwd=tmp_path, body=b"\x1bLuaX not a chunk", expect_ready=False)
    try:
        assert a.wait() == 72
        _, err = a.raw_output()
        assert err.startswith(b"bioxen-vm-agent-refused: "), err
    finally:
        a.close()


def test_ping(agent):
    agent.send("ping")
    assert agent.next_frame() == ["pong"]
    agent.send_raw(agent.request("ping") + agent.request("ping"))
    assert agent.next_frame() == ["pong"]
    assert agent.next_frame() == ["pong"]


def test_quit(agent):
    agent.send("quit")
    assert agent.next_frame() is None
    assert agent.wait() == 0


def test_eof_exits_cleanly(agent):
    agent.proc.stdin.close()
    assert agent.next_frame() is None
    assert agent.wait() == 0


@pytest.mark.parametrize(
    "raw",
    [b"bogus\n", b"exec 1 2\n", b"exec x y z\n", b"EXEC 1 1 1 1 1\n", b"ping 3 4\nabc", b"exec  1 1 1 1\n",
     b"repl 1\n", b"exec -1 0 0 0 0\n", b"\n", b"exec 1 1 1 1 1 \n", b"exec 2 99999999999999999 0 0 1\n",
     b"exec 3 0 0 0 1\nxyz1", b"exec 2 0 0 0 1\nab0", b"exec 2 0 0 0 1\nabx", b"ping 0\n"],
)
def test_malformed_frame_is_fatal(agent, raw):
    agent.send_raw(raw)
    frame = agent.next_frame()
    assert frame[0] == "fatal"
    assert frame[1]
    assert agent.next_frame() is None
    assert agent.wait() == 70


def test_truncated_frame_is_fatal(agent):
    agent.send_raw(b"exec 2 10 0 0 1\nabreturn")
    agent.proc.stdin.close()
    assert agent.next_frame() == ["fatal", b"truncated frame"]
    assert agent.wait() == 70


def test_requests_can_be_pipelined(agent):
    agent.send_raw(b"".join(agent.request("exec", "return 1", "", "=(bioxen_vm)") for _ in range(3))
                   + agent.request("ping"))
    for _ in range(3):
        assert agent.response().values == [1]
    assert agent.next_frame() == ["pong"]


def test_agent_writes_nothing_to_its_stderr(lua, tmp_path):
    a = Agent(lua, cwd=tmp_path)
    try:
        a.exec("print('x') io.stderr:write('y') error('z')")
        a.send("quit")
        assert a.wait() == 0
    finally:
        a.close()
    assert a.stderr == b""
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bounds and tokens


def test_the_limit_bounds_values_and_error_text(lua, tmp_path):
    a = Agent(lua, cwd=tmp_path, limit=100)
    try:
        r = a.exec("return string.rep('x', 1000)")
        assert r.status == "toobig"
        assert r.values_json == "[]"
        assert len(r.out) == 100
        assert int(r.frames[-1][4]) >= 900
        r = a.exec("local t = {} for i = 1, 40 do t = {t, t} end return t", timeout=10)
        assert r.status == "toobig"
        r = a.exec("error(string.rep('e', 5000), 0)")
        assert r.status == "error"
        assert r.error == "e" * 100
        assert int(r.frames[-1][4]) >= 4900
        assert a.exec("return 1").values == [1]
    finally:
        a.close()


def test_colliding_keys_become_sorted_pairs(agent):
    r = agent.exec("return {[1] = 'a', ['1'] = 'b', [true] = 'c', ['true'] = 'd'}, {x = 1}")
    assert r.values == [{"$lua_pairs": [["1", "b"], ["true", "d"], [1, "a"], [True, "c"]]}, {"x": 1}]


def test_every_response_frame_carries_the_request_token(agent):
    agent.send("exec", "print(1) io.stderr:write('e') os.execute('true') return 2", "", "=(bioxen_vm)")
    frames = []
    while not frames or frames[-1][0] != "done":
        frames.append(agent.next_frame())
    # The reader thread checked each token against the request's; all kinds came.
    assert [f[0] for f in frames] == ["out", "err", "sync", "sync", "out", "done"]
