%% @doc The demo server: `demo/demo_app.py' at `/' and `demo/demo_flask.py' at
%% `/flask', on 127.0.0.1:$PORT (8080). Started by `scripts/demo.sh'.
-module(bodypipe_demo).

-export([main/0, start/1]).

%% @doc Starts the demo server from the environment (`PORT', `BODYPIPE_DEMO_DIR',
%% `BODYPIPE_VALIDATE=1') and waits forever.
-spec main() -> no_return().
main() ->
    Port = list_to_integer(os:getenv("PORT", "8080")),
    %% Default: the repository's demo/ (erlang/_build/default/lib/bodypipe, five levels up).
    Dir = os:getenv("BODYPIPE_DEMO_DIR",
                    filename:join([code:lib_dir(bodypipe), "..", "..", "..", "..", "..", "demo"])),
    Validate = os:getenv("BODYPIPE_VALIDATE", "0") =:= "1",
    case start(#{port => Port, python_path => [Dir], validate => Validate}) of
        {ok, _} ->
            io:format("bodypipe: listening on http://127.0.0.1:~b/ (demo app at /, Flask at /flask)~n",
                      [bodypipe_http:port(bodypipe_http)]),
            receive stop -> halt(0) end;
        {error, Reason} ->
            io:format(standard_error, "bodypipe: cannot start: ~tp~n", [Reason]),
            halt(1)
    end.

%% @doc Starts the demo server with `Opts' merged over the demo's mounts.
-spec start(bodypipe_http:options()) -> {ok, pid()} | {error, term()}.
start(Opts) ->
    bodypipe_http:start(maps:merge(#{apps => [{<<"/flask">>, <<"demo_flask:app">>},
                                              {<<"">>, <<"demo_app:application">>}]},
                                   Opts)).
