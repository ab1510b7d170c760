%% @doc Turns SIGTERM into a graceful stop of a `bodypipe serve' worker VM
%% (the VM's own handler would call `init:stop/0', which ends every connection
%% at once) and makes the VM ignore SIGHUP (the supervisor's signal).
-module(bodypipe_serve_signals).
-behaviour(gen_event).

-export([install/1]).
-export([init/1, handle_event/2, handle_call/2, handle_info/2]).

%% @doc From now on SIGTERM sends `{bodypipe_serve_signals, sigterm}' to `Pid'.
-spec install(pid()) -> ok.
install(Pid) ->
    ok = gen_event:swap_sup_handler(erl_signal_server, {erl_signal_handler, []}, {?MODULE, Pid}),
    ok = os:set_signal(sigterm, handle),
    ok = os:set_signal(sighup, ignore).

%% @private
init({Pid, _FromOldHandler}) ->
    {ok, Pid};
init(Pid) when is_pid(Pid) ->
    {ok, Pid}.

%% @private
handle_event(sigterm, Pid) ->
    Pid ! {?MODULE, sigterm},
    {ok, Pid};
handle_event(_Signal, Pid) ->
    {ok, Pid}.

%% @private
handle_call(_Request, Pid) ->
    {ok, ok, Pid}.

%% @private
handle_info(_Info, Pid) ->
    {ok, Pid}.
