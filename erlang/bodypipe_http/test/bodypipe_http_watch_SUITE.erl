%% The socket watch while the application runs after the request body is
%% complete (bodypipe_http_watch): a client that resets the connection then is
%% noticed at once (an ASGI app's receive() yields http.disconnect; a WSGI
%% app's response is dropped quietly; the access log says "-"); a client that
%% only shuts down its sending side still gets its answer; bytes of pipelined
%% requests that arrive meanwhile are kept for them, byte-exactly, also past
%% max_head_size (the watch stops reading there; nothing is lost).
%%
%% Waits are on states (the watch armed: the connection's socket in
%% `{active, once}'; an end of stream handled: the socket passive again and
%% the process waiting with an empty queue; app progress: the apps' log),
%% never on elapsed time.
-module(bodypipe_http_watch_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(SERVER, bodypipe_http_watch_test).
-define(MAX_HEAD, 4096).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [asgi_receive_sees_disconnect, asgi_half_close_gets_answer, wsgi_half_close_gets_answer,
     wsgi_reset_is_quiet, pipelined_while_app_runs, pipelined_past_max_head_size].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Config.

end_per_suite(_Config) ->
    ok.

init_per_testcase(_Case, Config) ->
    %% priv_dir is shared by the suites of a run: a name of this suite's own.
    LogFile = filename:join(?config(priv_dir, Config), "watch_SUITE_access.log"),
    _ = file:delete(LogFile),
    {ok, Log} = bodypipe_http_access_log:start_link({file, LogFile}),
    unlink(element(2, Log)),
    {ok, _} = bodypipe_http:start(#{name => ?SERVER, port => 0,
                                    python_path => [?config(data_dir, Config)],
                                    max_head_size => ?MAX_HEAD, access_log => Log,
                                    apps => [{<<"/a">>, <<"bp_watch_apps:asgi_app">>,
                                              [{interface, asgi}]},
                                             {<<"">>, <<"bp_watch_apps:application">>}]}),
    {ok, _} = py:call(bp_watch_apps, reset, []),
    ok = bodypipe_http_log_capture:start(watch_capture),
    persistent_term:put({?MODULE, log_file}, LogFile),
    [{port, bodypipe_http:port(?SERVER)}, {log_file, LogFile}, {log, Log} | Config].

end_per_testcase(_Case, Config) ->
    bodypipe_http_log_capture:stop(watch_capture),
    {ok, _} = py:call(bp_watch_apps, reset, []),
    bodypipe_http:stop(?SERVER),
    exit(element(2, ?config(log, Config)), shutdown).

%% ---------------------------------------------------------------------------

asgi_receive_sees_disconnect(Config) ->
    S = connect(Config),
    ok = gen_tcp:send(S, post("/a/wait?name=d", 1000)),
    wait_log({<<"body">>, <<"d">>, 1000}),
    %% The app now waits in receive() with its body complete; the client resets.
    wait_armed(),
    reset(S),
    wait_log({<<"after">>, <<"d">>, <<"http.disconnect">>}),
    wait_access_log(1),
    [Line] = access_lines(Config),
    ?assertMatch({match, _}, re:run(Line, "\"POST /a/wait\\?name=d HTTP/1.1\" - - ")),
    ?assertEqual([], errors()),
    %% A notice says the client went away: one line.
    ?assertMatch([_], [T || {log, notice, T} <- flush(), binary:match(T, <<"went away">>) =/= nomatch]).

asgi_half_close_gets_answer(Config) ->
    {S, Resp} = half_closed_exchange(Config, "/a/hold?name=h", 500, {<<"body">>, <<"h">>, 500}),
    {ok, #{status := 200, body := <<"held 500\n">>}} = Resp,
    %% Then the server closes (the client sends no more requests).
    true = bodypipe_http_test_client:closed(S, 10000),
    wait_access_log(1),
    [Line] = access_lines(Config),
    ?assertMatch({match, _}, re:run(Line, "\"POST /a/hold\\?name=h HTTP/1.1\" 200 9 ")).

wsgi_half_close_gets_answer(Config) ->
    {S, Resp} = half_closed_exchange(Config, "/hold?name=w&blocks=3", 700,
                                     {<<"read">>, <<"w">>, 700}),
    {ok, #{status := 200, body := Body}} = Resp,
    ?assertEqual(binary:copy(<<"h">>, 3 * 65536), Body),
    true = bodypipe_http_test_client:closed(S, 10000).

%% A POST of Size bytes to Path (an app that holds until released by the
%% `name' in its query), its body seen by the app (Seen logged), then the
%% client shuts down its sending side; the app is released and the response
%% read.
half_closed_exchange(Config, Path, Size, Seen) ->
    S = connect(Config),
    ok = gen_tcp:send(S, post(Path, Size)),
    wait_log(Seen),
    wait_armed(),
    ok = gen_tcp:shutdown(S, write),
    wait_eof_seen(),
    {ok, _} = py:call(bp_watch_apps, release, [element(2, Seen)]),
    {S, bodypipe_http_test_client:response(S, 10000)}.

wsgi_reset_is_quiet(Config) ->
    S = connect(Config),
    ok = gen_tcp:send(S, post("/hold?name=r&blocks=64", 100)),
    wait_log({<<"read">>, <<"r">>, 100}),
    wait_armed(),
    reset(S),
    %% The connection notices before the app answers: nothing is sent.
    wait_until(fun() -> bodypipe_http:requests(?SERVER) =:= [] orelse conn_socket_gone() end),
    {ok, _} = py:call(bp_watch_apps, release, [<<"r">>]),
    wait_log({<<"answered">>, <<"r">>}),
    wait_access_log(1),
    [Line] = access_lines(Config),
    ?assertMatch({match, _}, re:run(Line, "\"POST /hold\\?name=r&blocks=64 HTTP/1.1\" - - ")),
    ?assertEqual([], errors()),
    %% The server goes on serving.
    {ok, #{status := 200, body := <<"/path?q=1">>}} = get(Config, "/path?q=1").

pipelined_while_app_runs(Config) ->
    %% The first request's app holds; a second request arrives (one part with
    %% the first, the rest while it runs): both are answered, in order, exactly.
    S = connect(Config),
    Second = <<"GET /path?n=2 HTTP/1.1\r\nHost: x\r\n\r\n">>,
    <<P1:10/binary, P2/binary>> = Second,
    ok = gen_tcp:send(S, [post("/hold?name=p", 300), P1]),
    wait_log({<<"read">>, <<"p">>, 300}),
    wait_armed(),
    ok = gen_tcp:send(S, P2),
    wait_armed_after_data(),
    {ok, _} = py:call(bp_watch_apps, release, [<<"p">>]),
    {ok, #{status := 200, body := B1}} = bodypipe_http_test_client:response(S, 10000),
    ?assertEqual(binary:copy(<<"h">>, 65536), B1),
    {ok, #{status := 200, body := <<"/path?n=2">>}} = bodypipe_http_test_client:response(S, 10000),
    %% The connection is kept.
    {ok, #{status := 200, body := <<"/path?n=3">>}} =
        exchange(S, <<"GET /path?n=3 HTTP/1.1\r\nHost: x\r\n\r\n">>).

pipelined_past_max_head_size(Config) ->
    %% Twenty pipelined requests (3 times max_head_size) while the first app
    %% holds: the watch keeps max_head_size of them and stops reading; every
    %% one is answered, in order.
    S = connect(Config),
    ok = gen_tcp:send(S, post("/hold?name=m", 10)),
    wait_log({<<"read">>, <<"m">>, 10}),
    Pad = binary:copy(<<"p">>, 700),
    Reqs = [iolist_to_binary(["GET /path?i=", integer_to_list(I), " HTTP/1.1\r\nHost: x\r\n",
                              "X-Pad: ", Pad, "\r\n\r\n"]) || I <- lists:seq(1, 20)],
    ?assert(iolist_size(Reqs) > 3 * ?MAX_HEAD),
    ok = gen_tcp:send(S, Reqs),
    %% The watch stops at max_head_size: the socket ends passive with the
    %% rest in the kernel.
    wait_eof_seen(),
    {ok, _} = py:call(bp_watch_apps, release, [<<"m">>]),
    {ok, #{status := 200}} = bodypipe_http_test_client:response(S, 10000),
    Rs = [bodypipe_http_test_client:response(S, 10000) || _ <- lists:seq(1, 20)],
    ?assertEqual([{200, iolist_to_binary(["/path?i=", integer_to_list(I)])} || I <- lists:seq(1, 20)],
                 [case R of {ok, #{status := St, body := B}} -> {St, B}; Other -> Other end || R <- Rs]).

%% ---------------------------------------------------------------------------

connect(Config) ->
    bodypipe_http_test_client:connect(?config(port, Config)).

post(Path, N) ->
    ["POST ", Path, " HTTP/1.1\r\nHost: x\r\nContent-Length: ", integer_to_list(N), "\r\n\r\n",
     binary:copy(<<"b">>, N)].

get(Config, Path) ->
    S = connect(Config),
    R = exchange(S, ["GET ", Path, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]),
    gen_tcp:close(S),
    R.

exchange(S, Bytes) ->
    ok = bodypipe_http_test_client:send(S, Bytes),
    bodypipe_http_test_client:response(S, 10000).

%% A reset, not a FIN: linger 0.
reset(S) ->
    ok = inet:setopts(S, [{linger, {true, 0}}]),
    ok = gen_tcp:close(S).

%% The server's socket of the one request in progress, and its connection.
conn() ->
    [#{id := Id}] = bodypipe_http:requests(?SERVER),
    Pid = list_to_pid(binary_to_list(Id)),
    [Sock] = [P || P <- erlang:ports(), erlang:port_info(P, connected) =:= {connected, Pid},
                   erlang:port_info(P, name) =:= {name, "tcp_inet"}],
    {Pid, Sock}.

conn_socket_gone() ->
    case bodypipe_http:requests(?SERVER) of
        [#{id := Id}] ->
            Pid = list_to_pid(binary_to_list(Id)),
            [] =:= [P || P <- erlang:ports(), erlang:port_info(P, connected) =:= {connected, Pid}];
        _ -> true
    end.

active(Sock) ->
    case inet:getopts(Sock, [active]) of
        {ok, [{active, A}]} -> A;
        _ -> closed
    end.

settled(Pid) ->
    erlang:process_info(Pid, [status, message_queue_len]) =:= [{status, waiting}, {message_queue_len, 0}].

%% The watch is armed: the connection asked for one read.
wait_armed() ->
    wait_until(fun() -> {Pid, Sock} = conn(), active(Sock) =:= once andalso settled(Pid) end).

%% Data arrived and the watch re-armed.
wait_armed_after_data() ->
    wait_until(fun() ->
                       {Pid, Sock} = conn(),
                       {ok, [{recv_oct, R}]} = inet:getstat(Sock, [recv_oct]),
                       R > 0 andalso active(Sock) =:= once andalso settled(Pid)
                       andalso element(2, erlang:process_info(Pid, message_queue_len)) =:= 0
               end).

%% The end of the client's stream (or max_head_size) was handled: the socket
%% is passive again, the connection waits.
wait_eof_seen() ->
    wait_until(fun() -> {Pid, Sock} = conn(), active(Sock) =:= false andalso settled(Pid) end).

wait_log(Entry) ->
    wait_until(fun() -> {ok, Log} = py:call(bp_watch_apps, log, []), lists:member(Entry, Log) end).

wait_access_log(N) ->
    wait_until(fun() -> length(access_lines_now()) >= N end).

access_lines(_Config) ->
    access_lines_now().

access_lines_now() ->
    case file:read_file(persistent_term:get({?MODULE, log_file})) of
        {ok, B} -> [L || L <- binary:split(B, <<"\n">>, [global]), L =/= <<>>];
        _ -> []
    end.

errors() ->
    [T || {log, L, T} <- flush(), L =:= error orelse L =:= critical orelse L =:= warning].

flush() ->
    Msgs = flush([]),
    %% Kept for a later look in the same case.
    [self() ! M || M <- Msgs],
    Msgs.

flush(Acc) ->
    receive {log, _, _} = M -> flush([M | Acc]) after 0 -> lists:reverse(Acc) end.

wait_until(Fun) ->
    bodypipe_http_test_client:wait_until(Fun, 400).
