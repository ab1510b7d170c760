%% @doc Micro-benchmark: `py_buffer:write/2' calls per second from one process.
%%
%% `rebar3 compile && erl -noshell -pa _build/default/lib/{bodypipe,bodypipe_demo}/ebin
%%  -eval "bodypipe_bench:main(), halt()."' (or `bench/write_bench.escript').
%% Each size writes binaries of that size for about `Seconds' into unbounded
%% buffers, starting a fresh buffer every 64 MiB so memory stays bounded (the
%% cost of `new/0' and garbage collection is included in the figure).
-module(bodypipe_bench).

-export([main/0, run/2, write_rate/2]).

-define(ROTATE_BYTES, 64 * 1024 * 1024).

%% @doc Runs the standard sizes (64 B, 1 KiB, 64 KiB) for 2 s each and prints a table.
-spec main() -> [{pos_integer(), float()}].
main() ->
    run([64, 1024, 65536], 2.0).

%% @doc Prints and returns `{ChunkSize, WritesPerSecond}' for each size.
-spec run([pos_integer()], number()) -> [{pos_integer(), float()}].
run(Sizes, Seconds) ->
    io:format("py_buffer:write/2 from one process (~s, OTP ~s, ~p schedulers)~n",
              [erlang:system_info(system_architecture), erlang:system_info(otp_release),
               erlang:system_info(schedulers_online)]),
    io:format("~10s ~16s ~12s~n", ["chunk", "writes/s", "MiB/s"]),
    [begin
         _ = write_rate(Size, 0.2),                % warm up
         Rate = write_rate(Size, Seconds),
         io:format("~10s ~16s ~12.1f~n", [human(Size), group(round(Rate)), Rate * Size / 1048576]),
         {Size, Rate}
     end || Size <- Sizes].

%% @doc Writes/s for `Size'-byte binaries over about `Seconds'.
-spec write_rate(pos_integer(), number()) -> float().
write_rate(Size, Seconds) ->
    Chunk = binary:copy(<<"x">>, Size),
    Batch = max(16, min(4096, ?ROTATE_BYTES div Size)),
    Deadline = erlang:monotonic_time() + erlang:convert_time_unit(round(Seconds * 1000), millisecond, native),
    T0 = erlang:monotonic_time(),
    {ok, B} = py_buffer:new(),
    N = loop(B, Chunk, Batch, Deadline, 0, 0),
    Elapsed = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond) / 1.0e6,
    N / Elapsed.

loop(B, Chunk, Batch, Deadline, Count, InBuf) ->
    ok = batch(B, Chunk, Batch),
    Count1 = Count + Batch,
    InBuf1 = InBuf + Batch * byte_size(Chunk),
    case erlang:monotonic_time() >= Deadline of
        true ->
            Count1;
        false when InBuf1 >= ?ROTATE_BYTES ->
            ok = py_buffer:close(B),
            {ok, B2} = py_buffer:new(),
            erlang:garbage_collect(),
            loop(B2, Chunk, Batch, Deadline, Count1, 0);
        false ->
            loop(B, Chunk, Batch, Deadline, Count1, InBuf1)
    end.

batch(_B, _Chunk, 0) -> ok;
batch(B, Chunk, N) ->
    ok = py_buffer:write(B, Chunk),
    batch(B, Chunk, N - 1).

human(S) when S >= 1024 -> integer_to_list(S div 1024) ++ " KiB";
human(S) -> integer_to_list(S) ++ " B".

group(N) ->
    S = integer_to_list(N),
    lists:reverse(group_(lists:reverse(S))).
group_([A, B, C, D | Rest]) -> [A, B, C, $, | group_([D | Rest])];
group_(S) -> S.
