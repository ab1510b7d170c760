%% @doc The bodypipe application: starts the owner watcher that aborts a
%% buffer with `{owner_down, Reason}' when the process that created it exits.
-module(bodypipe_app).
-behaviour(application).

-export([start/2, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    bodypipe_sup:start_link().

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
