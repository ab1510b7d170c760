%% @doc The bodypipe_http application: a supervisor for the servers started
%% with `bodypipe_http:start/1'.
-module(bodypipe_http_app).
-behaviour(application).

-export([start/2, stop/1]).

-spec start(application:start_type(), term()) -> {ok, pid()} | {error, term()}.
start(_Type, _Args) ->
    bodypipe_http_sup:start_link().

-spec stop(term()) -> ok.
stop(_State) ->
    ok.
