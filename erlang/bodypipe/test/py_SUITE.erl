%% Common Test suite for py: the embedded interpreter, conversions, and many
%% concurrent blocked Python readers.
-module(py_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, init_per_suite/1, end_per_suite/1]).
-export([contexts/1, exec_eval/1, eval_locals/1, exceptions/1, bad_args/1,
         to_python/1, from_python/1, big_integers/1, opaque_refs/1, call_forms/1,
         builtin_modules/1, c_extensions/1, pinned_libpython/1,
         buffer_is_pybuffer/1, many_blocked_readers/1, pool_threads_keep_their_state/1,
         caller_death_frees_the_thread/1, a_call_that_ended_keeps_its_buffers/1,
         a_block_too_large_for_a_binary_is_a_memory_error/1]).
-export([alloc_failure_probe/1]).
-export([call_async_reply/1]).

all() ->
    [contexts, exec_eval, eval_locals, exceptions, bad_args, to_python, from_python,
     big_integers, opaque_refs, call_forms, builtin_modules, c_extensions,
     pinned_libpython, buffer_is_pybuffer, many_blocked_readers, pool_threads_keep_their_state,
     caller_death_frees_the_thread, a_call_that_ended_keeps_its_buffers,
     a_block_too_large_for_a_binary_is_a_memory_error, call_async_reply].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Data = list_to_binary(?config(data_dir, Config)),
    {ok, _} = py:eval(py:context(default), <<"__import__('sys').path.insert(0, d.decode())">>, #{<<"d">> => Data}),
    Config.

end_per_suite(_Config) ->
    ok.

contexts(_Config) ->
    A = py:context(a), A2 = py:context(a), B = py:context({b, 1}),
    ok = py:exec(A, <<"x = 1">>),
    ok = py:exec(B, "x = 2"),                       % chardata works too
    {ok, 1} = py:eval(A2, <<"x">>),
    {ok, 2} = py:eval(B, <<"x">>),
    {error, {<<"NameError">>, _}} = py:eval(py:context(c), <<"x">>),
    ok.

exec_eval(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"def f(a, b):\n    return a * b\n">>),
    {ok, 42} = py:eval(C, <<"f(6, 7)">>),
    {ok, <<"é"/utf8>>} = py:eval(C, <<"'é'"/utf8>>),
    {ok, [0, 1, 4]} = py:eval(C, <<"[i*i for i in range(3)]">>),
    ok.

%% Each pool thread keeps one Python thread state for its life (rather than creating and
%% deleting one per call, which costs an mmap/munmap pair and a TLB shootdown each time), so a
%% `threading.local' set by one call is still there for the next call on the same thread.
pool_threads_keep_their_state(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"import threading\n"
                      "L = threading.local()\n"
                      "def probe():\n"
                      "    seen = getattr(L, 'ident', None)\n"
                      "    L.ident = threading.get_ident()\n"
                      "    return (L.ident, seen)\n">>),
    Results = [begin {ok, R} = py:eval(C, <<"probe()">>), R end || _ <- lists:seq(1, 400)],
    %% 400 calls on at most a few hundred threads: some thread ran more than one.
    Idents = [I || {I, _} <- Results],
    true = length(lists:usort(Idents)) < length(Idents),
    %% Every call on a thread that had run one before saw what that call stored.
    {_, []} = lists:foldl(
                fun({I, Seen}, {Before, Bad}) ->
                        case {maps:is_key(I, Before), Seen} of
                            {true, I} -> {Before, Bad};
                            {true, _} -> {Before, [{I, Seen} | Bad]};
                            {false, _} -> {Before#{I => true}, Bad}
                        end
                end, {#{}, []}, Results),
    ok.

eval_locals(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"k = 10">>),
    {ok, 13} = py:eval(C, <<"k + n">>, #{<<"n">> => 3}),
    %% visible inside comprehensions too, and not persisted
    {ok, [20, 30]} = py:eval(C, <<"[x * k for x in xs]">>, #{<<"xs">> => [2, 3]}),
    {error, {<<"NameError">>, _}} = py:eval(C, <<"n">>),
    ok.

exceptions(_Config) ->
    C = py:context(?FUNCTION_NAME),
    {error, {<<"SyntaxError">>, _}} = py:exec(C, <<"def (">>),
    {error, {<<"ZeroDivisionError">>, <<"division by zero">>}} = py:eval(C, <<"1/0">>),
    {error, {<<"ValueError">>, <<"nope">>}} = py:call(py_helpers, boom, [nope]),
    {error, {<<"ModuleNotFoundError">>, _}} = py:call(no_such_module_xyz, f, []),
    {error, {<<"AttributeError">>, _}} = py:call(py_helpers, no_such_fn, []),
    {error, {<<"TypeError">>, _}} = py:call(py_helpers, echo, [self()]),   % pid: no Python equivalent
    {error, {<<"TypeError">>, _}} = py:call(py_helpers, echo, [fun() -> ok end]),
    {error, {<<"TypeError">>, _}} = py:call(py_helpers, echo, [[a | b]]),
    ok.

bad_args(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ?assertError(badarg, py:exec(C, <<"x = 1", 0, "y">>)),        % NUL byte in code
    ?assertError(badarg, py:exec(C, 42)),
    ?assertError(badarg, py:exec(not_a_context, <<"1">>)),
    ?assertError(badarg, py:eval(C, <<"1">>, [])),
    ?assertError(badarg, py:eval(C, <<"1">>, #{notbinary => 1})),
    ?assertError(badarg, py:call(C, os, getcwd, not_a_list)),
    ?assertError(badarg, py:call(C, 42, getcwd, [])),
    ?assertError(badarg, py:call(C, os, 42, [])),
    ok.

to_python(_Config) ->
    T = fun(V) -> {ok, Name} = py:call(py_helpers, types, [V]), Name end,
    <<"bytes">> = T(<<"bin">>),
    <<"int">> = T(1),
    <<"float">> = T(1.5),
    <<"bool">> = T(true),
    <<"bool">> = T(false),
    <<"NoneType">> = T(none),
    <<"NoneType">> = T(undefined),
    <<"str">> = T(hello),
    <<"list">> = T([1, 2]),
    <<"tuple">> = T({1, 2}),
    <<"dict">> = T(#{}),
    %% binary map keys become str; other keys convert as values
    {ok, [<<"int">>, <<"str">>, <<"str">>, <<"tuple">>]} =
        py:call(py_helpers, key_types, [#{<<"wsgi.input">> => 1, atom_key => 2, 3 => 3, {t} => 4}]),
    {ok, true} = py:eval(py:context(default), <<"e['REQUEST_METHOD'] == b'POST' and e['wsgi.version'] == (1, 0)">>,
                         #{<<"e">> => #{<<"REQUEST_METHOD">> => <<"POST">>, <<"wsgi.version">> => {1, 0}}}),
    ok.

from_python(_Config) ->
    C = py:context(?FUNCTION_NAME),
    {ok, none} = py:eval(C, <<"None">>),
    {ok, true} = py:eval(C, <<"True">>),
    {ok, false} = py:eval(C, <<"False">>),
    {ok, -5} = py:eval(C, <<"-5">>),
    {ok, 2.5} = py:eval(C, <<"2.5">>),
    {ok, <<"snow ☃"/utf8>>} = py:eval(C, <<"'snow \\u2603'">>),
    {ok, <<1, 2, 3>>} = py:eval(C, <<"bytes([1, 2, 3])">>),
    {ok, <<"ba">>} = py:eval(C, <<"bytearray(b'ba')">>),
    {ok, [1, [2, {3, <<"x">>}]]} = py:eval(C, <<"[1, [2, (3, 'x')]]">>),
    {ok, #{<<"a">> := 1, 2 := [none]}} = py:eval(C, <<"{'a': 1, 2: [None]}">>),
    {ok, {}} = py:eval(C, <<"()">>),
    %% round trip of a nested term
    Term = #{<<"k">> => [1, 2.0, {<<"t">>, [none, true]}], 7 => #{}},
    {ok, Back} = py:call(py_helpers, echo, [Term]),
    #{<<"k">> := [1, 2.0, {<<"t">>, [none, true]}], 7 := #{}} = Back,
    %% too deep / cyclic structures fail cleanly
    {error, {<<"RecursionError">>, _}} = py:eval(C, <<"(lambda l: (l.append(l), l)[1])([])">>),
    ok.

big_integers(_Config) ->
    Nums = [1 bsl 63, (1 bsl 64) - 1, 1 bsl 64, -(1 bsl 63), -(1 bsl 63) - 1,
            1 bsl 200, -(1 bsl 200) + 12345, 1 bsl 3000, -(1 bsl 3000)],
    [{ok, N} = py:call(py_helpers, echo, [N]) || N <- Nums],
    {ok, true} = py:eval(py:context(default), <<"n == 2**200">>, #{<<"n">> => 1 bsl 200}),
    {ok, X} = py:eval(py:context(default), <<"-(3**500)">>),
    X = -pow3(500),
    %% Larger than the VM allows an integer to be: an error, never a wrong value.
    {error, {<<"TypeError">>, <<"integer too large for Erlang">>}} =
        py:eval(py:context(default), <<"1 << 200000000">>),
    ok.

pow3(0) -> 1;
pow3(N) -> 3 * pow3(N - 1).

opaque_refs(_Config) ->
    C = py:context(?FUNCTION_NAME),
    {ok, Gen} = py:call(C, py_helpers, gen, [3]),
    true = is_reference(Gen),
    {ok, 0} = py:call(C, Gen, '__next__', []),
    {ok, 1} = py:eval(C, <<"next(g)">>, #{<<"g">> => Gen}),
    {ok, 2} = py:call(C, builtins, next, [Gen]),
    {error, {<<"StopIteration">>, _}} = py:call(C, Gen, '__next__', []),
    {ok, Obj} = py:call(C, py_helpers, 'Counter', []),
    {ok, 1} = py:call(C, Obj, incr, []),
    {ok, 6} = py:call(C, Obj, <<"incr">>, [5]),
    {ok, S} = py:eval(C, <<"{1, 2}">>),
    {ok, 2} = py:call(C, builtins, len, [S]),
    ok.

call_forms(_Config) ->
    {ok, 4.0} = py:call(math, sqrt, [16.0]),
    {ok, 4.0} = py:call(py:context(x), <<"math">>, <<"sqrt">>, [16]),
    {ok, <<"a/b">>} = py:call('os.path', join, [a, b]),
    {ok, <<"/">>} = py:call(os, 'path.dirname', [<<"/x">>]),
    ok.

builtin_modules(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"from erlang import PyBuffer\nimport bodypipe, erlang">>),
    {ok, true} = py:eval(C, <<"erlang.PyBuffer is bodypipe.PyBuffer is PyBuffer">>),
    {ok, true} = py:eval(C, <<"erlang.BodyAborted is bodypipe.BodyAborted">>),
    {ok, <<"built-in">>} = py:eval(C, <<"'built-in' if bodypipe.__spec__.origin == 'built-in' else bodypipe.__spec__.origin">>),
    ok.

%% ERTS loads the NIF with local scope; the NIF promotes libpython to global
%% scope, so C extension modules resolve Py* symbols.
c_extensions(_Config) ->
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"import _json, _decimal, json, decimal, _struct, math">>),
    {ok, true} = py:eval(C, <<"json.decoder.c_scanstring is not None">>),
    {ok, <<"0.3333333333333333333333333333">>} = py:eval(C, <<"str(decimal.Decimal(1) / 3)">>),
    {ok, true} = py:eval(C, <<"decimal.Decimal.__module__ == 'decimal' and hasattr(_decimal, '__file__')">>),
    {ok, #{<<"a">> := [1, 2]}} = py:eval(C, <<"json.loads('{\"a\": [1, 2]}')">>),
    ok.

%% The NIF is linked with an rpath to the libpython it was built against.
pinned_libpython(_Config) ->
    #{python_version := Version, python_prefix := Prefix} = bodypipe_nif:build_info(),
    C = py:context(?FUNCTION_NAME),
    {ok, Version} = py:eval(C, <<"__import__('sys').version.replace('\\n', ' ')">>),
    %% base_prefix: the interpreter itself, also when a venv is active (erlang/test.sh runs
    %% the tests with the project venv's bin/ first on PATH).
    {ok, Prefix} = py:eval(C, <<"__import__('sys').base_prefix">>),
    #{libpython := Lib} = py:info(),
    ct:log("embedded Python ~s at ~s, libpython ~s", [Version, Prefix, Lib]),
    {match, _} = re:run(Lib, <<"^", (re_escape(Prefix))/binary>>),
    ok.

re_escape(Bin) ->
    re:replace(Bin, <<"[.^$|()\\[\\]{}*+?\\\\]">>, <<"\\\\&">>, [global, {return, binary}]).

buffer_is_pybuffer(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, <<"abc">>),
    C = py:context(?FUNCTION_NAME),
    ok = py:exec(C, <<"from erlang import PyBuffer">>),
    {ok, true} = py:eval(C, <<"isinstance(b, PyBuffer)">>, #{<<"b">> => B}),
    {ok, {3, <<"abc">>}} = py:eval(C, <<"(b.readable_amount(), bytes(memoryview(b)))">>, #{<<"b">> => B}),
    %% in an environ map
    {ok, <<"ab">>} = py:eval(C, <<"env['wsgi.input'].read(2)">>, #{<<"env">> => #{<<"wsgi.input">> => B}}),
    ok.

%% 200+ Python calls blocked in read() at once, each on its own buffer: none
%% pins a scheduler, other Python calls still run, and all finish once written.
many_blocked_readers(_Config) ->
    N = 250,
    Bufs = [begin {ok, B} = py_buffer:new(), B end || _ <- lists:seq(1, N)],
    Self = self(),
    T0 = erlang:monotonic_time(millisecond),
    Pids = [spawn_link(fun() -> Self ! {self(), py:call(bp_read, read_all, [B])} end)
            || B <- Bufs],
    ok = wait_until(fun() -> maps:get(threads, py:info()) - maps:get(idle, py:info()) >= N end, 10000),
    ct:log("py:info with ~p blocked readers: ~p", [N, py:info()]),
    %% each read is parked in the core, to be woken by its write (no polling)
    ok = wait_until(fun() -> lists:all(fun(B) -> maps:get(reader_waiting, py_buffer:info(B)) end, Bufs) end, 10000),
    [#{reader_wakes := 0, writer_wakes := 0, writer_waiting := false} = py_buffer:info(B) || B <- Bufs],
    %% nothing can have been read yet
    [receive {P, Early} -> ct:fail({early_result, P, Early}) after 0 -> ok end || P <- Pids],
    %% the VM and the interpreter stay responsive
    {ok, 2} = py:eval(py:context(default), <<"1 + 1">>),
    [ok = py_buffer:write(B, integer_to_binary(I)) || {I, B} <- lists:zip(lists:seq(1, N), Bufs)],
    [ok = py_buffer:close(B) || B <- Bufs],
    Results = [receive {P, R} -> R after 10000 -> ct:fail({blocked, P}) end || P <- Pids],
    Expected = [{ok, integer_to_binary(I)} || I <- lists:seq(1, N)],
    Expected = Results,
    %% every reader was woken by a wake syscall, and none is left registered
    [] = [I || I = #{reader_waiting := Waiting, reader_wakes := W} <- [py_buffer:info(B) || B <- Bufs],
               Waiting orelse W < 1],
    ct:comment("~p concurrent blocked readers, done in ~p ms", [N, erlang:monotonic_time(millisecond) - T0]),
    ok.

%% A process blocked in py:call on a read of a buffer it does not own is killed:
%% the call's buffers are aborted, so the Python read raises BodyAborted and the
%% pool thread is freed (the Python side records what its read saw).
caller_death_frees_the_thread(_Config) ->
    {ok, Buf} = py_buffer:new(),                  % owned by this process, which lives on
    ok = py_buffer:write(Buf, <<"partial">>),
    Caller = spawn(fun() -> py:call(bp_read, read_and_record, [Buf]) end),
    {ok, <<"reading">>} = py:call(bp_read, next_event, []),
    exit(Caller, kill),
    {ok, <<"BodyAborted: caller_down">>} = py:call(bp_read, next_event, []),
    #{aborted := true, abort_reason := <<"caller_down">>} = py_buffer:info(Buf),
    %% Nested in the arguments (a WSGI environ), the same.
    {ok, Buf2} = py_buffer:new(),
    Caller2 = spawn(fun() ->
                            py:eval(py:context(default),
                                    <<"__import__('bp_read').read_and_record(env['wsgi.input'])">>,
                                    #{<<"env">> => #{<<"wsgi.input">> => Buf2, <<"k">> => [{Buf2}]}})
                    end),
    {ok, <<"reading">>} = py:call(bp_read, next_event, []),
    exit(Caller2, shutdown),
    {ok, <<"BodyAborted: caller_down">>} = py:call(bp_read, next_event, []),
    ok.

%% The watch ends with the call: a caller that exits after its call returned
%% leaves the buffers it passed alone.
a_call_that_ended_keeps_its_buffers(_Config) ->
    {ok, Buf} = py_buffer:new(),
    ok = py_buffer:write(Buf, <<"abc">>),
    Self = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Self ! {self(), py:call(bp_read, read_some, [Buf, 3])} end),
    receive {Pid, {ok, <<"abc">>}} -> ok end,
    receive {'DOWN', Ref, process, Pid, normal} -> ok end,
    %% The monitor was removed before the result was sent, so no abort can come now.
    #{aborted := false} = py_buffer:info(Buf),
    ok = py_buffer:write(Buf, <<"more">>),
    ok = py_buffer:close(Buf),
    {ok, <<"more">>} = py:call(bp_read, read_all, [Buf]),
    ok.

%% A Python block too large to copy into an Erlang binary becomes a MemoryError
%% for the caller, where the VM used to abort ("binary_alloc: Cannot allocate").
%%
%% A real allocation failure, made cheap: in a peer VM (so this node is never at
%% risk), Python lowers the process's address-space limit (RLIMIT_AS) to what
%% the VM uses now plus 1.5 times the block, then makes the block (a zeroed
%% `bytes', whose untouched pages cost no memory). Python's copy fits; the
%% Erlang copy of the same size cannot. Without the fallible allocation the
%% peer VM dies and the call below fails with it.
a_block_too_large_for_a_binary_is_a_memory_error(_Config) ->
    Paths = lists:usort([filename:dirname(code:which(M)) || M <- [py, ?MODULE]]),
    {ok, Peer, _} = peer:start_link(#{connection => standard_io,
                                   args => lists:append([["-pa", P] || P <- Paths])}),
    try
        {Result, After} = peer:call(Peer, ?MODULE, alloc_failure_probe, [512 bsl 20], 120000),
        ct:log("result: ~p; after: ~p", [Result, After]),
        {error, {<<"MemoryError">>, Msg}} = Result,
        {match, _} = re:run(Msg, <<"536870912 bytes">>),
        %% The VM and the interpreter go on normally.
        {ok, 1000} = After
    after
        peer:stop(Peer)
    end.

%% Runs in the peer VM of a_block_too_large_for_a_binary_is_a_memory_error.
alloc_failure_probe(Size) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    C = py:context(alloc_failure),
    ok = py:exec(C, <<"import resource\n"
                      "OLD = resource.getrlimit(resource.RLIMIT_AS)\n"
                      "def vm_size():\n"
                      "    with open('/proc/self/status') as f:\n"
                      "        for line in f:\n"
                      "            if line.startswith('VmSize:'):\n"
                      "                return int(line.split()[1]) * 1024\n"
                      "def huge(n):\n"
                      "    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + n + n // 2, OLD[1]))\n"
                      "    return bytes(n)\n"
                      "def relax():\n"
                      "    resource.setrlimit(resource.RLIMIT_AS, OLD)\n">>),
    Result = py:eval(C, <<"huge(n)">>, #{<<"n">> => Size}),
    ok = py:exec(C, <<"relax()">>),
    {Result, py:eval(C, <<"len(bytes(1000))">>)}.

wait_until(Fun, Timeout) when Timeout =< 0 ->
    case Fun() of true -> ok; false -> {error, timeout} end;
wait_until(Fun, Timeout) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(50), wait_until(Fun, Timeout - 50)
    end.

%% py:call_async/4: the result arrives as {Ref, Result}, once, while the caller is free
%% to receive other messages (bodypipe_http's connection process streams a body meanwhile).
call_async_reply(_Config) ->
    C = py:context(?FUNCTION_NAME),
    {ok, Ref} = py:call_async(C, time, sleep, [0.2]),
    self() ! other,
    receive other -> ok after 5000 -> error(other_not_received) end,   % not blocked
    ?assertEqual({ok, none}, receive {Ref, R} -> R after 5000 -> timeout end),
    ?assertEqual(none, receive {Ref, _} = Again -> Again after 300 -> none end),
    {ok, Ref1} = py:call_async(C, operator, mul, [6, 7]),
    ?assertEqual({ok, 42}, receive {Ref1, R1} -> R1 after 5000 -> timeout end),
    {ok, Ref2} = py:call_async(C, builtins, int, [<<"x">>]),
    ?assertMatch({error, {<<"ValueError">>, _}}, receive {Ref2, R2} -> R2 after 5000 -> timeout end),
    ?assertError(badarg, py:call_async(C, time, sleep, not_a_list)),
    ok.
