%% What a connection blocked on a full ring keeps in the Erlang VM. N clients
%% each send far more body than the ring takes while the app reads nothing;
%% once every connection is blocked (its ring at max_buffered, its socket no
%% longer read, the process waiting with nothing in its queue: counted, not
%% timed), the memory of each connection process (process_info memory: heap
%% and stack) and the socket reads it still references (process_info binary)
%% must stay under the bound the limits imply: the one refused read
%% (chunk_size) plus a fixed cost. The reads already copied into the ring are
%% garbage and must not be kept alive (a process that only waits never
%% collects on its own: without the collection at the block each connection
%% would pin about max_buffered of them, which this bound catches).
-module(bodypipe_http_ring_memory_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-compile([export_all, nowarn_export_all]).

-define(CONNS, 16).
-define(MAX_BUFFERED, (256 * 1024)).
-define(CHUNK, (64 * 1024)).
%% Heap, stack and the record of a connection process in the exchange
%% (measured: 13.6 KiB with the limits below), with room for the VM's heap
%% sizing.
-define(FIXED, (32 * 1024)).

suite() ->
    [{timetrap, {minutes, 3}}].

all() ->
    [blocked_connections_hold_one_read].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Data = string:trim(?config(data_dir, Config), trailing, "/"),
    {ok, _} = bodypipe_http:start(#{name => ring_memory, port => 0, python_path => [Data],
                                    max_buffered => ?MAX_BUFFERED, chunk_size => ?CHUNK,
                                    max_body_readers => ?CONNS,
                                    body_timeout => 120000,
                                    apps => [{<<"">>, <<"bp_ring_apps:application">>}]}),
    [{port, bodypipe_http:port(ring_memory)} | Config].

end_per_suite(_Config) ->
    bodypipe_http:stop(ring_memory).

blocked_connections_hold_one_read(Config) ->
    {ok, _} = py:call(bp_ring_apps, rearm, []),
    Body = 4 * ?MAX_BUFFERED,
    Head = ["POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: ", integer_to_list(Body),
            "\r\n\r\n"],
    Socks = [begin
                 {ok, S} = gen_tcp:connect({127, 0, 0, 1}, ?config(port, Config),
                                           [binary, {active, false}], 5000),
                 ok = gen_tcp:send(S, Head),
                 S
             end || _ <- lists:seq(1, ?CONNS)],
    %% Each body is sent by a process of its own: its send blocks once the
    %% kernel's buffers are full (the server stops reading at the full ring).
    Piece = binary:copy(<<"b">>, ?CHUNK),
    Senders = [spawn(fun() -> send_all(S, Piece, Body div ?CHUNK) end) || S <- Socks],
    wait_until(fun() -> length(blocked()) =:= ?CONNS end),
    Conns = blocked(),
    Figures = [conn_memory(P) || P <- Conns],
    Heaps = [H || {H, _} <- Figures],
    Bins = [B || {_, B} <- Figures],
    Bound = ?CHUNK + ?FIXED,
    Msg = io_lib:format("~b connections blocked on a full ring (max_buffered ~b KiB, chunk_size "
                        "~b KiB): per connection at most ~.1f KiB of process memory and ~.1f KiB "
                        "of referenced socket reads (mean ~.1f + ~.1f KiB); bound chunk_size + "
                        "~b KiB = ~b KiB",
                        [?CONNS, ?MAX_BUFFERED div 1024, ?CHUNK div 1024,
                         lists:max(Heaps) / 1024, lists:max(Bins) / 1024,
                         lists:sum(Heaps) / ?CONNS / 1024, lists:sum(Bins) / ?CONNS / 1024,
                         ?FIXED div 1024, Bound div 1024]),
    ct:pal("~s", [Msg]),
    [?assert(H + B =< Bound, {conn_memory, H, B, Bound}) || {H, B} <- Figures],
    %% The refused read is still held: nothing of the body is lost.
    [?assert(B >= 1, {no_pending_read, B}) || B <- Bins],
    {ok, _} = py:call(bp_ring_apps, release, []),
    [gen_tcp:close(S) || S <- Socks],
    [exit(P, kill) || P <- Senders],
    wait_until(fun() -> bodypipe_http:requests(ring_memory) =:= [] end),
    {comment, lists:flatten(Msg)}.

send_all(_S, _Piece, 0) -> ok;
send_all(S, Piece, N) ->
    case gen_tcp:send(S, Piece) of
        ok -> send_all(S, Piece, N - 1);
        {error, _} -> ok
    end.

%% Connections whose ring is full and that are blocked on it: the socket is
%% not armed, no message waits and the process waits in its loop.
blocked() ->
    [Pid || #{id := Id, received := Received} <- bodypipe_http:requests(ring_memory),
            Received >= ?MAX_BUFFERED,
            Pid <- [list_to_pid(binary_to_list(Id))],
            socket_passive(Pid),
            erlang:process_info(Pid, [status, message_queue_len])
                =:= [{status, waiting}, {message_queue_len, 0}]].

socket_passive(Pid) ->
    Socks = [P || P <- erlang:ports(), erlang:port_info(P, connected) =:= {connected, Pid},
                  erlang:port_info(P, name) =:= {name, "tcp_inet"}],
    case Socks of
        [Sock] -> inet:getopts(Sock, [active]) =:= {ok, [{active, false}]};
        _ -> false
    end.

%% Process memory (heap, stack, ...) and the bytes of the binaries it refers to.
conn_memory(Pid) ->
    [{memory, Mem}, {binary, Bins}] = erlang:process_info(Pid, [memory, binary]),
    {Mem, lists:sum([Size || {_, Size, _} <- Bins])}.

wait_until(Fun) ->
    bodypipe_http_test_client:wait_until(Fun, 400).
