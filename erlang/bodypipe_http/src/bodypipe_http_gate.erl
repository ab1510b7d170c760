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
-module(bodypipe_http_gate).

-export([new/0, is_gate/1, open/1, close/1, drain/1, accepting/1, draining/1]).

-export_type([gate/0]).

-opaque gate() :: {bodypipe_http_gate, atomics:atomics_ref()}.

-define(CLOSED, 0).
-define(OPEN, 1).
-define(DRAINING, 2).

%% @doc A new gate, open.
-spec new() -> gate().
new() ->
    A = atomics:new(1, []),
    atomics:put(A, 1, ?OPEN),
    {?MODULE, A}.

%% @doc Whether `Term' is a gate (for option checks).
-spec is_gate(term()) -> boolean().
is_gate({?MODULE, A}) -> is_reference(A);
is_gate(_) -> false.

%% @doc Opens the gate, unless the server is draining.
-spec open(gate()) -> ok.
open({?MODULE, A}) ->
    _ = atomics:compare_exchange(A, 1, ?CLOSED, ?OPEN),
    ok.

%% @doc Closes the gate until `open/1', unless the server is draining.
-spec close(gate()) -> ok.
close({?MODULE, A}) ->
    _ = atomics:compare_exchange(A, 1, ?OPEN, ?CLOSED),
    ok.

%% @doc Closes the gate for good: the server is shutting down.
-spec drain(gate()) -> ok.
drain({?MODULE, A}) ->
    atomics:put(A, 1, ?DRAINING).

%% @doc Whether acceptors may take a connection now (`none': no gate).
-spec accepting(gate() | none) -> boolean().
accepting(none) -> true;
accepting({?MODULE, A}) -> atomics:get(A, 1) =:= ?OPEN.

%% @doc Whether the server is shutting down (`none': never).
-spec draining(gate() | none) -> boolean().
draining(none) -> false;
draining({?MODULE, A}) -> atomics:get(A, 1) =:= ?DRAINING.
