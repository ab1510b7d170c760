%% @doc The ASGI lifespan of one `bodypipe_http' server's ASGI mounts.
%%
%% `startup/1' runs when the server starts, before its socket is opened (so no
%% request can come before every app's `lifespan.startup' is complete); a
%% `lifespan.startup.failed' (or an app raising during its startup) makes the
%% start fail with `{lifespan_startup_failed, Prefix, Error}', after the
%% shutdown of the apps already started. An app that does not support
%% lifespan is served without it.
%%
%% The shutdown belongs to a process under the server's supervisor, its first
%% child: stopped last, so `lifespan.shutdown' comes once the acceptors, and
%% with them the connections, are gone; apps in the reverse order of their
%% startup.
-module(bodypipe_asgi_lifespan).
-behaviour(gen_server).

-export([startup/1, shutdown/1, start_link/1, child_spec/1]).
-export([init/1, handle_call/3, handle_cast/2, terminate/2]).

-export_type([mount/0]).

%% How long the server's supervisor waits for the apps' `lifespan.shutdown'.
-define(SHUTDOWN_MS, 30000).

-type mount() :: {Prefix :: binary(), bodypipe_wsgi:app_name()}.

%% @doc Runs the lifespan startup of `Mounts', in order.
-spec startup([mount()]) -> ok | {error, {lifespan_startup_failed, binary(), term()}}.
startup(Mounts) ->
    startup(Mounts, []).

startup([], _Started) ->
    ok;
startup([{Prefix, Name} = M | Rest], Started) ->
    case bodypipe_asgi:startup(Name) of
        {ok, _} ->
            startup(Rest, [M | Started]);
        {error, Reason} ->
            shutdown(lists:reverse(Started)),
            {error, {lifespan_startup_failed, Prefix, Reason}}
    end.

%% @doc Runs the lifespan shutdown of `Mounts' (given in startup order), the
%% last started first. A failing shutdown is logged.
-spec shutdown([mount()]) -> ok.
shutdown(Mounts) ->
    lists:foreach(fun({Prefix, Name}) ->
                          case bodypipe_asgi:shutdown(Name) of
                              {ok, _} -> ok;
                              {error, Reason} ->
                                  logger:error("bodypipe_http: lifespan shutdown of the ASGI app "
                                               "at ~tp failed: ~tp", [Prefix, Reason])
                          end
                  end, lists:reverse(Mounts)).

%% @doc The child of the server's supervisor that runs the shutdown of
%% `Mounts' when the server stops.
-spec child_spec([mount()]) -> supervisor:child_spec().
child_spec(Mounts) ->
    #{id => lifespan, start => {?MODULE, start_link, [Mounts]}, restart => permanent,
      shutdown => ?SHUTDOWN_MS, type => worker, modules => [?MODULE]}.

%% @private
-spec start_link([mount()]) -> {ok, pid()}.
start_link(Mounts) ->
    gen_server:start_link(?MODULE, Mounts, []).

%% @private
-spec init([mount()]) -> {ok, [mount()]}.
init(Mounts) ->
    process_flag(trap_exit, true),
    {ok, Mounts}.

%% @private
-spec handle_call(term(), gen_server:from(), [mount()]) -> {reply, {error, unknown_call}, [mount()]}.
handle_call(_Request, _From, Mounts) ->
    {reply, {error, unknown_call}, Mounts}.

%% @private
-spec handle_cast(term(), [mount()]) -> {noreply, [mount()]}.
handle_cast(_Msg, Mounts) ->
    {noreply, Mounts}.

%% @private
-spec terminate(term(), [mount()]) -> ok.
terminate(_Reason, Mounts) ->
    shutdown(Mounts).
