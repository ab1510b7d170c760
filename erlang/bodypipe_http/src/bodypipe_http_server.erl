%% @doc One `bodypipe_http' server: a supervisor, registered under the
%% server's name, that owns the listening socket and supervises the acceptors
%% (`bodypipe_http_acceptor').
%%
%% The supervisor opens the socket in its `init/1', so the socket lives exactly
%% as long as the server: stopping the supervisor closes it, and the acceptors
%% (and through their links the connections) go with it. With `reuseport' the
%% socket is opened with `SO_REUSEPORT', so several servers (for instance one
%% per VM) can listen on one port and the kernel spreads connections over them.
-module(bodypipe_http_server).
-behaviour(supervisor).

-export([start_link/1, port/1, info/1, requests/1, lifespan_shutdown/1, new_counters/0]).
-export([connections/1, body_readers/1, connection_opened/1, connection_closed/1]).
-export([waiting/1, waiting_started/1, waiting_ended/1, accepting/1, accept_started/1,
         accept_ended/1]).
-export([init/1]).

-define(CONNECTIONS, 1).
-define(BODY_READERS, 2).
-define(WAITING, 3).
-define(ACCEPTING, 4).

%% @doc Starts the server described by `Cfg' (made by `bodypipe_http').
-spec start_link(bodypipe_http:config()) -> {ok, pid()} | {error, term()}.
start_link(#{name := Name} = Cfg) ->
    supervisor:start_link({local, Name}, ?MODULE, Cfg).

%% @doc The port the server `Name' listens on.
-spec port(atom()) -> inet:port_number().
port(Name) ->
    {ok, #{start := {_, _, [LSock | _]}}} = supervisor:get_childspec(Name, {acceptor, 1}),
    {ok, Port} = inet:port(LSock),
    Port.

%% @doc See `bodypipe_http:info/1'.
-spec info(atom()) -> #{atom() => non_neg_integer()}.
info(Name) ->
    {ok, #{start := {_, _, [LSock, Cfg]}}} = supervisor:get_childspec(Name, {acceptor, 1}),
    #{counters := Counters, max_body_readers := Max} = Cfg,
    {ok, Port} = inet:port(LSock),
    #{connections => connections(Counters), body_readers => body_readers(Counters),
      waiting => waiting(Counters), accepting => accepting(Counters),
      max_body_readers => Max, port => Port}.

%% @doc See `bodypipe_http:requests/1'.
-spec requests(atom()) -> [bodypipe_http_admin:request()].
requests(Name) ->
    {ok, #{start := {_, _, [_, #{requests := Tab}]}}} = supervisor:get_childspec(Name, {acceptor, 1}),
    bodypipe_http_admin:requests(Tab).

%% @doc See `bodypipe_http:lifespan_shutdown/1'. The lifespan child (there is
%% one only with ASGI mounts) runs the shutdown as it terminates.
-spec lifespan_shutdown(atom()) -> ok.
lifespan_shutdown(Name) ->
    case supervisor:terminate_child(Name, lifespan) of
        ok -> ok;
        {error, not_found} -> ok
    end.

%% @doc The counters shared by a server's processes: open connections and
%% requests whose body is being read (see `bodypipe_http_conn').
-spec new_counters() -> atomics:atomics_ref().
new_counters() ->
    atomics:new(4, [{signed, true}]).

%% @doc Open connections of a server's `counters'.
-spec connections(atomics:atomics_ref()) -> integer().
connections(Counters) ->
    atomics:get(Counters, ?CONNECTIONS).

%% @doc Counts a connection in (by its acceptor) and out (by the connection).
-spec connection_opened(atomics:atomics_ref()) -> ok.
connection_opened(Counters) ->
    atomics:add(Counters, ?CONNECTIONS, 1).

-spec connection_closed(atomics:atomics_ref()) -> ok.
connection_closed(Counters) ->
    atomics:sub(Counters, ?CONNECTIONS, 1).

%% @doc Open connections of a server's `counters' kept alive after a
%% response, waiting for their next request (nothing of it received): a
%% server that shuts down may close them without cutting a request. A new
%% connection does not count until its first response: its client has
%% connected to send a request, which may be on its way.
-spec waiting(atomics:atomics_ref()) -> integer().
waiting(Counters) ->
    atomics:get(Counters, ?WAITING).

-spec waiting_started(atomics:atomics_ref()) -> ok.
waiting_started(Counters) ->
    atomics:add(Counters, ?WAITING, 1).

-spec waiting_ended(atomics:atomics_ref()) -> ok.
waiting_ended(Counters) ->
    atomics:sub(Counters, ?WAITING, 1).

%% @doc Acceptors of a server's `counters' inside an accept: a connection
%% they take is counted open before they leave it, so a server that has shut
%% its gate (`bodypipe_http_gate') and sees none accepting knows every
%% connection it will ever have.
-spec accepting(atomics:atomics_ref()) -> integer().
accepting(Counters) ->
    atomics:get(Counters, ?ACCEPTING).

-spec accept_started(atomics:atomics_ref()) -> ok.
accept_started(Counters) ->
    atomics:add(Counters, ?ACCEPTING, 1).

-spec accept_ended(atomics:atomics_ref()) -> ok.
accept_ended(Counters) ->
    atomics:sub(Counters, ?ACCEPTING, 1).

%% @doc Requests of a server's `counters' holding a body-reader slot.
-spec body_readers(atomics:atomics_ref()) -> integer().
body_readers(Counters) ->
    atomics:get(Counters, ?BODY_READERS).

-spec init(bodypipe_http:config()) -> {ok, {supervisor:sup_flags(), [supervisor:child_spec()]}}.
init(#{ip := IP, port := Port0, backlog := Backlog, reuseport := ReusePort,
       send_timeout := SendTimeout, acceptors := N} = Cfg0) ->
    %% The requests in progress (upload progress): owned by this supervisor,
    %% so the table lives exactly as long as the server.
    Cfg = Cfg0#{requests => bodypipe_http_admin:new_registry()},
    %% `fd': a listening socket opened by another process and inherited (the
    %% `bodypipe serve' supervisor hands each worker VM its own), with its
    %% address family (gen_tcp cannot tell an IPv6 one by itself).
    {Port, Where} = case maps:get(fd, Cfg, none) of
                        none -> {Port0, [{ip, IP}]};
                        {Fd, Family} -> {0, [{fd, Fd}, Family]};
                        Fd -> {0, [{fd, Fd}]}
                    end,
    Opts = [binary, {packet, raw}, {active, false}, {reuseaddr, true}] ++ Where ++ [
            {backlog, Backlog}, {nodelay, true},
            %% Socket reads while a head is awaited; bodies are read
            %% chunk_size at a time (bodypipe_http_conn). The kernel sizes
            %% its own buffers.
            {buffer, bodypipe_http_conn:head_read(Cfg)},
            %% A client that stops reading the response cannot hold the
            %% connection process forever.
            {send_timeout, SendTimeout}, {send_timeout_close, true},
            %% A client that half-closes after its request still gets the response.
            {exit_on_close, false}]
        ++ reuseport(ReusePort),
    case gen_tcp:listen(Port, Opts) of
        {ok, LSock} ->
            Acceptors = [#{id => {acceptor, I},
                           start => {bodypipe_http_acceptor, start_link, [LSock, Cfg]},
                           restart => permanent, shutdown => brutal_kill, type => worker,
                           modules => [bodypipe_http_acceptor]}
                         || I <- lists:seq(1, N)],
            %% The ASGI apps' lifespan (started by bodypipe_http before the
            %% socket was opened): its shutdown comes after the last connection.
            Lifespan = case maps:get(lifespan, Cfg, []) of
                           [] -> [];
                           Asgi -> [bodypipe_asgi_lifespan:child_spec(Asgi)]
                       end,
            {ok, {#{strategy => one_for_one, intensity => 10, period => 10}, Lifespan ++ Acceptors}};
        {error, Reason} ->
            %% start_link returns {error, {listen, Reason}}.
            exit({listen, Reason})
    end.

%% SO_REUSEPORT (OTP 25 has no portable option for it): SOL_SOCKET = 1,
%% SO_REUSEPORT = 15 on Linux.
reuseport(false) ->
    [];
reuseport(true) ->
    case os:type() of
        {unix, linux} -> [{raw, 1, 15, <<1:32/native>>}];
        _ -> []
    end.
