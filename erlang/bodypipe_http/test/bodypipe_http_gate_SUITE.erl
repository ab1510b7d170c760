%% bodypipe_http_gate: the accept states, and telling a registered waiter that
%% an application call starts (what lets `bodypipe_serve_gate' leave an idle
%% interpreter alone and still probe one that starts a call at once).
-module(bodypipe_http_gate_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0]).
-export([states/1, call_wakes_the_waiter/1, busy_already/1, no_call_times_out/1,
         no_notice_unless_awaited/1, no_waiter/1]).

-define(G, bodypipe_http_gate).
-define(WAITER, bodypipe_http_gate_test_waiter).

all() ->
    [states, call_wakes_the_waiter, busy_already, no_call_times_out, no_notice_unless_awaited,
     no_waiter].

states(_Config) ->
    G = ?G:new(),
    true = ?G:is_gate(G),
    false = ?G:is_gate({?G, make_ref()}),
    {true, false} = {?G:accepting(G), ?G:draining(G)},
    ok = ?G:close(G),
    {false, false} = {?G:accepting(G), ?G:draining(G)},
    ok = ?G:open(G),
    true = ?G:accepting(G),
    ok = ?G:drain(G),
    ok = ?G:open(G),  % draining is for good
    {false, true} = {?G:accepting(G), ?G:draining(G)}.

%% The waiter awaits with no call running; another process starts a call.
call_wakes_the_waiter(_Config) ->
    G = ?G:new(?WAITER),
    Self = self(),
    Waiter = spawn_link(fun() ->
                                true = register(?WAITER, self()),
                                Self ! {ready, self()},
                                Self ! {result, ?G:await_call(G, fun() -> false end, infinity)}
                        end),
    receive {ready, Waiter} -> ok end,
    %% Until it has raised its flag, a call would go unnoticed (and the
    %% wait would see it through Busy() instead): retry until it is told.
    ok = bodypipe_http_test_client:wait_until(
           fun() ->
                   ok = ?G:call_started(G),
                   receive {result, R} -> ?assertEqual(call_started, R), true
                   after 10 -> false
                   end
           end, 500).

busy_already(_Config) ->
    as_waiter(fun(G) -> call_started = ?G:await_call(G, fun() -> true end, infinity) end).

no_call_times_out(_Config) ->
    as_waiter(fun(G) ->
                      timeout = ?G:await_call(G, fun() -> false end, 20),
                      %% Nobody awaits now: a call sends nothing, so the next
                      %% wait is not ended by a stale notice either.
                      ok = ?G:call_started(G),
                      timeout = ?G:await_call(G, fun() -> false end, 20)
              end).

no_notice_unless_awaited(_Config) ->
    as_waiter(fun(G) ->
                      [ok = ?G:call_started(G) || _ <- lists:seq(1, 100)],
                      {messages, []} = process_info(self(), messages)
              end).

%% Runs Test(Gate) in this process, registered as the gate's waiter.
as_waiter(Test) ->
    G = ?G:new(?WAITER),
    true = register(?WAITER, self()),
    try
        Test(G)
    after
        unregister(?WAITER)
    end.

%% A gate without a waiter (a plain bodypipe_http server), or whose waiter
%% is not running: calls cost nothing and send nothing.
no_waiter(_Config) ->
    ok = ?G:call_started(none),
    ok = ?G:call_started(?G:new()),
    G = ?G:new(?WAITER),
    ok = ?G:call_started(G),
    {messages, []} = process_info(self(), messages).
