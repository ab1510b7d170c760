%% Memory under attack: what the server holds per connection while a client
%% sends an endless head, endless chunked trailers, or declares a 1 GiB body and
%% sends one byte. Each case prints its figures (ct:pal and the case comment) and
%% asserts a bound; the server runs in this VM, so VmRSS is the server's RSS.
%%
%% Two measures per case, from before the connections are opened to the moment
%% the server has read everything sent (nothing left in the kernel's socket
%% buffers, which are in neither figure): the growth of the VM's RSS (which
%% also sees the NIF's and Python's own allocations) and of
%% erlang:memory(total) (split into processes and binaries), each divided by
%% the number of connections.
%%
%% The 1 GiB case: requests that declare 1 GiB and send 1 byte while the app
%% is in read() hold memory in proportion to what was sent (the core grows a
%% body's segments and a read's result with the bytes that arrived, never
%% with the declared length): under 4 MiB per request, asserted.
-module(bodypipe_http_memory_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(CONNS, 100).
-define(GOAL, (256 * 1024)).

suite() ->
    [{timetrap, {minutes, 5}}].

all() ->
    [endless_head, endless_trailers, content_length_1gib_under_4mib].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    %% The framing suite's recording app.
    Data = filename:join(filename:dirname(string:trim(?config(data_dir, Config), trailing, "/")),
                         "bodypipe_http_framing_SUITE_data"),
    {ok, _} = bodypipe_http:start(#{name => memory, port => 0, python_path => [Data],
                                    max_connections => 10000,
                                    apps => [{<<"">>, <<"bp_framing_apps:application">>}]}),
    [{port, bodypipe_http:port(memory)} | Config].

end_per_suite(_Config) ->
    bodypipe_http:stop(memory).

%% ---------------------------------------------------------------------------

endless_head(Config) ->
    %% Each connection sends 1 KB header lines, in 256-byte pieces, round after
    %% round across all connections, up to 60 KiB (under the 64 KiB head limit);
    %% measured there; then on until every connection got 431.
    Base = measure(),
    Socks = [connect(Config) || _ <- lists:seq(1, ?CONNS)],
    Start = <<"GET / HTTP/1.1\r\nHost: x\r\n">>,
    [ok = gen_tcp:send(S, Start) || S <- Socks],
    Line = fun(I) -> iolist_to_binary(["X-H", integer_to_list(I), ": ",
                                       lists:duplicate(1000 - 7 - length(integer_to_list(I)), $v),
                                       "\r\n"]) end,
    Send = fun(From, To) ->
                   [[send_pieces(S, Line(I), 256) || S <- Socks] || I <- lists:seq(From, To)]
           end,
    Send(1, 60),
    wait_received(byte_size(Start) + 60 * 1000),
    Held = measure(),
    Figures = per_conn(Base, Held, ?CONNS),
    %% 40 more lines (100 headers): the head passes 64 KiB first.
    Send(61, 100),
    Statuses = [status_of(S) || S <- Socks],
    ?assertEqual(lists:duplicate(?CONNS, 431), Statuses),
    report("endless head (60 KiB sent per connection, then 431)", Figures).

endless_trailers(Config) ->
    %% A chunked body that ends, then trailer lines that never end: 500-byte lines
    %% up to 15 KiB per connection (under the 16 KiB trailer limit), measured
    %% there; then on until every connection got 400. The app is blocked in
    %% read() meanwhile, so each connection holds a Python pool thread: the pool
    %% is filled by a first round so that the measured round does not count the
    %% threads' creation.
    _ = trailer_round(Config, false),
    {Figures, Statuses} = trailer_round(Config, true),
    ?assertEqual(lists:duplicate(?CONNS, 400), Statuses),
    report("endless trailers (15 KiB of trailers per connection, then 400)", Figures).

trailer_round(Config, Measure) ->
    Base = measure(),
    Socks = [connect(Config) || _ <- lists:seq(1, ?CONNS)],
    Start = <<"POST /read HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n0\r\n">>,
    [ok = gen_tcp:send(S, Start) || S <- Socks],
    wait_until(fun() -> maps:get(body_readers, bodypipe_http:info(memory)) =:= ?CONNS end),
    Line = fun(I) -> iolist_to_binary(["X-T", integer_to_list(I), ": ",
                                       lists:duplicate(500 - 7 - length(integer_to_list(I)), $t),
                                       "\r\n"]) end,
    [[ok = send_pieces(S, Line(I), 128) || S <- Socks] || I <- lists:seq(1, 30)],
    wait_received(byte_size(Start) + 30 * 500),
    Held = measure(),
    %% On past 16 KiB of trailers (a connection answered and closed refuses more).
    [[send_pieces(S, Line(I), 500) || S <- Socks] || I <- lists:seq(31, 40)],
    Statuses = [status_of(S) || S <- Socks],
    case Measure of
        true -> {per_conn(Base, Held, ?CONNS), Statuses};
        false -> {#{}, Statuses}
    end.

content_length_1gib_under_4mib(Config) ->
    {Figures, Done} = one_gib_round(Config),
    Done(),
    #{rss := Rss} = Figures,
    ?assert(Rss < 4 * 1048576),
    report("Content-Length 1 GiB, 1 byte sent, app in read()", Figures).

one_gib_round(Config) ->
    N = 3,
    reset_records(),
    Base = measure(),
    Socks = [connect(Config) || _ <- lists:seq(1, N)],
    [ok = gen_tcp:send(S, "POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\nx")
     || S <- Socks],
    wait_until(fun() -> maps:get(body_readers, bodypipe_http:info(memory)) =:= N end),
    timer:sleep(1000),   % let read() do what it does with the declared length
    Held = measure(),
    Done = fun() ->
                   [gen_tcp:close(S) || S <- Socks],
                   %% The apps' reads end with BodyAborted(client_disconnected).
                   wait_until(fun() -> length(records()) =:= N end)
           end,
    {per_conn(Base, Held, N), Done}.

%% ---------------------------------------------------------------------------

connect(Config) ->
    {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                              [binary, {active, false}, {nodelay, true}], 5000),
    S.

send_pieces(S, Bin, Size) when byte_size(Bin) =< Size ->
    gen_tcp:send(S, Bin);
send_pieces(S, Bin, Size) ->
    <<Piece:Size/binary, Rest/binary>> = Bin,
    case gen_tcp:send(S, Piece) of
        ok -> send_pieces(S, Rest, Size);
        {error, _} = E -> E
    end.

status_of(S) ->
    case gen_tcp:recv(S, 0, 10000) of
        {ok, <<"HTTP/1.1 ", Code:3/binary, _/binary>>} ->
            gen_tcp:close(S),
            binary_to_integer(Code);
        Other ->
            gen_tcp:close(S),
            {unexpected, Other}
    end.

%% Wait until the server has read what was sent (Bytes on every connection:
%% nothing is left in the kernel's socket buffers), then for the connection
%% processes to handle the last read.
wait_received(Bytes) ->
    wait_until(fun() ->
                       Conns = conn_pids(),
                       Received = [R || P <- erlang:ports(),
                                        {connected, C} <- [erlang:port_info(P, connected)],
                                        lists:member(C, Conns),
                                        {ok, [{recv_oct, R}]} <- [inet:getstat(P, [recv_oct])]],
                       length(Received) =:= ?CONNS andalso lists:all(fun(R) -> R >= Bytes end, Received)
               end),
    timer:sleep(200).

measure() ->
    [garbage_collect(P) || P <- processes()],
    #{processes => erlang:memory(processes), binary => erlang:memory(binary),
      erlang => erlang:memory(total), rss => rss()}.

conn_pids() ->
    Acceptors = [P || {_, P, worker, _} <- supervisor:which_children(memory), is_pid(P)],
    lists:usort([C || A <- Acceptors, {links, L} <- [erlang:process_info(A, links)], C <- L,
                      is_pid(C), C =/= whereis(memory)]).

rss() ->
    {ok, Status} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(Status, "VmRSS:\\s+(\\d+) kB", [{capture, all_but_first, binary}]),
    binary_to_integer(Kb) * 1024.

per_conn(Base, Held, N) ->
    maps:put(n, N, maps:map(fun(K, V) -> (maps:get(K, Held) - V) div N end, Base)).

report(What, #{processes := P, binary := B, erlang := E, rss := R, n := N} = F) ->
    Msg = io_lib:format("~s, ~b connections: per connection ~.1f KiB of VM RSS, ~.1f KiB of "
                        "erlang:memory(total) (processes ~.1f KiB, binaries ~.1f KiB)",
                        [What, N, R / 1024, E / 1024, P / 1024, B / 1024]),
    ct:pal("~s", [Msg]),
    case What of
        "Content-Length" ++ _ -> ok;
        _ ->
            %% The goal of issue 10: under 256 KiB each.
            ?assert(E < ?GOAL),
            ?assert(R < ?GOAL)
    end,
    _ = F,
    {comment, lists:flatten(Msg)}.

records() ->
    {ok, Rs} = py:call(bp_framing_apps, records, []),
    Rs.

reset_records() ->
    {ok, _} = py:call(bp_framing_apps, reset, []),
    ok.

wait_until(Fun) ->
    bodypipe_http_test_client:wait_until(Fun, 400).
