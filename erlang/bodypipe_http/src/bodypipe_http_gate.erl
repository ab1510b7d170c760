%% @doc The accept gate of a `bodypipe_http' server: whether its acceptors
%% take new connections now.
%%
%% A worker VM of `bodypipe serve' must leave connections to others when it
%% cannot run them: a worker whose embedded interpreter is stalled (one
%% request holding the GIL in a long C call) stops taking them (the
%% supervisor steers new ones to other workers meanwhile), and a worker being
%% replaced leaves its socket's queue to its successor. The gate is a shared
%% atomic, cheap to read on every accept: `open', `closed' (for now: reopened
%% when the interpreter answers again, see `bodypipe_serve_gate') or
%% `draining' (for good: the server is shutting down; connections are not
%% kept alive either).
%%
%% The gate also tells one process, registered under the name given to
%% `new/1', that an application call starts, when that process asked to be
%% told (`await_call/3'): `bodypipe_serve_gate' probes an interpreter that
%% runs no call only once a second, and must probe one that starts a call
%% at once, since that call may stall it. Each call costs one atomic read.
-module(bodypipe_http_gate).

-export([new/0, new/1, is_gate/1, open/1, close/1, drain/1, accepting/1, draining/1,
         call_started/1, await_call/3]).

-export_type([gate/0]).

-opaque gate() :: {bodypipe_http_gate, atomics:atomics_ref(), atom() | none}.

-define(CLOSED, 0).
-define(OPEN, 1).
-define(DRAINING, 2).

%% Index 1: the gate's state; index 2: 1 while the waiter awaits a call.
-define(STATE, 1).
-define(AWAITED, 2).

%% @doc A new gate, open, telling nobody of calls.
-spec new() -> gate().
new() ->
    new(none).

%% @doc A new gate, open; `Waiter' (a registered name, or `none') may await
%% calls.
-spec new(atom() | none) -> gate().
new(Waiter) when is_atom(Waiter) ->
    A = atomics:new(2, []),
    atomics:put(A, ?STATE, ?OPEN),
    {?MODULE, A, Waiter}.

%% @doc Whether `Term' is a gate (for option checks).
-spec is_gate(term()) -> boolean().
is_gate({?MODULE, A, W}) -> is_reference(A) andalso is_atom(W);
is_gate(_) -> false.

%% @doc An application call starts: wakes the waiter if it awaits one.
-spec call_started(gate() | none) -> ok.
call_started({?MODULE, A, Waiter}) when Waiter =/= none ->
    case atomics:get(A, ?AWAITED) =:= 1 andalso
        atomics:compare_exchange(A, ?AWAITED, 1, 0) =:= ok of
        true ->
            case whereis(Waiter) of
                undefined -> ok;
                Pid -> Pid ! {?MODULE, call_started}, ok
            end;
        false ->
            ok
    end;
call_started(_) ->
    ok.

%% @doc Called by the waiter: returns when a call starts (`call_started'),
%% when `Busy()' says one runs already, or after `Timeout' ms (`timeout').
-spec await_call(gate(), fun(() -> boolean()), timeout()) -> call_started | timeout.
await_call({?MODULE, A, _}, Busy, Timeout) ->
    %% A notice left from an earlier wait would end this one at once.
    receive {?MODULE, call_started} -> ok after 0 -> ok end,
    atomics:put(A, ?AWAITED, 1),
    %% Asked after the flag is up: a call that started before it is seen
    %% here, one that starts after it sends the notice.
    Result = case Busy() of
                 true -> call_started;
                 false -> receive {?MODULE, call_started} -> call_started
                          after Timeout -> timeout
                          end
             end,
    atomics:put(A, ?AWAITED, 0),
    Result.

%% @doc Opens the gate, unless the server is draining.
-spec open(gate()) -> ok.
open({?MODULE, A, _}) ->
    _ = atomics:compare_exchange(A, ?STATE, ?CLOSED, ?OPEN),
    ok.

%% @doc Closes the gate until `open/1', unless the server is draining.
-spec close(gate()) -> ok.
close({?MODULE, A, _}) ->
    _ = atomics:compare_exchange(A, ?STATE, ?OPEN, ?CLOSED),
    ok.

%% @doc Closes the gate for good: the server is shutting down.
-spec drain(gate()) -> ok.
drain({?MODULE, A, _}) ->
    atomics:put(A, ?STATE, ?DRAINING).

%% @doc Whether acceptors may take a connection now (`none': no gate).
-spec accepting(gate() | none) -> boolean().
accepting(none) -> true;
accepting({?MODULE, A, _}) -> atomics:get(A, ?STATE) =:= ?OPEN.

%% @doc Whether the server is shutting down (`none': never).
-spec draining(gate() | none) -> boolean().
draining(none) -> false;
draining({?MODULE, A, _}) -> atomics:get(A, ?STATE) =:= ?DRAINING.
