%% @doc An acceptor of a `bodypipe_http' server: accepts connections on the
%% listening socket and starts one `bodypipe_http_conn' process for each.
%%
%% Connection processes are linked to the acceptor that started them, so
%% stopping the server (which kills the acceptors) ends them too. The acceptor
%% traps exits, so a connection that crashes does not take the acceptor or its
%% other connections with it; it discards those exit messages before every
%% accept, so its mailbox holds no more than one message per connection that
%% ended since the last accept.
%%
%% While the server holds `max_connections' connections, the acceptor stops
%% accepting (the kernel's backlog queues new ones) and checks again when one of
%% its connections ends, or every 50 ms (a connection of another acceptor may
%% have ended). Acceptors check the count independently, so it may be exceeded
%% by at most the number of acceptors minus one.
%%
%% With a `gate' (`bodypipe_http_gate'), the acceptor also waits while the gate
%% is shut, and accepts with a timeout of ?GATED_ACCEPT_MS so that an accept
%% already waiting when the gate shuts ends soon: connections then stay in the
%% listening socket's queue (for a replacing worker VM that shares it, or until
%% the gate opens again). Soon, not at once: every timeout wakes the acceptor,
%% and at 20 ms the 32 acceptors of an idle worker took 24 ms of CPU a second;
%% at 200 ms a drain starts at most that much later, and a stalled worker gets
%% no new connections meanwhile anyway (`bodypipe serve' steers them away).
-module(bodypipe_http_acceptor).

-export([start_link/2]).
-export([init/3]).

-define(RECHECK_MS, 50).
-define(GATED_ACCEPT_MS, 200).
-define(GATE_RECHECK_MS, 20).

%% @doc Starts an acceptor on `LSock'.
-spec start_link(gen_tcp:socket(), bodypipe_http:config()) -> {ok, pid()}.
start_link(LSock, Cfg) ->
    {ok, proc_lib:spawn_link(?MODULE, init, [self(), LSock, Cfg])}.

%% @private
-spec init(pid(), gen_tcp:socket(), bodypipe_http:config()) -> no_return().
init(Parent, LSock, Cfg) ->
    process_flag(trap_exit, true),
    put(bodypipe_http_parent, Parent),
    loop(LSock, Cfg).

loop(LSock, #{counters := Counters, max_connections := Max} = Cfg) ->
    ok = flush_exits(),
    Gate = maps:get(gate, Cfg, none),
    case bodypipe_http_server:connections(Counters) >= Max of
        true ->
            receive {'EXIT', Pid, Reason} -> exited(Pid, Reason) after ?RECHECK_MS -> ok end,
            loop(LSock, Cfg);
        false when Gate =:= none ->
            accept(LSock, Cfg, infinity);
        false ->
            case bodypipe_http_gate:accepting(Gate) of
                true ->
                    accept(LSock, Cfg, ?GATED_ACCEPT_MS);
                false ->
                    receive {'EXIT', Pid, Reason} -> exited(Pid, Reason)
                    after ?GATE_RECHECK_MS -> ok
                    end,
                    loop(LSock, Cfg)
            end
    end.

accept(LSock, Cfg, Timeout) ->
    Counters = maps:get(counters, Cfg),
    ok = bodypipe_http_server:accept_started(Counters),
    case gen_tcp:accept(LSock, Timeout) of
        {ok, Sock} ->
            %% Counted here, before the next check; the connection takes it back.
            %% Open before the accept ends, so no connection is ever in neither count.
            bodypipe_http_server:connection_opened(Counters),
            ok = bodypipe_http_server:accept_ended(Counters),
            Pid = bodypipe_http_conn:start_link(Cfg),
            _ = case gen_tcp:controlling_process(Sock, Pid) of
                    ok -> Pid ! {bodypipe_http_socket, Sock};
                    %% The connection ends at once (and takes its count back).
                    {error, _} -> gen_tcp:close(Sock), Pid ! bodypipe_http_no_socket
                end,
            loop(LSock, Cfg);
        {error, Reason} ->
            ok = bodypipe_http_server:accept_ended(Counters),
            accept_failed(LSock, Cfg, Reason)
    end.

accept_failed(LSock, Cfg, Reason) ->
    case Reason of
        closed ->
            exit(normal);
        timeout ->
            loop(LSock, Cfg);
        einval ->
            %% The socket no longer listens: whoever shares it shut it down
            %% (`bodypipe serve' stopping); the gate is about to say so.
            receive {'EXIT', Pid, Why} -> exited(Pid, Why) after ?RECHECK_MS -> ok end,
            loop(LSock, Cfg);
        _ when Reason =:= emfile; Reason =:= enfile; Reason =:= enobufs; Reason =:= enomem ->
            %% Out of descriptors or memory: the connections in the backlog wait.
            logger:warning("bodypipe_http: accept failed: ~p", [Reason]),
            receive {'EXIT', Pid, Why} -> exited(Pid, Why) after 100 -> ok end,
            loop(LSock, Cfg);
        _ ->
            %% A connection reset before it was accepted (econnaborted...).
            loop(LSock, Cfg)
    end.

flush_exits() ->
    receive
        {'EXIT', Pid, Reason} -> exited(Pid, Reason), flush_exits()
    after 0 ->
        ok
    end.

%% A connection ended (its count was taken back by the connection itself), or
%% the supervisor did: then the acceptor goes too.
exited(Pid, Reason) ->
    case get(bodypipe_http_parent) of
        Pid -> exit(Reason);
        _ -> ok
    end.
