%% @doc Keeps a worker VM's accept gate (`bodypipe_http_gate') shut while its
%% embedded interpreter cannot run Python code.
%%
%% A request holding the GIL in a long C call (`sum(range(10**9))' never lets
%% it go) stalls every Python call of its VM, but not the VM: its acceptors
%% would go on taking connections that then wait for the call to end. This
%% process asks the interpreter for a trivial call every `interval' ms; when
%% the answer takes longer than `stall' ms it shuts the gate and tells
%% `notify' `{bodypipe_serve_gate, stalled}' (bodypipe_serve passes it on to
%% the supervisor, which then steers new connections to workers whose
%% interpreter is free, as gunicorn's workers, whose accept loop is Python,
%% stop accepting by themselves); it opens the gate again, with
%% `{bodypipe_serve_gate, free}', when the answer comes. The probe also needs
%% a free thread of the call pool, so a worker whose pool is saturated counts
%% as stalled as well.
%%
%% While no Python call runs (the call pool has no busy thread and nothing
%% queued: `py:info/0', which needs no GIL), nothing of the server can stall
%% the interpreter, so the probe runs only every ?IDLE_PROBE_MS (for the app's
%% own background threads) or as soon as a call starts (the gate tells this
%% process, registered as `bodypipe_serve_gate'). Probing every `interval'
%% ms, or even only looking at the pool that often, cost an idle worker 17-21
%% ms of CPU a second (the VM woke 100 times a second for it).
-module(bodypipe_serve_gate).

-export([start_link/3]).
-export([init/3]).

-export_type([options/0]).

-type options() :: #{interval := pos_integer(), stall := pos_integer()}.

%% A stall this long is reported on standard error (with `stall' below it).
-define(REPORT_MS, 1000).
%% How often an idle worker's interpreter is probed all the same.
-define(IDLE_PROBE_MS, 1000).

%% @doc Starts the probe for `Gate', telling `Notify' when the interpreter
%% stalls and when it runs again.
-spec start_link(bodypipe_http_gate:gate(), options(), pid()) -> {ok, pid()}.
start_link(Gate, Opts, Notify) ->
    {ok, proc_lib:spawn_link(?MODULE, init, [Gate, Opts, Notify])}.

%% @private
-spec init(bodypipe_http_gate:gate(), options(), pid()) -> no_return().
init(Gate, #{interval := Interval, stall := Stall}, Notify) ->
    true = register(?MODULE, self()),
    loop(Gate, Interval, min(Stall, ?REPORT_MS - 1), Notify).

loop(Gate, Interval, Stall, Notify) ->
    probe(Gate, Stall, Notify),
    receive after Interval -> ok end,
    _ = calls_running() orelse
        bodypipe_http_gate:await_call(Gate, fun calls_running/0, ?IDLE_PROBE_MS),
    loop(Gate, Interval, Stall, Notify).

calls_running() ->
    #{threads := Threads, idle := Idle, queued := Queued} = py:info(),
    Threads > Idle orelse Queued > 0.

probe(Gate, Stall, Notify) ->
    {ok, Ref} = py:call_async(py:context(?MODULE), builtins, int, []),
    T0 = erlang:monotonic_time(millisecond),
    receive
        {Ref, _} -> ok
    after Stall ->
        ok = bodypipe_http_gate:close(Gate),
        Notify ! {?MODULE, stalled},
        receive
            {Ref, _} -> ok
        after ?REPORT_MS - Stall ->
            %% Long enough to be worth a line (the operator sees a stalled app; the
            %% tests know the gate is shut).
            io:format(standard_error, "bodypipe: worker pid ~s: Python has not run for ~b ms "
                      "(a call holding the GIL?): not accepting~n", [os:getpid(), ?REPORT_MS]),
            receive {Ref, _} -> ok end,
            io:format(standard_error, "bodypipe: worker pid ~s: Python runs again after ~b ms: "
                      "accepting~n", [os:getpid(), erlang:monotonic_time(millisecond) - T0])
        end,
        ok = bodypipe_http_gate:open(Gate),
        Notify ! {?MODULE, free}
    end.
