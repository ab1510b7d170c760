%% Common Test suite for py_buffer: the Erlang API, and Python reading the same
%% buffers through the embedded interpreter.
-module(py_buffer_SUITE).

-include_lib("common_test/include/ct.hrl").
-include_lib("stdlib/include/assert.hrl").

-export([all/0, groups/0, init_per_suite/1, end_per_suite/1]).
-export([new_variants/1, new_bad_args/1, too_large/1,
         write_iodata/1, write_bad_args/1, write_after_close/1,
         write_limits/1, large_write_dirty/1, large_write_redirects_to_dirty/1,
         large_writes_no_long_schedule/1, close_abort_idempotent/1,
         info_keys/1, concurrent_writers/1, concurrent_large_and_small_writers/1,
         stream_read_chunks/1, stream_readline/1, stream_iteration/1,
         stream_asyncio/1, abort_reason_in_python/1,
         owner_death_aborts_blocked_reader/1, owner_exits_right_after_new/1,
         owner_death_without_watcher/1, owner_death_during_large_write_without_watcher/1,
         ring_full_then_notify/1, notify_unbounded_immediate/1,
         notify_reader_closed/1, notify_writer_closed/1,
         gc_erlang_only/1, gc_python_only_closed/1, gc_python_only_unclosed/1,
         gc_memoryview_survives/1, gc_churn_both_sides/1,
         ten_thousand_buffers/1]).

all() ->
    [{group, api}, {group, python}, {group, owner}, {group, ring}, {group, gc}].

groups() ->
    [{api, [], [new_variants, new_bad_args, too_large, write_iodata, write_bad_args,
                write_after_close, write_limits, large_write_dirty,
                large_write_redirects_to_dirty, large_writes_no_long_schedule,
                close_abort_idempotent, info_keys, concurrent_writers,
                concurrent_large_and_small_writers]},
     {python, [], [stream_read_chunks, stream_readline, stream_iteration, stream_asyncio,
                   abort_reason_in_python]},
     {owner, [], [owner_death_aborts_blocked_reader, owner_exits_right_after_new,
                  owner_death_without_watcher, owner_death_during_large_write_without_watcher]},
     {ring, [], [ring_full_then_notify, notify_unbounded_immediate, notify_reader_closed,
                 notify_writer_closed]},
     {gc, [], [gc_erlang_only, gc_python_only_closed, gc_python_only_unclosed,
               gc_memoryview_survives, gc_churn_both_sides, ten_thousand_buffers]}].

init_per_suite(Config) ->
    {ok, _} = application:ensure_all_started(bodypipe),
    Data = list_to_binary(?config(data_dir, Config)),
    ok = py:exec(py:context(default),
                 <<"import sys\nsys.path.insert(0, ", (py_str(Data))/binary, ")\n">>),
    Config.

end_per_suite(_Config) ->
    ok.

py_str(Bin) ->
    <<"'", (binary:replace(Bin, <<"'">>, <<"\\'">>, [global]))/binary, "'">>.

%%--------------------------------------------------------------------
%% API

new_variants(_Config) ->
    {ok, B0} = py_buffer:new(),
    {ok, B1} = py_buffer:new(undefined),
    {ok, B2} = py_buffer:new(10),
    {ok, B3} = py_buffer:new(#{content_length => 4, max_buffered => 1024, max_size => 100}),
    {ok, B4} = py_buffer:new(#{}),
    {ok, _} = py_buffer:new(0),
    #{content_length := undefined} = py_buffer:info(B0),
    #{content_length := undefined} = py_buffer:info(B1),
    #{content_length := 10} = py_buffer:info(B2),
    #{content_length := 4, max_buffered := 1024} = py_buffer:info(B3),
    #{max_buffered := undefined} = py_buffer:info(B4),
    %% reaching the content length is EOF
    ok = py_buffer:write(B3, <<"abcd">>),
    #{eof := true} = py_buffer:info(B3),
    ok.

new_bad_args(_Config) ->
    Bad = [-1, foo, <<"10">>, 1.5, #{bogus => 1}, #{content_length => -5},
           #{max_buffered => 0}, #{max_buffered => -1}, #{max_size => -1},
           #{content_length => foo}, [1], -(1 bsl 70), #{max_size => -(1 bsl 70)}],
    [?assertError(badarg, py_buffer:new(B)) || B <- Bad],
    %% the NIF's own decoder, past the facade's guards: bignums are sizes, these are not
    NifBad = [{-(1 bsl 70), undefined, undefined}, {1.0e30, undefined, undefined},
              {undefined, -(1 bsl 70), undefined}, {undefined, 0, undefined},
              {undefined, undefined, -(1 bsl 70)}, {undefined, undefined, 1.0e30},
              {undefined, undefined, foo}],
    [?assertError(badarg, bodypipe_nif:buffer_new(C, M, S)) || {C, M, S} <- NifBad],
    ok.

too_large(_Config) ->
    %% default max_size is 1 GiB; nothing is allocated up front
    {ok, _} = py_buffer:new(1 bsl 30),
    {error, too_large} = py_buffer:new((1 bsl 30) + 1),
    {error, too_large} = py_buffer:new(#{content_length => 101, max_size => 100}),
    %% a huge declared length must not reserve memory
    {error, too_large} = py_buffer:new(1 bsl 62),
    {ok, Huge} = py_buffer:new(#{content_length => 1 bsl 40, max_size => 1 bsl 41}),
    #{written := 0} = py_buffer:info(Huge),
    %% storage follows the bytes written, not the declared length: one small segment
    ok = py_buffer:write(Huge, <<"x">>),
    %% Integers beyond u64 pass the facade's guards. Such a content length is above any
    %% max_size: too_large, like any other length above it (not badarg).
    {error, too_large} = py_buffer:new(1 bsl 70),
    {error, too_large} = py_buffer:new(1 bsl 64),
    {error, too_large} = py_buffer:new(#{content_length => 1 bsl 70}),
    {error, too_large} = py_buffer:new(#{content_length => 1 bsl 64, max_size => 1 bsl 70}),
    %% a max_size beyond u64 is clamped to u64::MAX (no body is longer), so the largest u64
    %% length is accepted under it (and reserves nothing)
    U64Max = (1 bsl 64) - 1,
    {ok, Max} = py_buffer:new(#{content_length => U64Max, max_size => 1 bsl 70}),
    #{content_length := U64Max, written := 0} = py_buffer:info(Max),
    {ok, Unlimited} = py_buffer:new(#{max_size => 1 bsl 70}),
    ok = py_buffer:write(Unlimited, <<"x">>),
    %% likewise a max_buffered beyond the address space: a high-water mark never reached
    {ok, Ring} = py_buffer:new(#{max_buffered => 1 bsl 70}),
    #{max_buffered := MaxBuffered} = py_buffer:info(Ring),
    true = MaxBuffered >= 1 bsl 32,
    ok = py_buffer:write(Ring, <<"x">>),
    ok.

write_iodata(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, <<"ab">>),
    ok = py_buffer:write(B, "cd"),
    ok = py_buffer:write(B, [<<"e">>, [$f, [<<"g">>]], [] | <<"h">>]),
    ok = py_buffer:write(B, []),
    ok = py_buffer:write(B, <<>>),
    ok = py_buffer:write(B, [[], [[]], <<>>]),
    ok = py_buffer:write(B, [0, 255]),
    ok = py_buffer:close(B),
    #{written := 10} = py_buffer:info(B),
    {ok, <<"abcdefgh", 0, 255>>} = py:call(bp_helpers, read_all, [B]),
    ok.

write_bad_args(_Config) ->
    {ok, B} = py_buffer:new(),
    ?assertError(badarg, py_buffer:write(B, foo)),
    ?assertError(badarg, py_buffer:write(B, 42)),
    ?assertError(badarg, py_buffer:write(B, [256])),
    ?assertError(badarg, py_buffer:write(B, [-1])),
    ?assertError(badarg, py_buffer:write(B, [<<"a">> | foo])),
    ?assertError(badarg, py_buffer:write(B, [<<"a">> | 7])),
    ?assertError(badarg, py_buffer:write(B, <<1:3>>)),
    ?assertError(badarg, py_buffer:write(B, [1.0])),
    ?assertError(badarg, py_buffer:write(make_ref(), <<"x">>)),
    ?assertError(badarg, py_buffer:write(not_a_buffer, <<"x">>)),
    ?assertError(badarg, py_buffer:close(make_ref())),
    ?assertError(badarg, py_buffer:info(self())),
    ?assertError(badarg, py_buffer:notify_writable(<<>>)),
    ?assertError(badarg, py_buffer:abort(make_ref(), x)),
    ?assertError(badarg, py_buffer:abort(not_a_buffer, x)),
    ?assertError(badarg, py_buffer:abort(self(), {some, reason})),
    %% the abort of a non-buffer touched nothing
    #{aborted := false} = py_buffer:info(B),
    %% a failed write stored nothing
    #{written := 0} = py_buffer:info(B),
    ok.

write_after_close(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, <<"x">>),
    ok = py_buffer:close(B),
    {error, closed} = py_buffer:write(B, <<"y">>),
    {error, closed} = py_buffer:write(B, lists:duplicate(1 bsl 20, $z)),
    {ok, B2} = py_buffer:new(),
    ok = py_buffer:abort(B2, boom),
    {error, closed} = py_buffer:write(B2, <<"y">>),
    ok.

write_limits(_Config) ->
    {ok, B} = py_buffer:new(5),
    ok = py_buffer:write(B, <<"abc">>),
    {error, exceeds_content_length} = py_buffer:write(B, <<"def">>),
    #{written := 3} = py_buffer:info(B),
    ok = py_buffer:write(B, <<"de">>),
    {error, _} = py_buffer:write(B, <<"f">>),
    {ok, B2} = py_buffer:new(#{max_size => 8}),
    ok = py_buffer:write(B2, <<"12345678">>),
    {error, too_large} = py_buffer:write(B2, <<"9">>),
    ok.

large_write_dirty(_Config) ->
    {ok, B} = py_buffer:new(),
    Big = binary:copy(<<"0123456789abcdef">>, 1 bsl 16),   % 1 MiB: dirty scheduler
    ok = py_buffer:write(B, Big),
    Many = [<<I:8>> || I <- lists:seq(1, 100000) ] ,        % long iolist: dirty
    ok = py_buffer:write(B, Many),
    Bytes = lists:duplicate(50000, $q),                      % many small integers
    ok = py_buffer:write(B, Bytes),
    Expected = byte_size(Big) + 100000 + 50000,
    #{written := Expected} = py_buffer:info(B),
    ok = py_buffer:close(B),
    {ok, Got} = py:call(bp_helpers, read_all, [B]),
    Expected = byte_size(Got),
    Big = binary:part(Got, 0, byte_size(Big)),
    ok.

%% The dirty-scheduler rule, at the NIF: its normal-scheduler entry refuses a write over
%% 256 KiB or 20,000 iolist elements with `dirty' and stores nothing, which is what makes
%% py_buffer:write/2 redo it on a dirty scheduler as one call.
large_write_redirects_to_dirty(_Config) ->
    {ok, B} = py_buffer:new(),
    Big = binary:copy(<<"x">>, 1 bsl 20),
    Many = [<<I:8>> || I <- lists:seq(1, 100000)],
    dirty = bodypipe_nif:buffer_write(B, Big),
    dirty = bodypipe_nif:buffer_write(B, Many),
    dirty = bodypipe_nif:buffer_write(B, lists:duplicate(100000, $q)),
    dirty = bodypipe_nif:buffer_write(B, [<<"head">>, Big]),     % bytes counted across the list
    dirty = bodypipe_nif:buffer_write(B, [[[Big]]]),
    #{written := 0} = py_buffer:info(B),
    %% at or below the limits: done in the call itself
    ok = bodypipe_nif:buffer_write(B, binary:copy(<<"y">>, 256 * 1024)),
    ok = bodypipe_nif:buffer_write(B, lists:duplicate(5000, <<"z">>)),
    #{written := Written} = py_buffer:info(B),
    ?assertEqual(256 * 1024 + 5000, Written),
    %% what the facade then does with the refused ones
    ok = bodypipe_nif:buffer_write_dirty(B, Big),
    ok = bodypipe_nif:buffer_write_dirty(B, Many),
    ok.

%% The same rule, observed: large writes (a 64 MiB binary, a 1,000,000-element iolist) and a
%% small write that finds the writer held by one of them never keep a process on a normal
%% scheduler for 10 ms. On a normal scheduler the 64 MiB copy alone takes tens of ms, and so
%% would the small write if it waited there for the lock.
large_writes_no_long_schedule(_Config) ->
    {ok, B} = py_buffer:new(#{max_size => 1 bsl 30}),
    Self = self(),
    Writer = fun(Make) ->
                     spawn_link(fun() ->
                                        Data = Make(),
                                        %% A full sweep then a minor GC move the data to the old
                                        %% heap, so no GC during the timed part copies it.
                                        erlang:garbage_collect(),
                                        erlang:garbage_collect(self(), [{type, minor}]),
                                        Self ! {ready, self()},
                                        receive go -> ok end,
                                        Self ! {done, self(), py_buffer:write(B, Data)}
                                end)
             end,
    Big = Writer(fun() -> binary:copy(<<"x">>, 64 bsl 20) end),
    Many = Writer(fun() -> lists:duplicate(1000000, <<"0123456789abcdef">>) end),
    Small = Writer(fun() -> binary:copy(<<"s">>, 64) end),
    [receive {ready, P} -> ok end || P <- [Big, Many, Small]],
    Done = fun(P) -> receive {done, P, R} -> R after 60000 -> ct:fail({write_hangs, P}) end end,
    Pids = with_long_schedule_monitor(
             10,
             fun() ->
                     Big ! go,
                     %% The small write starts while the 64 MiB copy holds the writer. (Each
                     %% writer is scheduled in only to make its one call: a report can only
                     %% come from that call, not from the OS preempting a busy time slice.)
                     ok = wait_for_writer_held(B, 10000),
                     Small ! go,
                     ok = Done(Small),
                     ok = Done(Big),
                     Many ! go,
                     ok = Done(Many),
                     [Big, Many, Small]
             end),
    ok = flush_notifications(B),
    Long = [Rep || {P, _} = Rep <- long_schedules(), lists:member(P, Pids)],
    ct:log("long_schedule reports: ~p", [Long]),
    ?assertEqual([], Long),
    #{written := Written} = py_buffer:info(B),
    ?assertEqual((64 bsl 20) + 16000000 + 64, Written),
    ok.

%% Runs Fun with this process as the node's system monitor for long_schedule of at least
%% Ms milliseconds (there is one per node: the previous one is restored afterwards). The
%% reports stay in the mailbox for long_schedules/0.
with_long_schedule_monitor(Ms, Fun) ->
    Old = erlang:system_monitor(self(), [{long_schedule, Ms}]),
    try
        Fun()
    after
        _ = case Old of
                undefined -> erlang:system_monitor(undefined);
                {Pid, Opts} -> erlang:system_monitor(Pid, Opts)
            end
    end.

long_schedules() ->
    receive {monitor, P, long_schedule, Info} -> [{P, Info} | long_schedules()]
    after 0 -> []
    end.

close_abort_idempotent(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:close(B),
    ok = py_buffer:close(B),
    ok = py_buffer:abort(B, late),
    #{eof := true, aborted := false} = py_buffer:info(B),
    {ok, B2} = py_buffer:new(),
    ok = py_buffer:abort(B2, {shutdown, <<"bye">>}),
    ok = py_buffer:close(B2),
    #{aborted := true, abort_reason := <<"{shutdown,<<\"bye\">>}">>} = py_buffer:info(B2),
    %% A declared length is a promise: closing short of it says so, and ends the body as an
    %% abort ("incomplete body"), never as EOF. A complete body closes with ok.
    {ok, B3} = py_buffer:new(10),
    ok = py_buffer:write(B3, <<"abc">>),
    {error, incomplete} = py_buffer:close(B3),
    #{eof := false, aborted := true, abort_reason := <<"incomplete body">>,
      written := 3, writer_closed := true} = py_buffer:info(B3),
    ok = py_buffer:close(B3),
    {ok, B4} = py_buffer:new(3),
    ok = py_buffer:write(B4, <<"abc">>),
    ok = py_buffer:close(B4),
    #{eof := true, aborted := false} = py_buffer:info(B4),
    {ok, B5} = py_buffer:new(1),
    {error, incomplete} = py_buffer:close(B5),
    ok.

info_keys(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, <<"hello\nworld\n">>),
    I = py_buffer:info(B),
    #{written := 12, read := 0, buffered := 12, eof := false, aborted := false,
      reader_closed := false, writer_closed := false} = I,
    {ok, <<"hello\n">>} = py:eval(py:context(default), <<"b.readline()">>, #{<<"b">> => B}),
    #{read := 6, buffered := 6} = py_buffer:info(B),
    ok = py_buffer:close(B),
    #{eof := true, writer_closed := true} = py_buffer:info(B),
    ok.

%% Several processes write at once: every write is atomic and each writer's
%% chunks stay in order.
concurrent_writers(_Config) ->
    {ok, B} = py_buffer:new(),
    N = 8, PerWriter = 2000,
    Self = self(),
    Pids = [spawn_link(fun() ->
                               [ok = py_buffer:write(B, chunk(W, I)) || I <- lists:seq(1, PerWriter)],
                               Self ! {done, self()}
                       end) || W <- lists:seq(1, N)],
    [receive {done, P} -> ok end || P <- Pids],
    ok = py_buffer:close(B),
    {ok, All} = py:call(bp_helpers, read_all, [B]),
    ChunkSize = byte_size(chunk(1, 1)),
    ?assertEqual(N * PerWriter * ChunkSize, byte_size(All)),
    Chunks = [binary:part(All, Off, ChunkSize) || Off <- lists:seq(0, byte_size(All) - 1, ChunkSize)],
    Parsed = [{W, I} || <<W:16, I:32, Pad/binary>> <- Chunks, Pad =:= binary:copy(<<W:8>>, 58)],
    ?assertEqual(N * PerWriter, length(Parsed)),
    [begin
         Is = [I || {W1, I} <- Parsed, W1 =:= W],
         Is = lists:seq(1, PerWriter)
     end || W <- lists:seq(1, N)],
    ok.

chunk(W, I) -> <<W:16, I:32, (binary:copy(<<W:8>>, 58))/binary>>.

%% Large writes (dirty scheduler, holding the writer for milliseconds) mixed
%% with small ones, close/notify/info from other processes meanwhile: every
%% write stays whole and in order, and nothing blocks a normal scheduler.
concurrent_large_and_small_writers(_Config) ->
    {ok, B} = py_buffer:new(#{max_size => 1 bsl 30}),
    Self = self(),
    Large = fun(I) -> <<"L", I:32, (binary:copy(<<"L">>, (4 bsl 20) - 5))/binary>> end,
    Small = fun(I) -> <<"S", I:32, (binary:copy(<<"s">>, 59))/binary>> end,
    NL = 24, NS = 20000,
    spawn_link(fun() -> [ok = py_buffer:write(B, Large(I)) || I <- lists:seq(1, NL)], Self ! large_done end),
    spawn_link(fun() -> [ok = py_buffer:write(B, Small(I)) || I <- lists:seq(1, NS)], Self ! small_done end),
    spawn_link(fun() -> [begin #{} = py_buffer:info(B), ok = py_buffer:notify_writable(B) end
                         || _ <- lists:seq(1, 2000)], Self ! poll_done end),
    [receive M -> ok end || M <- [large_done, small_done, poll_done]],
    ok = py_buffer:close(B),
    {ok, All} = py:call(bp_helpers, read_all, [B]),
    {Ls, Ss} = parse_mixed(All, [], []),
    ?assertEqual(lists:seq(1, NL), Ls),
    ?assertEqual(lists:seq(1, NS), Ss),
    ok.

parse_mixed(<<>>, Ls, Ss) -> {lists:reverse(Ls), lists:reverse(Ss)};
parse_mixed(<<"L", I:32, Rest/binary>>, Ls, Ss) ->
    N = (4 bsl 20) - 5,
    <<Pad:N/binary, Rest2/binary>> = Rest,
    Pad = binary:copy(<<"L">>, N),
    parse_mixed(Rest2, [I | Ls], Ss);
parse_mixed(<<"S", I:32, Pad:59/binary, Rest/binary>>, Ls, Ss) ->
    Pad = binary:copy(<<"s">>, 59),
    parse_mixed(Rest, Ls, [I | Ss]).

%%--------------------------------------------------------------------
%% Python reading while Erlang writes

lines(N) -> [iolist_to_binary(io_lib:format("line ~4..0B ~s\n", [I, lists:duplicate(I rem 37, $x)])) || I <- lists:seq(1, N)].

%% Writes `Chunks' from a separate process, sleeping between chunks, then closes.
slow_writer(B, Chunks, DelayMs) ->
    spawn_link(fun() ->
                       [begin ok = py_buffer:write(B, C), timer:sleep(DelayMs) end || C <- Chunks],
                       ok = py_buffer:close(B)
               end).

%% Splits the lines at arbitrary points so reads see partial lines.
rechunk(Lines) ->
    Bin = iolist_to_binary(Lines),
    rechunk(Bin, 1, []).
rechunk(<<>>, _, Acc) -> lists:reverse(Acc);
rechunk(Bin, K, Acc) ->
    N = min(byte_size(Bin), 1 + (K * 7919) rem 97),
    <<C:N/binary, Rest/binary>> = Bin,
    rechunk(Rest, K + 1, [C | Acc]).

stream_read_chunks(_Config) ->
    Lines = lines(200),
    {ok, B} = py_buffer:new(),
    slow_writer(B, rechunk(Lines), 1),
    {ok, {Data, Reads}} = py:call(bp_helpers, read_chunks, [B, 100]),
    Data = iolist_to_binary(Lines),
    ct:log("read(100) calls: ~p", [Reads]),
    ok.

stream_readline(_Config) ->
    Lines = lines(150),
    {ok, B} = py_buffer:new(),
    slow_writer(B, rechunk(Lines), 1),
    {ok, Lines} = py:call(bp_helpers, read_lines, [B]),
    ok.

stream_iteration(_Config) ->
    Lines = lines(150),
    {ok, B} = py_buffer:new(iolist_size(Lines)),
    slow_writer(B, rechunk(Lines), 1),
    {ok, Lines} = py:call(bp_helpers, iterate, [B]),
    ok.

stream_asyncio(_Config) ->
    Lines = lines(150),
    {ok, B} = py_buffer:new(),
    slow_writer(B, rechunk(Lines), 2),
    {ok, {Data, Sleeps}} = py:call(bp_helpers, read_async, [B]),
    Data = iolist_to_binary(Lines),
    ct:log("asyncio loop slept ~p times", [Sleeps]),
    true = Sleeps > 0,
    ok.

abort_reason_in_python(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, <<"partial">>),
    ok = py_buffer:abort(B, {client_gone, <<"reset">>, 42}),
    {ok, {<<"partial">>, <<"{client_gone,<<\"reset\">>,42}">>}} =
        py:call(bp_helpers, read_expect_abort, [B]),
    %% the same, as an exception returned to Erlang
    {ok, B2} = py_buffer:new(),
    ok = py_buffer:abort(B2, timeout),
    {error, {<<"BodyAborted">>, <<"timeout">>}} = py:call(bp_helpers, read_all, [B2]),
    %% a body closed short of its declared length reaches Python as an abort, never as EOF,
    %% also through the reference's polling loop (at_eof/read_nonblock)
    {ok, B3} = py_buffer:new(100),
    ok = py_buffer:write(B3, <<"short">>),
    {error, incomplete} = py_buffer:close(B3),
    {ok, {<<"short">>, <<"incomplete body">>}} = py:call(bp_helpers, read_expect_abort, [B3]),
    {ok, B4} = py_buffer:new(100),
    ok = py_buffer:write(B4, <<"short">>),
    {error, incomplete} = py_buffer:close(B4),
    {error, {<<"BodyAborted">>, <<"incomplete body">>}} = py:call(bp_helpers, read_async, [B4]),
    ok.

%%--------------------------------------------------------------------
%% Owner death

owner_death_aborts_blocked_reader(_Config) ->
    Self = self(),
    Owner = spawn(fun() ->
                          {ok, B} = py_buffer:new(),
                          ok = py_buffer:write(B, <<"head">>),
                          Self ! {buf, B},
                          receive die -> exit(upstream_crashed) end
                  end),
    B = receive {buf, Buf} -> Buf end,
    Reader = spawn_link(fun() -> Self ! {read, py:call(bp_helpers, read_expect_abort, [B])} end),
    ok = wait_until(fun() -> maps:get(read, py_buffer:info(B)) =:= 4 end, 5000),
    timer:sleep(100),                     % Python is now blocked in read()
    Owner ! die,
    receive
        {read, R} ->
            {ok, {<<"head">>, <<"{owner_down,upstream_crashed}">>}} = R
    after 5000 ->
            ct:fail({reader_still_blocked, Reader})
    end,
    %% the same through a BodyAborted exception, and for a killed owner
    Owner2 = spawn(fun() -> {ok, B2} = py_buffer:new(), Self ! {buf, B2}, receive _ -> ok end end),
    B2 = receive {buf, X} -> X end,
    spawn_link(fun() -> Self ! {read2, py:call(bp_helpers, read_all, [B2])} end),
    timer:sleep(100),
    exit(Owner2, kill),
    receive {read2, R2} -> {error, {<<"BodyAborted">>, <<"{owner_down,killed}">>}} = R2
    after 5000 -> ct:fail(reader2_still_blocked)
    end,
    ok.

%% An owner that exits at once after new/1: the watcher monitors it before new/1
%% returns, so readers get the real reason, never {owner_down,noproc}. Owners are
%% started together so that their exits race the watcher.
owner_exits_right_after_new(_Config) ->
    Self = self(),
    N = 100,
    [spawn(fun() -> {ok, B} = py_buffer:new(), Self ! {buf, I, B}, exit({gone, I}) end)
     || I <- lists:seq(1, N)],
    Bufs = [receive {buf, I, B} -> {I, B} after 5000 -> ct:fail({no_buffer, I}) end
            || I <- lists:seq(1, N)],
    Got = [{I, py:call(bp_helpers, read_all, [B])} || {I, B} <- Bufs],
    Wrong = [{I, R} || {I, R} <- Got,
                       R =/= {error, {<<"BodyAborted">>, reason_text({owner_down, {gone, I}})}}],
    ?assertEqual([], Wrong),
    ok.

%% Returns once a write holds B's writer lock, seen as the normal-scheduler
%% notify_writable refusing with `dirty' (when it gets the lock it only asks for
%% a {py_buffer, B, writable} message, which an unbounded buffer sends at once).
wait_for_writer_held(B, TimeoutMs) ->
    wait_for_writer_held_until(B, erlang:monotonic_time(millisecond) + TimeoutMs).

wait_for_writer_held_until(B, Deadline) ->
    case bodypipe_nif:buffer_notify_writable(B) of
        dirty -> ok;
        ok ->
            case erlang:monotonic_time(millisecond) > Deadline of
                true -> {error, writer_never_held};
                false -> wait_for_writer_held_until(B, Deadline)
            end
    end.

flush_notifications(B) ->
    receive {py_buffer, B, _} -> flush_notifications(B) after 0 -> ok end.

reason_text(Reason) ->
    iolist_to_binary(io_lib:format("~0tp", [Reason])).

%% Without the watcher process (application stopped) the NIF resource monitor
%% still aborts the buffer.
owner_death_without_watcher(_Config) ->
    ok = application:stop(bodypipe),
    try
        Self = self(),
        Owner = spawn(fun() -> {ok, B} = py_buffer:new(), Self ! {buf, B}, receive _ -> ok end end),
        B = receive {buf, X} -> X end,
        spawn_link(fun() -> Self ! {read, py:call(bp_helpers, read_all, [B])} end),
        timer:sleep(100),
        exit(Owner, kill),
        receive {read, R} -> {error, {<<"BodyAborted">>, <<"{owner_down,unknown}">>}} = R
        after 5000 -> ct:fail(reader_still_blocked)
        end
    after
        {ok, _} = application:ensure_all_started(bodypipe)
    end,
    ok.

%% The NIF monitor's abort when another process's large write holds the writer: it is
%% handed to the NIF's own thread, which aborts once the write is done, instead of
%% waiting on the normal scheduler that runs the owner's exit (a long_schedule of the owner).
owner_death_during_large_write_without_watcher(_Config) ->
    ok = application:stop(bodypipe),
    try
        Self = self(),
        Owner = spawn(fun() ->
                              {ok, B} = py_buffer:new(#{max_size => 1 bsl 30}),
                              Self ! {buf, B},
                              receive _ -> ok end
                      end),
        B = receive {buf, X} -> X end,
        Big = binary:copy(<<"x">>, 128 bsl 20),
        {Wrote, Micros} =
            with_long_schedule_monitor(
              10,
              fun() ->
                      spawn_link(fun() -> Self ! {wrote, py_buffer:write(B, Big)} end),
                      ok = wait_for_writer_held(B, 10000),
                      T0 = erlang:monotonic_time(microsecond),
                      exit(Owner, kill),
                      W = receive {wrote, W0} -> W0 after 20000 -> ct:fail(write_hangs) end,
                      T1 = erlang:monotonic_time(microsecond),
                      timer:sleep(50),            % the owner's exit report, if any, arrives
                      {W, T1 - T0}
              end),
        ct:log("write returned ~p, ~p us after the kill", [Wrote, Micros]),
        ok = Wrote,
        ok = flush_notifications(B),
        ok = wait_until(fun() -> maps:get(aborted, py_buffer:info(B)) end, 5000),
        #{abort_reason := <<"{owner_down,unknown}">>} = py_buffer:info(B),
        ?assertEqual([], [Rep || {P, _} = Rep <- long_schedules(), P =:= Owner])
    after
        {ok, _} = application:ensure_all_started(bodypipe)
    end,
    ok.

%%--------------------------------------------------------------------
%% Ring mode and notify_writable

ring_full_then_notify(_Config) ->
    {ok, B} = py_buffer:new(#{max_buffered => 1024}),
    %% a write is admitted while unread bytes are below max_buffered
    ok = py_buffer:write(B, binary:copy(<<"a">>, 1000)),
    ok = py_buffer:write(B, binary:copy(<<"a">>, 24)),
    {error, full} = py_buffer:write(B, binary:copy(<<"b">>, 100)),
    #{written := 1024} = py_buffer:info(B),       % the failed write stored nothing
    ok = py_buffer:notify_writable(B),
    receive {py_buffer, B, _} = Early -> ct:fail({too_early, Early}) after 100 -> ok end,
    %% Python reads 400 bytes: 624 unread, still above half (512): no message
    {ok, _} = py:call(bp_helpers, read_n, [B, 400]),
    receive {py_buffer, B, _} = Early2 -> ct:fail({too_early, Early2}) after 100 -> ok end,
    %% 200 more: 424 unread < 512: writable
    {ok, _} = py:call(bp_helpers, read_n, [B, 200]),
    receive {py_buffer, B, writable} -> ok after 2000 -> ct:fail(no_writable) end,
    ok = py_buffer:write(B, binary:copy(<<"b">>, 50)),
    %% 474 unread, already below half: at once
    ok = py_buffer:notify_writable(B),
    receive {py_buffer, B, writable} -> ok after 2000 -> ct:fail(no_immediate_writable) end,
    %% a writer loop driven by notify_writable while Python reads everything
    {ok, R} = py_buffer:new(#{max_buffered => 4096}),
    Self = self(),
    spawn_link(fun() -> Self ! {got, py:call(bp_helpers, read_all, [R])} end),
    Chunks = [binary:copy(<<I:8>>, 1000) || I <- lists:seq(1, 200)],
    Fulls = ring_write_all(R, Chunks, 0),
    ok = py_buffer:close(R),
    receive {got, {ok, Got}} -> Got = iolist_to_binary(Chunks) after 10000 -> ct:fail(ring_reader) end,
    ct:log("ring writer hit full ~p times", [Fulls]),
    ok.

ring_write_all(_B, [], Fulls) -> Fulls;
ring_write_all(B, [C | Rest] = All, Fulls) ->
    case py_buffer:write(B, C) of
        ok -> ring_write_all(B, Rest, Fulls);
        {error, full} ->
            ok = py_buffer:notify_writable(B),
            receive {py_buffer, B, writable} -> ring_write_all(B, All, Fulls + 1)
            after 5000 -> ct:fail(stuck_full)
            end
    end.

notify_unbounded_immediate(_Config) ->
    {ok, B} = py_buffer:new(),
    ok = py_buffer:write(B, binary:copy(<<"x">>, 100000)),
    ok = py_buffer:notify_writable(B),
    receive {py_buffer, B, writable} -> ok after 2000 -> ct:fail(no_writable) end,
    ok.

notify_reader_closed(_Config) ->
    {ok, B} = py_buffer:new(#{max_buffered => 16}),
    ok = py_buffer:write(B, binary:copy(<<"x">>, 16)),
    {error, full} = py_buffer:write(B, <<"y">>),
    ok = py_buffer:notify_writable(B),
    {ok, none} = py:call(bp_helpers, close_reader, [B]),
    receive {py_buffer, B, closed} -> ok after 2000 -> ct:fail(no_closed) end,
    {error, closed} = py_buffer:write(B, <<"y">>),
    #{reader_closed := true} = py_buffer:info(B),
    ok.

notify_writer_closed(_Config) ->
    {ok, B} = py_buffer:new(#{max_buffered => 16}),
    ok = py_buffer:write(B, binary:copy(<<"x">>, 16)),
    Self = self(),
    Waiter = spawn_link(fun() ->
                                ok = py_buffer:notify_writable(B),
                                Self ! ready,
                                receive {py_buffer, B, What} -> Self ! {waiter, What} end
                        end),
    receive ready -> ok end,
    ok = py_buffer:close(B),
    receive {waiter, closed} -> ok after 2000 -> ct:fail({waiter_hangs, Waiter}) end,
    %% after close: closed at once
    ok = py_buffer:notify_writable(B),
    receive {py_buffer, B, closed} -> ok after 2000 -> ct:fail(no_closed) end,
    ok.

%%--------------------------------------------------------------------
%% Garbage collection from both sides

%% Runs Fun in a fresh process that stays alive (so it remains the owner) and
%% garbage-collects after Fun returns; returns Fun's result.
in_process(Fun) ->
    Self = self(),
    Pid = spawn(fun() ->
                        R = Fun(),
                        erlang:garbage_collect(),
                        Self ! {self(), R},
                        receive stop -> ok end
                end),
    receive {Pid, R} -> {Pid, R} after 20000 -> ct:fail(in_process_timeout) end.

gc_erlang_only(_Config) ->
    %% buffers never given to Python: written, some closed, some not, dropped
    Before = rss(),
    [begin
         {ok, B} = py_buffer:new(),
         ok = py_buffer:write(B, binary:copy(<<"z">>, 4096)),
         case I rem 2 of 0 -> ok = py_buffer:close(B); 1 -> ok end
     end || I <- lists:seq(1, 20000)],
    erlang:garbage_collect(),
    After = rss(),
    ct:log("RSS before ~p KiB, after 20000 dropped 4 KiB buffers ~p KiB", [Before div 1024, After div 1024]),
    true = After - Before < 64 * 1024 * 1024,
    ok.

gc_python_only_closed(_Config) ->
    {Pid, true} = in_process(fun() ->
                                     {ok, B} = py_buffer:new(),
                                     ok = py_buffer:write(B, <<"kept by python">>),
                                     ok = py_buffer:close(B),
                                     {ok, T} = py:call(bp_helpers, keep, [<<"closed">>, B]),
                                     T
                             end),
    %% The Erlang side has dropped every reference; the data is still there.
    {ok, <<"kept by python">>} = py:call(bp_helpers, kept_read, [<<"closed">>]),
    Pid ! stop,
    ok.

gc_python_only_unclosed(_Config) ->
    {Pid, true} = in_process(fun() ->
                                     {ok, B} = py_buffer:new(),
                                     ok = py_buffer:write(B, <<"partial">>),
                                     {ok, T} = py:call(bp_helpers, keep, [<<"open">>, B]),
                                     T
                             end),
    %% Last Erlang reference collected without close: aborted, never a hang.
    {ok, {<<"partial">>, Reason}} = py:call(bp_helpers, kept_read_expect_abort, [<<"open">>]),
    ct:log("reason: ~s", [Reason]),
    {match, _} = re:run(Reason, <<"garbage-collected">>),
    Pid ! stop,
    ok.

gc_memoryview_survives(_Config) ->
    Payload = binary:copy(<<"memoryview!">>, 1000),
    {Pid, Len} = in_process(fun() ->
                                    {ok, B} = py_buffer:new(),
                                    ok = py_buffer:write(B, Payload),
                                    ok = py_buffer:close(B),
                                    {ok, L} = py:call(bp_helpers, keep_view, [<<"mv">>, B]),
                                    L
                            end),
    Len = byte_size(Payload),
    %% Erlang and the PyBuffer are gone; only the memoryview holds the bytes.
    {ok, Payload} = py:call(bp_helpers, view_bytes, [<<"mv">>]),
    Pid ! stop,
    ok.

gc_churn_both_sides(_Config) ->
    Round = fun() ->
                    Bufs = [begin
                                {ok, B} = py_buffer:new(),
                                ok = py_buffer:write(B, binary:copy(<<"c">>, 10000)),
                                ok = py_buffer:close(B),
                                B
                            end || _ <- lists:seq(1, 500)],
                    {ok, 5000000} = py:call(bp_helpers, churn, [Bufs]),
                    ok
            end,
    [Round() || _ <- lists:seq(1, 3)],          % warm up allocators
    erlang:garbage_collect(),
    Before = rss(),
    [Round() || _ <- lists:seq(1, 20)],
    erlang:garbage_collect(),
    {ok, _} = py:eval(py:context(default), <<"__import__('gc').collect()">>),
    After = rss(),
    ct:log("RSS before ~p KiB, after 10000 more buffers through Python ~p KiB", [Before div 1024, After div 1024]),
    true = After - Before < 32 * 1024 * 1024,
    ok.

ten_thousand_buffers(Config) ->
    N = 10000,
    erlang:garbage_collect(),
    Rss0 = rss(),
    Mem0 = erlang:memory(total),
    Bufs = [begin {ok, B} = py_buffer:new(), B end || _ <- lists:seq(1, N)],
    Rss1 = rss(),
    Mem1 = erlang:memory(total),
    [ok = py_buffer:write(B, <<"GET / HTTP/1.1\r\n">>) || B <- Bufs],
    Rss2 = rss(),
    PerIdle = (Rss1 - Rss0) / N,
    PerWritten = (Rss2 - Rss0) / N,
    PerVm = (Mem1 - Mem0) / N,
    Msg = io_lib:format("~p idle buffers: ~p bytes each (RSS; ~p in VM-accounted memory); "
                        "~p bytes each after a 16-byte write",
                        [N, round(PerIdle), round(PerVm), round(PerWritten)]),
    ct:log("~s", [Msg]),
    ct:comment("~s", [Msg]),
    _ = Config,
    %% all alive and usable
    [#{written := 16} = py_buffer:info(B) || B <- lists:sublist(Bufs, 100)],
    [ok = py_buffer:close(B) || B <- Bufs],
    true = PerIdle < 4096,
    ok.

wait_until(Fun, Timeout) when Timeout =< 0 ->
    case Fun() of true -> ok; false -> {error, timeout} end;
wait_until(Fun, Timeout) ->
    case Fun() of
        true -> ok;
        false -> timer:sleep(20), wait_until(Fun, Timeout - 20)
    end.

rss() ->
    {ok, S} = file:read_file("/proc/self/status"),
    {match, [Kb]} = re:run(S, <<"VmRSS:\\s+(\\d+) kB">>, [{capture, all_but_first, binary}]),
    binary_to_integer(Kb) * 1024.
