%% End-to-end tests of bodypipe_http: the demo WSGI apps (demo/) served by
%% bodypipe_http in this VM, driven by real clients (curl, Python's http.client)
%% over 127.0.0.1. The `validated' group runs the same tests with every app
%% wrapped in `wsgiref.validate.validator' (its warnings turned into errors).
-module(bodypipe_http_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, suite/0, init_per_suite/1, end_per_suite/1,
         init_per_group/2, end_per_group/2, init_per_testcase/2, end_per_testcase/2]).
-export([environ/1, fixed_length_upload/1, chunked_upload/1, empty_and_get/1, line_echo/1,
         multipart_form/1, flask_app/1, too_large/1, client_disconnect/1,
         concurrent_100/1, upload_1gib/1, slow_app_bounded_memory/1, inflight_200/1,
         keep_alive/1, pep3333_errors/1, iterable_close/1, early_response/1]).

-define(MAX_BODY, ((1 bsl 30) + (1 bsl 20))).   % 1 GiB + 1 MiB: the 1 GiB test fits

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [{group, plain}, {group, validated}].

groups() ->
    Common = [environ, fixed_length_upload, chunked_upload, empty_and_get, line_echo,
              multipart_form, flask_app, too_large, client_disconnect, keep_alive, concurrent_100],
    [{plain, [], Common ++ [pep3333_errors, iterable_close, early_response,
                            upload_1gib, slow_app_bounded_memory, inflight_200]},
     {validated, [], Common}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Root = filename:join([code:lib_dir(bodypipe), "..", "..", "..", "..", ".."]),
    Demo = filename:absname(filename:join(Root, "demo")),
    true = filelib:is_regular(filename:join(Demo, "demo_app.py")),
    [{demo_dir, Demo} | Config].

end_per_suite(_Config) ->
    ok.

init_per_group(Group, Config) ->
    Name = list_to_atom("bodypipe_http_" ++ atom_to_list(Group)),
    %% The demo's apps, plus the corner-case apps of bp_http_apps.py at /t.
    {ok, _} = bodypipe_demo:start(#{name => Name, port => 0, validate => Group =:= validated,
                                    python_path => [?config(demo_dir, Config),
                                                    ?config(data_dir, Config)],
                                    apps => [{<<"/flask">>, <<"demo_flask:app">>},
                                             {<<"/t">>, <<"bp_http_apps:application">>},
                                             {<<"">>, <<"demo_app:application">>}],
                                    max_body => ?MAX_BODY}),
    [{server, Name}, {port, bodypipe_http:port(Name)}, {validated, Group =:= validated} | Config].

end_per_group(_Group, Config) ->
    bodypipe_http:stop(?config(server, Config)).

init_per_testcase(_Case, Config) ->
    {ok, _} = py:call(demo_app, reset_stats, []),
    Config.

end_per_testcase(_Case, _Config) ->
    ok.

%% ---------------------------------------------------------------------------

environ(Config) ->
    {200, Body} = curl(Config, ["-X", "POST", "--data-binary", "hello body",
                                "-H", "Content-Type: text/x-test", "-H", "X-Custom-Thing: 42",
                                "-H", "X_Bad: dropped"],
                       "/environ/a%20b/%C3%A9?q=1&r=%20"),
    Env = json(Body),
    ?assertEqual(<<"POST">>, maps:get(<<"REQUEST_METHOD">>, Env)),
    ?assertEqual(<<"">>, maps:get(<<"SCRIPT_NAME">>, Env)),
    %% PATH_INFO is unquoted; its bytes arrive as latin-1 code points (PEP 3333).
    ?assertEqual(<<"/environ/a b/", 16#c3/utf8, 16#a9/utf8>>, maps:get(<<"PATH_INFO">>, Env)),
    ?assertEqual(<<"q=1&r=%20">>, maps:get(<<"QUERY_STRING">>, Env)),
    ?assertEqual(<<"10">>, maps:get(<<"CONTENT_LENGTH">>, Env)),
    ?assertEqual(<<"text/x-test">>, maps:get(<<"CONTENT_TYPE">>, Env)),
    ?assertEqual(<<"42">>, maps:get(<<"HTTP_X_CUSTOM_THING">>, Env)),
    ?assertNot(maps:is_key(<<"HTTP_X_BAD">>, Env)),
    ?assertNot(maps:is_key(<<"HTTP_CONTENT_TYPE">>, Env)),
    ?assertEqual(<<"127.0.0.1">>, maps:get(<<"SERVER_NAME">>, Env)),
    ?assertEqual(integer_to_binary(?config(port, Config)), maps:get(<<"SERVER_PORT">>, Env)),
    ?assertEqual(<<"HTTP/1.1">>, maps:get(<<"SERVER_PROTOCOL">>, Env)),
    ?assertEqual(<<"127.0.0.1">>, maps:get(<<"REMOTE_ADDR">>, Env)),
    ?assertEqual([1, 0], maps:get(<<"wsgi.version">>, Env)),
    ?assertEqual(<<"http">>, maps:get(<<"wsgi.url_scheme">>, Env)),
    ?assertEqual(true, maps:get(<<"wsgi.input_terminated">>, Env)),
    ?assertEqual(true, maps:get(<<"wsgi.multithread">>, Env)),
    ?assertEqual(false, maps:get(<<"wsgi.multiprocess">>, Env)),
    ?assertEqual(false, maps:get(<<"wsgi.run_once">>, Env)),
    ?assertEqual(<<"hello body">>, maps:get(<<"body">>, Env)),
    Input = case ?config(validated, Config) of
                true -> <<"InputWrapper">>;
                false -> <<"PyBuffer">>
            end,
    ?assertEqual(Input, maps:get(<<"wsgi.input">>, Env)),
    {200, Flask} = curl(Config, [], "/flask/"),
    ?assertMatch(#{<<"script_root">> := <<"/flask">>, <<"path">> := <<"/">>}, json(Flask)).

fixed_length_upload(Config) ->
    File = random_file(Config, "fixed.bin", 5 * 1000 * 1000 + 7),
    {200, Body} = curl(Config, ["-T", File], "/upload"),
    ?assertEqual(expected(File), json(Body)).

chunked_upload(Config) ->
    File = random_file(Config, "chunked.bin", 3 * 1000 * 1000 + 1),
    {200, Body} = curl(Config, ["-T", "-"], "/upload", File),   % stdin: chunked
    ?assertEqual(expected(File), json(Body)).

empty_and_get(Config) ->
    {200, B1} = curl(Config, ["-X", "POST", "--data-binary", ""], "/upload"),
    ?assertEqual(#{<<"size">> => 0, <<"sha256">> => sha_hex(<<>>)}, json(B1)),
    {200, B2} = curl(Config, ["-X", "PUT", "-H", "Transfer-Encoding: chunked", "--data-binary", ""],
                     "/upload"),
    ?assertEqual(#{<<"size">> => 0, <<"sha256">> => sha_hex(<<>>)}, json(B2)),
    {200, Help} = curl(Config, [], "/"),
    ?assertMatch({_, _}, binary:match(Help, <<"bodypipe demo">>)),
    {404, _} = curl(Config, [], "/nothing-here").

line_echo(Config) ->
    Lines = iolist_to_binary([io_lib:format("line ~b ~s~n", [I, lists:duplicate(I rem 97, $x)])
                              || I <- lists:seq(1, 20000)]),
    File = filename:join(?config(priv_dir, Config), "lines.txt"),
    ok = file:write_file(File, Lines),
    {200, Echo} = curl(Config, ["-T", "-"], "/echo", File),
    ?assertEqual(byte_size(Lines), byte_size(Echo)),
    ?assertEqual(Lines, Echo),
    {200, Echo2} = curl(Config, ["-T", File], "/flask/echo"),
    ?assertEqual(Lines, Echo2).

multipart_form(Config) ->
    File = random_file(Config, "form.bin", 2 * 1000 * 1000 + 3),
    {200, Body} = curl(Config, ["-F", "greeting=hello world", "-F", "file=@" ++ File], "/form"),
    #{<<"size">> := Size, <<"sha256">> := Sha} = expected(File),
    ?assertMatch(#{<<"fields">> := #{<<"greeting">> := <<"hello world">>},
                   <<"files">> := #{<<"file">> := #{<<"filename">> := <<"form.bin">>,
                                                    <<"size">> := Size, <<"sha256">> := Sha}}},
                 json(Body)),
    {200, Flask} = curl(Config, ["-F", "greeting=hi", "-F", "file=@" ++ File], "/flask/form"),
    ?assertMatch(#{<<"fields">> := #{<<"greeting">> := <<"hi">>},
                   <<"files">> := #{<<"file">> := #{<<"sha256">> := Sha}}}, json(Flask)).

flask_app(Config) ->
    File = random_file(Config, "flask.bin", 4 * 1000 * 1000),
    {200, Body} = curl(Config, ["-T", File], "/flask/upload"),
    ?assertEqual(expected(File), json(Body)),
    {200, Body2} = curl(Config, ["-T", "-"], "/flask/upload", File),
    ?assertEqual(expected(File), json(Body2)).

too_large(Config) ->
    %% Declared too large: 413 before any byte of the body is read.
    Big = integer_to_list(?MAX_BODY + 1),
    #{<<"status">> := 413} = json(client(Config, ["status", "PUT", "/upload", Big])),
    %% Chunked and growing past the limit: 413 as well (a smaller server).
    Name = bodypipe_http_small,
    {ok, _} = bodypipe_demo:start(#{name => Name, port => 0, validate => ?config(validated, Config),
                                    python_path => [?config(demo_dir, Config)],
                                    max_body => 1 bsl 20}),
    try
        File = random_file(Config, "toolarge.bin", 3 bsl 20),
        {413, _} = curl([{port, bodypipe_http:port(Name)} | Config], ["-T", "-"], "/upload", File),
        {200, _} = curl([{port, bodypipe_http:port(Name)} | Config], ["-T", "-"], "/upload",
                        random_file(Config, "small.bin", 1000))
    after
        bodypipe_http:stop(Name)
    end.

client_disconnect(Config) ->
    #{<<"sent">> := _} = json(client(Config, ["disconnect", "10000000", "1000000"])),
    Stats = wait_stats(fun(#{<<"aborted">> := A}) -> A >= 1 end),
    #{<<"last_abort">> := Reason} = Stats,
    ct:pal("the app saw: ~ts", [Reason]),
    ?assertMatch({_, _}, binary:match(Reason, <<"BodyAborted">>)),
    ?assertMatch({_, _}, binary:match(Reason, <<"client_disconnected">>)),
    %% The server keeps serving.
    fixed_length_upload(Config).

keep_alive(Config) ->
    %% Two uploads on one connection: the second reuses it.
    File = random_file(Config, "ka.bin", 100000),
    Url = url(Config, "/upload"),
    {0, Out} = run("curl", ["-sS", "-v", "-T", File, Url, "-T", File, Url], undefined, 60000),
    ?assertMatch({_, _}, binary:match(Out, <<"Re-using existing connection">>)),
    #{<<"sha256">> := Sha} = expected(File),
    ?assertEqual(2, length(binary:matches(Out, Sha))).

concurrent_100(Config) ->
    Out = client(Config, ["concurrent", "100", integer_to_list(256 * 1024)]),
    ct:pal("100 concurrent uploads: ~ts", [Out]),
    ?assertMatch(#{<<"ok">> := 100, <<"failed">> := 0}, json(Out)).

upload_1gib(Config) ->
    File = filename:join(?config(priv_dir, Config), "1gib.bin"),
    {0, _} = run("sh", ["-c", "head -c 1073741824 /dev/urandom > " ++ File], undefined, 60000),
    {0, ShaLine} = run("sha256sum", [File], undefined, 60000),
    [Sha | _] = binary:split(ShaLine, <<" ">>),
    T0 = erlang:monotonic_time(millisecond),
    {200, Body} = try curl(Config, ["-T", File], "/upload") after file:delete(File) end,
    Ms = erlang:monotonic_time(millisecond) - T0,
    ?assertEqual(#{<<"size">> => 1 bsl 30, <<"sha256">> => Sha}, json(Body)),
    Msg = io_lib:format("1 GiB fixed-length upload: ~.2f s, ~b MB/s, sha256 matches",
                        [Ms / 1000, round((1 bsl 30) / 1000 / max(Ms, 1))]),
    ct:pal("~s", [Msg]),
    {comment, lists:flatten(Msg)}.

slow_app_bounded_memory(Config) ->
    %% A fast client (curl from /dev/zero) and an app that sleeps 2 ms per
    %% 64 KiB read: the server must not hold the body, only max_buffered.
    Size = 128 bsl 20,
    ok = file:write_file("/proc/self/clear_refs", <<"5">>),   % reset VmHWM
    Base = vm_kib("VmRSS"),
    BaseErl = erlang:memory(total),
    Sampler = spawn_link(fun() -> sample(0) end),
    {200, Body} = curl(Config, ["-T", "-", "-H", "Expect:"], "/upload?delay_ms=2",
                       {cmd, "head -c " ++ integer_to_list(Size) ++ " /dev/zero"}),
    Sampler ! {self(), stop},
    PeakErl = receive {Sampler, P} -> P after 5000 -> error(no_sample) end,
    Hwm = vm_kib("VmHWM"),
    ?assertMatch(#{<<"size">> := Size}, json(Body)),
    Msg = io_lib:format("slow app, ~b MiB upload: VM RSS before ~b MiB, peak (VmHWM) ~b MiB; "
                        "erlang:memory(total) before ~b MiB, peak ~b MiB",
                        [Size bsr 20, Base div 1024, Hwm div 1024, BaseErl bsr 20, PeakErl bsr 20]),
    ct:pal("~s", [Msg]),
    %% Bounded: far below the body size (1 MiB buffered per request plus noise).
    ?assert(Hwm - Base < 48 * 1024),
    ?assert(PeakErl - BaseErl < 48 bsl 20),
    {comment, lists:flatten(Msg)}.

inflight_200(Config) ->
    N = 200,
    Port = open_port({spawn_executable, os:find_executable("python3")},
                     [{args, [client_py(Config), "inflight", integer_to_list(?config(port, Config)),
                              integer_to_list(N), integer_to_list(256 * 1024)]},
                      binary, {line, 65536}, exit_status, use_stdio]),
    receive {Port, {data, {eol, <<"ready">>}}} -> ok after 60000 -> error(not_ready) end,
    %% Every app is now blocked reading the second half of its body.
    Stats = wait_stats(fun(#{<<"active">> := A}) -> A >= N end),
    Info = py:info(),
    ct:pal("~b uploads in flight, apps blocked reading: stats ~p, py:info ~p", [N, Stats, Info]),
    ?assertEqual(N, maps:get(<<"active">>, Stats)),
    true = port_command(Port, <<"go\n">>),
    {0, Out} = collect(Port, [], 120000),
    ct:pal("~ts", [Out]),
    ?assertMatch(#{<<"ok">> := N, <<"failed">> := 0}, json(lists:last(binary:split(Out, <<"\n">>, [global, trim])))),
    {comment, lists:flatten(io_lib:format("~b uploads in flight at once, each app blocked reading; "
                                          "py threads ~b", [N, maps:get(threads, Info)]))}.

pep3333_errors(Config) ->
    %% An exception before the headers: 500.
    {500, _} = curl(Config, [], "/t/raise"),
    {500, _} = curl(Config, [], "/t/no_start"),
    %% start_response again with exc_info before any body: the new status wins.
    {503, <<"replaced\n">>} = curl(Config, [], "/t/exc_info"),
    %% exc_info after the headers are out: re-raised, the response is cut short
    %% (curl: 18, transfer closed with outstanding read data).
    {18, Late} = run("curl", ["-sS", url(Config, "/t/exc_info_late")], undefined, 30000),
    ?assertMatch({_, _}, binary:match(Late, <<"first block">>)),
    {18, Late2} = run("curl", ["-sS", url(Config, "/t/late_error")], undefined, 30000),
    ?assertMatch({_, _}, binary:match(Late2, <<"partial">>)),
    %% write() before the iterable, empty blocks skipped, headers kept.
    {200, <<"hello world\n">>} = curl(Config, [], "/t/write"),
    {0, Hdrs} = run("curl", ["-sS", "-i", url(Config, "/t/empty_first")], undefined, 30000),
    ?assertMatch({_, _}, binary:match(Hdrs, <<"HTTP/1.1 201 Created">>)),
    ?assertMatch({_, _}, binary:match(Hdrs, <<"X-Thing: 1">>)),
    ?assertMatch({_, _}, binary:match(Hdrs, <<"after empties">>)),
    %% The app's Content-Length: blocks sent as they are, no chunking.
    {0, Len} = run("curl", ["-sS", "-i", url(Config, "/t/length")], undefined, 30000),
    ?assertMatch({_, _}, binary:match(Len, <<"Content-Length: 12">>)),
    ?assertEqual(nomatch, binary:match(Len, <<"chunked">>)),
    ?assertMatch({_, _}, binary:match(Len, <<"hello world!">>)),
    %% HEAD: headers only.
    {0, Head} = run("curl", ["-sS", "-I", url(Config, "/t/length")], undefined, 30000),
    ?assertEqual(nomatch, binary:match(Head, <<"hello">>)),
    %% HTTP/1.0 client, streamed response: close-delimited.
    {0, Old} = run("curl", ["-sS", "-0", url(Config, "/t/write")], undefined, 30000),
    ?assertEqual(<<"hello world\n">>, Old).

iterable_close(Config) ->
    {ok, #{<<"count">> := C0}} = py:call(bp_http_apps, closed, []),
    {200, _} = curl(Config, [], "/t/write"),
    {200, _} = curl(Config, [], "/t/length"),
    {ok, #{<<"count">> := C1}} = py:call(bp_http_apps, closed, []),
    ?assertEqual(C0 + 2, C1),
    %% A client that goes away mid-response: close() is still called, and the
    %% iterable is not stepped to its end.
    {_, _} = run("sh", ["-c", "curl -sS " ++ url(Config, "/t/endless") ++ " | head -c 100000 > /dev/null"],
                 undefined, 30000),
    wait_until(fun() ->
                       {ok, #{<<"count">> := C}} = py:call(bp_http_apps, closed, []),
                       C =:= C1 + 1
               end),
    {ok, #{<<"blocks">> := Blocks}} = py:call(bp_http_apps, closed, []),
    ct:pal("endless response: ~b blocks stepped before the client left", [Blocks]),
    ?assert(Blocks < 200000).

early_response(Config) ->
    %% The app answers without reading a 20 MB body: the client gets the response
    %% (Connection: close, the rest drained), not a reset; the server goes on.
    File = random_file(Config, "early.bin", 20 * 1000 * 1000),
    {0, Out} = run("curl", ["-sS", "-i", "-H", "Expect:", "-T", File, url(Config, "/t/ignore_body")],
                   undefined, 30000),
    ?assertMatch({_, _}, binary:match(Out, <<"did not read the body">>)),
    ?assertMatch({_, _}, binary:match(Out, <<"Connection: close">>)),
    fixed_length_upload(Config).

%% ---------------------------------------------------------------------------
%% Helpers.

wait_until(Fun) ->
    wait_until(Fun, 100).

wait_until(_Fun, 0) ->
    error(wait_until_timeout);
wait_until(Fun, N) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(100), wait_until(Fun, N - 1)
    end.


url(Config, Path) ->
    "http://127.0.0.1:" ++ integer_to_list(?config(port, Config)) ++ Path.

curl(Config, Args, Path) ->
    curl(Config, Args, Path, undefined).

%% curl, with stdin from a file or a command when asked; returns {Status, Body}.
curl(Config, Args, Path, Stdin) ->
    Cmd = ["-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}" | Args] ++ [url(Config, Path)],
    {0, Out} = case Stdin of
                   undefined -> run("curl", Cmd, undefined, 130000);
                   {cmd, Shell} -> run("sh", ["-c", Shell ++ " | curl " ++ lists:join(" ", [quote(A) || A <- Cmd])],
                                       undefined, 130000);
                   File -> run("sh", ["-c", "curl " ++ lists:join(" ", [quote(A) || A <- Cmd]) ++ " < " ++ quote(File)],
                               undefined, 130000)
               end,
    [Code, Body] = case binary:split(Out, <<"\n">>, [global]) of
                       Parts -> [lists:last(Parts), iolist_to_binary(lists:join(<<"\n">>, lists:droplast(Parts)))]
                   end,
    {binary_to_integer(Code), Body}.

quote(S) ->
    "'" ++ lists:flatten(string:replace(S, "'", "'\\''", all)) ++ "'".

client(Config, Args) ->
    [Cmd, Rest] = case Args of [C | R] -> [C, R] end,
    {0, Out} = run(os:find_executable("python3"),
                   [client_py(Config), Cmd, integer_to_list(?config(port, Config)) | Rest],
                   undefined, 180000),
    Out.

client_py(Config) ->
    filename:join(?config(data_dir, Config), "client.py").

run(Exe0, Args, _Stdin, Timeout) ->
    Exe = case filename:pathtype(Exe0) of
              absolute -> Exe0;
              _ -> os:find_executable(Exe0)
          end,
    Port = open_port({spawn_executable, Exe}, [{args, Args}, binary, exit_status, stderr_to_stdout]),
    collect(Port, [], Timeout).

collect(Port, Acc, Timeout) ->
    receive
        {Port, {data, {eol, Line}}} -> collect(Port, [<<Line/binary, "\n">> | Acc], Timeout);
        {Port, {data, {noeol, Line}}} -> collect(Port, [Line | Acc], Timeout);
        {Port, {data, Data}} -> collect(Port, [Data | Acc], Timeout);
        {Port, {exit_status, St}} -> {St, iolist_to_binary(lists:reverse(Acc))}
    after Timeout ->
        catch port_close(Port),
        error({timeout, iolist_to_binary(lists:reverse(Acc))})
    end.

json(Bin) ->
    mochijson2:decode(Bin, [{format, map}]).

random_file(Config, Name, Size) ->
    File = filename:join(?config(priv_dir, Config), Name),
    ok = file:write_file(File, crypto:strong_rand_bytes(Size)),
    File.

expected(File) ->
    {ok, Data} = file:read_file(File),
    #{<<"size">> => byte_size(Data), <<"sha256">> => sha_hex(Data)}.

sha_hex(Data) ->
    list_to_binary(string:lowercase(binary:bin_to_list(binary:encode_hex(crypto:hash(sha256, Data))))).

wait_stats(Pred) ->
    wait_stats(Pred, 600).

wait_stats(_Pred, 0) ->
    {ok, S} = py:call(demo_app, stats, []),
    error({stats_timeout, S});
wait_stats(Pred, N) ->
    {ok, S} = py:call(demo_app, stats, []),
    Stats = maps:from_list([{to_bin(K), V} || {K, V} <- maps:to_list(S)]),
    case Pred(Stats) of
        true -> Stats;
        false -> timer:sleep(100), wait_stats(Pred, N - 1)
    end.

to_bin(B) when is_binary(B) -> B;
to_bin(A) when is_atom(A) -> atom_to_binary(A).

vm_kib(Field) ->
    {ok, Status} = file:read_file("/proc/self/status"),
    [Line] = [L || L <- binary:split(Status, <<"\n">>, [global]),
                   binary:match(L, list_to_binary(Field ++ ":")) =/= nomatch],
    [_, Kb | _] = string:lexemes(Line, " \t"),
    binary_to_integer(Kb).

sample(Peak) ->
    receive
        {From, stop} -> From ! {self(), max(Peak, erlang:memory(total))}
    after 20 ->
        sample(max(Peak, erlang:memory(total)))
    end.
