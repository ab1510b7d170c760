%% ASGI 3 apps served by bodypipe_http: Starlette, FastAPI and a plain ASGI
%% callable (bodypipe_asgi_SUITE_data/bp_asgi_apps.py), driven by curl and
%% by the raw test client over 127.0.0.1. Bodies are checked byte-exactly
%% (size and SHA-256), fixed-length and chunked; a client that goes away
%% mid-body must reach the app as `http.disconnect'; the lifespan protocol
%% runs at server start and stop.
-module(bodypipe_asgi_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, suite/0, init_per_suite/1, end_per_suite/1, init_per_testcase/2,
         end_per_testcase/2]).
-export([starlette_stream_fixed/1, starlette_stream_chunked/1, starlette_multipart/1,
         fastapi_multipart/1, fastapi_stream_fixed_and_chunked/1, streamed_response/1,
         raw_echo_flow_control/1, disconnect_mid_body/1, lifespan/1, lifespan_failure/1,
         app_errors/1, keep_alive_mixed/1, send_waits_for_the_client/1, one_loop/1,
         app_timeout_cancels_the_task/1, cancel_before_the_call_starts/1]).

-import(bodypipe_http_curl, [curl/3, curl/4, random_file/3, expected/1, json/1]).

-define(SERVER, bodypipe_asgi_test).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [starlette_stream_fixed, starlette_stream_chunked, starlette_multipart, fastapi_multipart,
     fastapi_stream_fixed_and_chunked, streamed_response, raw_echo_flow_control,
     disconnect_mid_body, app_errors, keep_alive_mixed, send_waits_for_the_client, one_loop, lifespan,
     lifespan_failure, app_timeout_cancels_the_task, cancel_before_the_call_starts].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Config.

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    {ok, _} = start(Config, ?SERVER),
    {ok, _} = py:call(bp_asgi_apps, reset, []),
    [{port, bodypipe_http:port(?SERVER)} | Config].

end_per_testcase(_Case, _Config) ->
    bodypipe_http:stop(?SERVER).

start(Config, Name) ->
    Asgi = [{interface, asgi}],
    bodypipe_http:start(#{name => Name, port => 0, python_path => [?config(data_dir, Config)],
                          max_buffered => 256 * 1024,
                          apps => [{<<"/s">>, <<"bp_asgi_apps:starlette_app">>, Asgi},
                                   {<<"/f">>, <<"bp_asgi_apps:fastapi_app">>, Asgi},
                                   {<<"/raw">>, <<"bp_asgi_apps:raw_app">>, Asgi},
                                   {<<"/nolife">>, <<"bp_asgi_apps:no_lifespan">>, Asgi},
                                   {<<"/broken">>, <<"bp_asgi_apps:broken">>, Asgi}]}).

port(Config) ->
    ?config(port, Config).

%% ---------------------------------------------------------------------------

starlette_stream_fixed(Config) ->
    File = random_file(?config(priv_dir, Config), "fixed.bin", 5 * 1000 * 1000 + 7),
    {200, Body} = curl(port(Config), ["--data-binary", "@" ++ File, "-H",
                                      "Content-Type: application/octet-stream"], "/s/upload"),
    Got = json(Body),
    ?assertEqual(expected(File), maps:with([<<"size">>, <<"sha256">>], Got)),
    ?assertEqual(integer_to_binary(5 * 1000 * 1000 + 7), maps:get(<<"content_length">>, Got)).

starlette_stream_chunked(Config) ->
    File = random_file(?config(priv_dir, Config), "chunked.bin", 3 * 1000 * 1000 + 1),
    {200, Body} = curl(port(Config), ["-T", "-"], "/s/upload", File),   % stdin: chunked
    Got = json(Body),
    ?assertEqual(expected(File), maps:with([<<"size">>, <<"sha256">>], Got)),
    %% ASGI headers are the client's: the body was chunked and has no length.
    ?assertEqual(<<"chunked">>, maps:get(<<"transfer_encoding">>, Got)),
    ?assertEqual(null, maps:get(<<"content_length">>, Got)),
    {200, Empty} = curl(port(Config), ["-X", "POST", "--data-binary", ""], "/s/upload"),
    ?assertMatch(#{<<"size">> := 0}, json(Empty)).

starlette_multipart(Config) ->
    Dir = ?config(priv_dir, Config),
    File = random_file(Dir, "part.bin", 20 * 1000 * 1000 + 3),
    Expected = (expected(File))#{<<"filename">> => <<"part.bin">>},
    {200, B1} = curl(port(Config), ["-F", "file=@" ++ File, "-F", "note=hello"], "/s/form"),
    ?assertEqual(#{<<"file">> => Expected, <<"note">> => <<"hello">>}, json(B1)),
    %% The same form sent chunked.
    {200, B2} = curl(port(Config), ["-H", "Transfer-Encoding: chunked", "-F", "file=@" ++ File,
                                    "-F", "note=again"], "/s/form"),
    ?assertEqual(#{<<"file">> => Expected, <<"note">> => <<"again">>}, json(B2)).

fastapi_multipart(Config) ->
    File = random_file(?config(priv_dir, Config), "fapi.bin", 7 * 1000 * 1000 + 11),
    Expected = (expected(File))#{<<"filename">> => <<"fapi.bin">>, <<"note">> => <<"n">>},
    {200, B1} = curl(port(Config), ["-F", "file=@" ++ File, "-F", "note=n"], "/f/form"),
    ?assertEqual(Expected, json(B1)),
    {200, B2} = curl(port(Config), ["-H", "Transfer-Encoding: chunked", "-F", "file=@" ++ File,
                                    "-F", "note=n"], "/f/form"),
    ?assertEqual(Expected, json(B2)).

fastapi_stream_fixed_and_chunked(Config) ->
    File = random_file(?config(priv_dir, Config), "fs.bin", 2 * 1000 * 1000 + 5),
    {200, B1} = curl(port(Config), ["--data-binary", "@" ++ File], "/f/upload"),
    ?assertEqual(expected(File), json(B1)),
    {200, B2} = curl(port(Config), ["-T", "-"], "/f/upload", File),
    ?assertEqual(expected(File), json(B2)).

streamed_response(Config) ->
    %% 300 blocks of 64 KiB: chunked on the wire, byte-exact, and also
    %% parsed by the raw client (OTP's own HTTP parser).
    {200, Body} = curl(port(Config), [], "/s/stream?n=300&size=65536"),
    Want = iolist_to_binary([binary:copy(<<(iolist_to_binary(io_lib:format("~8..0b", [I])))/binary>>,
                                         8192) || I <- lists:seq(0, 299)]),
    ?assertEqual(byte_size(Want), byte_size(Body)),
    ?assert(Want =:= Body),
    S = bodypipe_http_test_client:connect(port(Config)),
    ok = bodypipe_http_test_client:send(S, <<"GET /s/stream?n=3&size=16 HTTP/1.1\r\nHost: x\r\n\r\n">>),
    {ok, #{status := 200, body := Small} = R} = bodypipe_http_test_client:response(S, 10000),
    ?assertEqual(<<"chunked">>, bodypipe_http_test_client:header(<<"transfer-encoding">>, R)),
    ?assertEqual(<<"0000000000000000", "0000000100000001", "0000000200000002">>, Small),
    gen_tcp:close(S),
    %% One 5 MiB body in a single send (sliced into 1 MiB blocks by the
    %% host), with its Content-Length, then another request on the same
    %% connection.
    {200, Big} = curl(port(Config), [], "/s/big?size=5242880"),
    ?assert(binary:copy(list_to_binary(lists:seq(0, 255)), 5242880 div 256) =:= Big),
    Url = "http://127.0.0.1:" ++ integer_to_list(port(Config)),
    {0, Out} = bodypipe_http_curl:run("curl", ["-sS", "-v", "-o", "/dev/null",
                                               Url ++ "/s/big?size=5242880",
                                               "-o", "/dev/null", Url ++ "/s/state"], 60000),
    ?assertMatch({_, _}, binary:match(Out, <<"Re-using existing connection">>)),
    ?assertEqual(2, length(binary:matches(Out, <<"< HTTP/1.1 200 OK">>))),
    ?assertMatch({_, _}, binary:match(Out, <<"< content-length: 5242880">>)).

raw_echo_flow_control(Config) ->
    %% The app echoes each body event as a block while the body still
    %% streams in (its send() waits for the connection each time): the echo
    %% is the body, byte for byte, fixed-length and chunked.
    Dir = ?config(priv_dir, Config),
    File = random_file(Dir, "echo.bin", 4 * 1000 * 1000 + 1),
    {ok, Data} = file:read_file(File),
    {200, E1} = curl(port(Config), ["--data-binary", "@" ++ File], "/raw/fixed"),
    ?assert(E1 =:= Data),
    {200, E2} = curl(port(Config), ["-T", "-"], "/raw/chunked", File),
    ?assert(E2 =:= Data),
    %% After the body, and the response complete, receive() gave http.disconnect.
    ok = bodypipe_http_test_client:wait_until(
           fun() ->
                   {ok, Log} = py:call(bp_asgi_apps, log, []),
                   [P || {<<"raw">>, P, <<"http.request">>, <<"http.disconnect">>} <- Log]
                       =:= [<<"/raw/fixed">>, <<"/raw/chunked">>]
           end, 400).

disconnect_mid_body(Config) ->
    lists:foreach(
      fun(Head) ->
              {ok, _} = py:call(bp_asgi_apps, reset, []),
              S = bodypipe_http_test_client:connect(port(Config)),
              ok = bodypipe_http_test_client:send(S, [Head, binary:copy(<<"x">>, 100000)]),
              %% The app has read part of the body ...
              ok = bodypipe_http_test_client:wait_until(
                     fun() -> {ok, Log} = py:call(bp_asgi_apps, log, []),
                              lists:keymember(<<"got">>, 1, Log) end, 400),
              %% ... when the client goes away: receive() gives http.disconnect
              %% (Starlette raises ClientDisconnect from request.stream()).
              ok = gen_tcp:close(S),
              ok = bodypipe_http_test_client:wait_until(
                     fun() -> {ok, Log} = py:call(bp_asgi_apps, log, []),
                              lists:keymember(<<"disconnect">>, 1, Log) end, 400),
              {ok, Log} = py:call(bp_asgi_apps, log, []),
              {_, Got} = lists:keyfind(<<"disconnect">>, 1, Log),
              ?assert(Got > 0 andalso Got =< 100000)
      end,
      [<<"POST /s/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n">>,
       <<"POST /s/slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "100000\r\n">>]),
    %% The server goes on serving.
    starlette_stream_fixed(Config).

%% app_timeout: the app's task is cancelled wherever it awaits (its finally
%% block runs and sees CancelledError), the client gets 503 (or, once the
%% response has started, the connection closes after what was sent), and the
%% request ends (no longer listed as in flight: the call's result came back).
app_timeout_cancels_the_task(Config) ->
    Name = bodypipe_asgi_timeout_test,
    {ok, _} = bodypipe_http:start(#{name => Name, port => 0, app_timeout => 500,
                                    python_path => [?config(data_dir, Config)],
                                    apps => [{<<"/stuck">>, <<"bp_asgi_apps:stuck_app">>,
                                              [{interface, asgi}]}]}),
    try
        Port = bodypipe_http:port(Name),
        lists:foreach(
          fun({Path, StatusLine, Body}) ->
                  S = bodypipe_http_test_client:connect(Port),
                  ok = bodypipe_http_test_client:send(
                         S, ["GET ", Path, " HTTP/1.1\r\nHost: x\r\n\r\n"]),
                  %% Raw bytes: a response cut short is no well-formed response.
                  Got = bodypipe_http_test_client:recv_all(S, 10000),
                  ct:log("~s: ~p", [Path, Got]),
                  ?assertEqual(true, bodypipe_http_test_client:closed(S, 1000)),
                  ?assertMatch(<<StatusLine:12/binary, _/binary>>, Got),
                  ?assertMatch({_, _}, binary:match(Got, Body)),
                  %% Cut short: no last chunk.
                  ?assertNotEqual(<<"0\r\n\r\n">>, binary:part(Got, byte_size(Got), -5)),
                  Cancelled = {<<"cancelled">>, list_to_binary(Path), <<"CancelledError">>},
                  ok = bodypipe_http_test_client:wait_until(
                         fun() -> {ok, Log} = py:call(bp_asgi_apps, log, []),
                                  lists:member(Cancelled, Log) end, 400),
                  ok = bodypipe_http_test_client:wait_until(
                         fun() -> bodypipe_http:requests(Name) =:= [] end, 400)
          end,
          [{"/stuck/sleep", <<"HTTP/1.1 503">>, <<"\r\n\r\n">>},
           {"/stuck/spin", <<"HTTP/1.1 503">>, <<"\r\n\r\n">>},
           {"/stuck/started", <<"HTTP/1.1 200">>, <<"partial">>}])
    after
        bodypipe_http:stop(Name)
    end.

%% The cancel and the call go through different pool threads, so the cancel
%% can come first: the call's task is then cancelled before its first step
%% (the app never runs), and the call still ends, with the aborted answer the
%% connection drops, instead of leaving its pool thread waiting for ever.
cancel_before_the_call_starts(_Config) ->
    Name = <<"early_cancel">>,
    ok = bodypipe_asgi:load(Name, <<"bp_asgi_apps:stuck_app">>),
    Token = erlang:unique_integer([positive]),
    {ok, false} = py:call(bodypipe_asgi_host, cancel, [Token]),
    {ok, Buf} = py_buffer:new(#{content_length => 0}),
    ok = py_buffer:close(Buf),
    Head = #{method => <<"GET">>, target => <<"/stuck/sleep">>, version => {1, 1},
             headers => []},
    Scope = bodypipe_asgi:scope(Head, {<<"/stuck">>, <<"/sleep">>, <<>>},
                                #{server_name => <<"h">>, server_port => 80}),
    {ok, Ref} = bodypipe_asgi:run_async(Name, Scope#{<<"bodypipe.token">> => Token}, Buf),
    Result = receive {Ref, R} -> R after 30000 -> ct:fail(call_never_ended) end,
    ?assertMatch({ok, {<<"400 Bad Request">>, _, [<<"request body aborted\n">>], none}},
                 bodypipe_wsgi:run_result(Result)),
    {ok, Log} = py:call(bp_asgi_apps, log, []),
    ?assertEqual([], [E || E <- Log, element(1, E) =:= <<"cancelled">>]).

app_errors(Config) ->
    %% An exception before the response starts is a 500; an app without
    %% lifespan support is served all the same.
    {500, _} = curl(port(Config), [], "/broken/"),
    {204, <<>>} = curl(port(Config), [], "/nolife/"),
    {200, _} = curl(port(Config), [], "/s/state").

keep_alive_mixed(Config) ->
    %% Requests on one connection, with and without bodies: the connection is
    %% kept and every answer is right.
    S = bodypipe_http_test_client:connect(port(Config)),
    Req = fun(Bin) -> ok = bodypipe_http_test_client:send(S, Bin),
                      {ok, R} = bodypipe_http_test_client:response(S, 10000), R end,
    #{status := 200, body := B1} = Req(<<"GET /s/state?x=1 HTTP/1.1\r\nHost: x\r\n\r\n">>),
    ?assertEqual(#{<<"started">> => true, <<"path">> => <<"/s/state">>,
                   <<"root_path">> => <<"/s">>, <<"query">> => <<"x=1">>}, json(B1)),
    #{status := 200, body := B2} = Req(<<"POST /raw/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello">>),
    ?assertEqual(<<"hello">>, B2),
    #{status := 200, body := B3} = Req(<<"POST /raw/y HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                         "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n">>),
    ?assertEqual(<<"abcde">>, B3),
    #{status := 200} = Req(<<"GET /s/state HTTP/1.1\r\nHost: x\r\n\r\n">>),
    gen_tcp:close(S).

send_waits_for_the_client(Config) ->
    %% A client that reads nothing: the app's send() stops returning once the
    %% kernel's socket buffers are full (a few MiB), never 200 MiB ahead.
    Blocks = 200,
    S = bodypipe_http_test_client:connect(port(Config), [{recbuf, 65536}]),
    ok = gen_tcp:send(S, <<"GET /raw/flood?", (integer_to_binary(Blocks))/binary,
                           " HTTP/1.1\r\nHost: x\r\n\r\n">>),
    ok = bodypipe_http_test_client:wait_until(
           fun() -> {ok, N} = py:call(bp_asgi_apps, sent, []), N >= 2 end, 400),
    %% Give a broken flow control every chance to show (this can only make
    %% the check below stricter, never flaky).
    timer:sleep(1000),
    {ok, Ahead} = py:call(bp_asgi_apps, sent, []),
    ct:pal("sends done while the client read nothing: ~b of ~b", [Ahead, Blocks]),
    ?assert(Ahead < 40),
    %% Now read it all: every block arrives, every send returns.
    Total = Blocks bsl 20,
    ?assertEqual(Total, read_body(S, Total)),
    ok = bodypipe_http_test_client:wait_until(
           fun() -> {ok, N} = py:call(bp_asgi_apps, sent, []), N =:= Blocks end, 400),
    gen_tcp:close(S).

%% Reads a response head and `Len' body bytes from `S'; returns the count.
read_body(S, Len) ->
    {ok, Data} = gen_tcp:recv(S, 0, 10000),
    case binary:split(Data, <<"\r\n\r\n">>) of
        [Head, Rest] ->
            ?assertMatch(<<"HTTP/1.1 200", _/binary>>, Head),
            count(S, Len, byte_size(Rest));
        [_] ->
            error({no_head_in_first_read, Data})
    end.

count(_S, Len, Got) when Got >= Len ->
    Got;
count(S, Len, Got) ->
    {ok, Data} = gen_tcp:recv(S, 0, 10000),
    count(S, Len, Got + byte_size(Data)).

one_loop(Config) ->
    %% Every request of every ASGI app runs on the interpreter's one loop, on
    %% its own thread; uvloop's when uvloop is installed (setup.sh installs it).
    {ok, HasUvloop} = py:eval(py:context(default),
                              <<"__import__('importlib.util').util.find_spec('uvloop') is not None">>),
    Infos = [json(B) || _ <- lists:seq(1, 5), {200, B} <- [curl(port(Config), [], "/s/loop")]],
    [#{<<"loop_id">> := Id} | _] = Infos,
    Module = case HasUvloop of true -> <<"uvloop">>; false -> <<"asyncio">> end,
    ?assertEqual(lists:duplicate(5, #{<<"module">> => Module, <<"loop_id">> => Id,
                                      <<"thread">> => <<"bodypipe-asgi">>}), Infos).

lifespan(Config) ->
    %% init_per_testcase started the server: every app with lifespan support
    %% has run its startup; request scopes carry the lifespan state.
    {ok, Log0} = py:call(bp_asgi_apps, log, []),
    {200, B} = curl(port(Config), [], "/s/state"),
    ?assertMatch(#{<<"started">> := true}, json(B)),
    ok = bodypipe_http:stop(?SERVER),
    {ok, Log} = py:call(bp_asgi_apps, log, []),
    ct:pal("lifespan log: ~p", [Log0 ++ Log]),
    ?assertEqual([{<<"shutdown">>, <<"raw">>}, {<<"shutdown">>, <<"FastAPI">>},
                  {<<"shutdown">>, <<"Starlette">>}],
                 [E || {<<"shutdown">>, _} = E <- Log]),
    %% Startups happened when the server started (before reset in
    %% init_per_testcase); start again to see them.
    {ok, _} = py:call(bp_asgi_apps, reset, []),
    {ok, _} = start(Config, ?SERVER),
    {ok, Log2} = py:call(bp_asgi_apps, log, []),
    ?assertEqual(lists:sort([{<<"startup">>, <<"raw">>}, {<<"startup">>, <<"FastAPI">>},
                             {<<"startup">>, <<"Starlette">>}]),
                 lists:sort([E || {<<"startup">>, _} = E <- Log2])).

lifespan_failure(Config) ->
    %% An app whose lifespan startup fails keeps the server from starting.
    {error, Reason} = bodypipe_http:start(#{name => bodypipe_asgi_fail, port => 0,
                                            python_path => [?config(data_dir, Config)],
                                            apps => [{<<"">>, <<"bp_asgi_apps:failing_startup">>,
                                                      [{interface, asgi}]}]}),
    ct:pal("failed start: ~p", [Reason]),
    ?assertMatch({lifespan_startup_failed, <<"">>, _}, Reason).
