%% @doc One worker VM of `bodypipe serve' (bin/bodypipe): loads the
%% application into its own embedded interpreter and serves it from the
%% listening socket it inherited from the supervisor, until told to stop.
%%
%% The supervisor (bin/bodypipe) starts it as
%% `erl -noshell -run bodypipe_serve worker Config', where `Config' is an
%% Erlang term (a map, see `config()') written as text. The worker talks to the
%% supervisor over two inherited pipes (`control_in', `control_out'):
%%
%% - it writes `ready' once it serves, or exits with status 3 after printing
%%   why the application could not be loaded (the Python traceback);
%% - it writes `stalled' when its interpreter stops answering and `free' when
%%   it answers again (`bodypipe_serve_gate'), so that the supervisor steers
%%   new connections to workers that can run them;
%% - it reads `drain' (or end of file: the supervisor is gone), and SIGTERM
%%   does the same: the accept gate closes for good, responses stop keeping
%%   connections alive, and the VM exits once no connection is left or after
%%   `graceful_timeout' ms, closing the rest.
-module(bodypipe_serve).

-export([worker/1, check_app/2]).

-export_type([config/0]).

-type config() :: #{worker := pos_integer(),
                    listen_fd := {non_neg_integer(), inet | inet6},
                    control_in := non_neg_integer(),
                    control_out := non_neg_integer(),
                    apps := [bodypipe_http:mount()],
                    python_path := [binary()],
                    venv := none | binary(),
                    access_log := none | stdout | {file, binary()},
                    graceful_timeout := non_neg_integer(),
                    gate := bodypipe_serve_gate:options(),
                    http := bodypipe_http:options()}.

-define(NAME, bodypipe_serve).
%% Exit status: the application (or the venv) cannot be loaded; the
%% supervisor stops rather than restart a worker that cannot start.
-define(EXIT_LOAD, 3).
-define(EXIT_CONFIG, 2).

%% @doc The worker's entry point (`-run bodypipe_serve worker Config').
-spec worker([string()]) -> no_return().
worker([Text]) ->
    case parse_config(Text) of
        {ok, Cfg} -> run(Cfg);
        {error, Reason} -> fatal(?EXIT_CONFIG, "bad worker configuration: ~tp", [Reason])
    end;
worker(Args) ->
    fatal(?EXIT_CONFIG, "usage: -run bodypipe_serve worker Config (got ~tp)", [Args]).

parse_config(Text) ->
    case erl_scan:string(Text ++ ".") of
        {ok, Tokens, _} ->
            case erl_parse:parse_term(Tokens) of
                {ok, #{} = Cfg} -> {ok, Cfg};
                {ok, Other} -> {error, {not_a_map, Other}};
                {error, _} = E -> E
            end;
        {error, Info, _} ->
            {error, Info}
    end.

run(#{worker := Id, control_in := In, control_out := Out} = Cfg) ->
    Control = open_port({fd, In, Out}, [in, out, binary, eof, {line, 256}]),
    ok = bodypipe_serve_signals:install(self()),
    {ok, _} = application:ensure_all_started(bodypipe),
    ok = check_venv(maps:get(venv, Cfg)),
    ok = setup_python(maps:get(python_path, Cfg)),
    [ok = load_or_exit(Spec) || Spec <- app_specs(maps:get(apps, Cfg))],
    Gate = bodypipe_http_gate:new(bodypipe_serve_gate),
    {ok, _} = bodypipe_serve_gate:start_link(Gate, maps:get(gate, Cfg), self()),
    Log = access_log(maps:get(access_log, Cfg)),
    Opts = (maps:get(http, Cfg))#{name => ?NAME,
                                  fd => maps:get(listen_fd, Cfg),
                                  apps => maps:get(apps, Cfg),
                                  python_path => [],
                                  gate => Gate,
                                  access_log => Log},
    case bodypipe_http:start(Opts) of
        {ok, _} ->
            true = port_command(Control, <<"ready\n">>),
            serve(Control, Gate, Id, maps:get(graceful_timeout, Cfg));
        {error, {lifespan_startup_failed, Prefix, Error}} ->
            fatal(?EXIT_LOAD, "the ASGI application at ~ts/ failed its lifespan startup: ~ts",
                  [Prefix, load_error({error, Error})]);
        {error, {load_failed, Errors}} ->
            [io:format(standard_error, "bodypipe: the application at ~ts/: ~ts~n",
                       [P, load_error(E)]) || {P, E} <- Errors],
            fatal(?EXIT_LOAD, "cannot load the application", []);
        {error, Reason} ->
            fatal(?EXIT_LOAD, "cannot start the server: ~tp", [Reason])
    end.

serve(Control, Gate, Id, Graceful) ->
    receive
        {Control, {data, {eol, <<"drain">>}}} ->
            drain(Gate, Id, Graceful, "told to stop");
        {Control, {data, _}} ->
            serve(Control, Gate, Id, Graceful);
        {bodypipe_serve_gate, State} ->
            true = port_command(Control, [atom_to_binary(State), $\n]),
            serve(Control, Gate, Id, Graceful);
        {Control, eof} ->
            drain(Gate, Id, Graceful, "the supervisor is gone");
        {bodypipe_serve_signals, sigterm} ->
            drain(Gate, Id, Graceful, "SIGTERM")
    end.

drain(Gate, Id, Graceful, Why) ->
    ok = bodypipe_http_gate:drain(Gate),
    #{connections := N} = bodypipe_http:info(?NAME),
    io:format(standard_error, "bodypipe: worker ~b (pid ~s) stopping (~s): ~b connection(s) open,"
              " waiting up to ~b ms~n", [Id, os:getpid(), Why, N, Graceful]),
    wait_idle(erlang:monotonic_time(millisecond) + Graceful).

%% Done when no acceptor is inside an accept any more (one may still take a
%% connection for a few ms after the gate shut; it is counted open before it
%% leaves the accept) and every open connection is a kept-alive one waiting
%% for a request that has not begun (those would otherwise hold the drain
%% until keepalive_timeout); they are closed by the exit. A new connection
%% holds it until its first response (or header_timeout).
wait_idle(Deadline) ->
    #{connections := Open, waiting := Waiting, accepting := Accepting} =
        bodypipe_http:info(?NAME),
    N = Open - Waiting + Accepting,
    case N =< 0 orelse erlang:monotonic_time(millisecond) >= Deadline of
        true ->
            _ = N > 0 andalso
                io:format(standard_error, "bodypipe: graceful timeout: closing ~b connection(s)~n",
                          [N]),
            %% The ASGI apps' lifespan shutdown, which the halt would skip. The
            %% server is not stopped first: its acceptors and connections go
            %% with the VM, as they always have.
            ok = bodypipe_http:lifespan_shutdown(?NAME),
            erlang:halt(0, [{flush, true}]);
        false ->
            receive after 50 -> ok end,
            wait_idle(Deadline)
    end.

load_error({error, {Name, Message}}) when is_binary(Name), is_binary(Message) ->
    [Name, ": ", Message];
load_error(Other) ->
    io_lib:format("~tp", [Other]).

access_log(none) ->
    none;
access_log(Dest) ->
    case bodypipe_http_access_log:start_link(Dest) of
        {ok, Log} -> Log;
        {error, Reason} -> fatal(?EXIT_CONFIG, "cannot open the access log: ~tp", [Reason])
    end.

%% Each mount's `{Spec, DefaultAttr}': the callable's name when the spec has
%% none is `application' for WSGI (as gunicorn) and `app' for ASGI (as
%% uvicorn; bodypipe_asgi_host does the same).
app_specs(Apps) ->
    [{unicode:characters_to_binary(element(2, M)), default_attr(M)} || M <- Apps].

default_attr({_, _, Opts}) ->
    case proplists:get_value(interface, Opts, wsgi) of
        asgi -> <<"app">>;
        wsgi -> <<"application">>
    end;
default_attr(_) ->
    <<"application">>.

%% With a venv the supervisor puts its bin/ first on PATH, where the embedded
%% interpreter looks for its `python3' and so finds the venv's pyvenv.cfg (as
%% the venv's own python3 does); this checks that it did.
check_venv(none) ->
    ok;
check_venv(Venv) ->
    Code = <<"(__import__('os').path.realpath(__import__('sys').prefix),"
             " __import__('sys').version.split()[0])">>,
    {ok, {Prefix, Version}} = py:eval(py:context(?NAME), Code),
    Want = real_path(Venv),
    case Prefix =:= Want of
        true -> ok;
        false -> fatal(?EXIT_LOAD, "the embedded Python ~s did not take the venv ~ts (sys.prefix is"
                       " ~ts): is the venv made from this Python?", [Version, Venv, Prefix])
    end.

real_path(Path) ->
    {ok, P} = py:eval(py:context(?NAME), <<"__import__('os').path.realpath(p.decode())">>,
                      #{<<"p">> => Path}),
    P.

setup_python(Paths) ->
    case bodypipe_wsgi:setup(Paths) of
        ok -> ok;
        {error, Reason} -> fatal(?EXIT_LOAD, "cannot set up Python's path: ~tp", [Reason])
    end.

load_or_exit({Spec, DefaultAttr}) ->
    case check_app(Spec, DefaultAttr) of
        ok -> ok;
        {error, Text} -> fatal(?EXIT_LOAD, "cannot load the application ~ts:~n~ts", [Spec, Text])
    end.

%% @doc Imports the callable `Spec' (`module:callable') and says why it cannot
%% be served: the Python traceback of the import, or that the object is
%% missing or not callable.
-spec check_app(binary(), binary()) -> ok | {error, binary()}.
check_app(Spec, DefaultAttr) ->
    Code = <<"def _bodypipe_check(spec, default_attr):\n"
             "    import importlib, traceback\n"
             "    mod, _, attr = spec.partition(':')\n"
             "    if not mod:\n"
             "        return f'{spec!r}: no module name (want MODULE:CALLABLE)\\n'\n"
             "    try:\n"
             "        obj = importlib.import_module(mod)\n"
             "        for part in (attr or default_attr).split('.'):\n"
             "            obj = getattr(obj, part)\n"
             "    except BaseException as e:\n"
             "        frames = [f for f in traceback.extract_tb(e.__traceback__)\n"
             "                  if not f.filename.startswith('<')\n"
             "                  and f.filename != importlib.__file__]\n"
             "        return ('Traceback (most recent call last):\\n'\n"
             "                + ''.join(traceback.format_list(frames))\n"
             "                + ''.join(traceback.format_exception_only(type(e), e)))\n"
             "    if not callable(obj):\n"
             "        return f'{spec} is not callable: {obj!r}\\n'\n"
             "    return None\n">>,
    Ctx = py:context(?NAME),
    ok = py:exec(Ctx, Code),
    case py:eval(Ctx, <<"_bodypipe_check(spec.decode(), default.decode())">>,
                 #{<<"spec">> => Spec, <<"default">> => DefaultAttr}) of
        {ok, none} -> ok;
        {ok, Text} -> {error, Text};
        {error, {Name, Message}} -> {error, <<Name/binary, ": ", Message/binary>>}
    end.

-spec fatal(non_neg_integer(), io:format(), [term()]) -> no_return().
fatal(Status, Format, Args) ->
    io:format(standard_error, "bodypipe: " ++ Format ++ "~n", Args),
    erlang:halt(Status, [{flush, true}]).
